"""The Bulk runs list: every bulk test run (or one flow's), newest first, with status, progress and a link to each."""

import re

import pytest

from flows.importing import FlowImportError, check_flow_name
from flows.models import BulkRun, Flow, FlowSource, FlowVersion, RunStatus

pytestmark = pytest.mark.django_db


def _version(name: str, number: int = 1) -> FlowVersion:
    flow, _ = Flow.objects.get_or_create(name=name)
    return FlowVersion.objects.create(flow=flow, version=number, content_hash=f"{name}{number}".ljust(64, "0"))


def _run(version: FlowVersion, status=RunStatus.COMPLETED, total=4, completed=4, failed=0, user=None) -> BulkRun:
    return BulkRun.objects.create(
        flow_version=version,
        name=f"{version} on data.jsonl",
        data_file_name=f"data-{version.flow.name}.jsonl",
        status=status,
        total_lines=total,
        completed_lines=completed,
        failed_lines=failed,
        created_by=user,
    )


def _run_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-run="(\d+)"', html)]


def test_it_requires_sign_in(client):
    assert client.get("/flows/bulk-runs/").status_code == 302


def test_it_lists_every_bulk_run_newest_first_with_status_and_progress(admin_client, admin_user):
    older = _run(_version("alpha"), user=admin_user)
    running = _run(_version("beta"), status=RunStatus.RUNNING, total=10, completed=2, failed=1)
    response = admin_client.get("/flows/bulk-runs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert _run_ids(html) == [running.pk, older.pk]
    assert f'href="/flows/bulk-runs/{running.pk}/"' in html
    assert f'href="/flows/bulk-runs/{older.pk}/"' in html
    assert '<span class="badge running">Running</span>' in html
    assert '<progress max="10" value="3"' in html
    assert "3 of 10 lines" in html and "1 failed" in html
    assert 'href="/flows/beta/bulk-runs/"' in html
    assert "admin" in html


def test_it_lists_one_flows_runs_across_its_versions(admin_client):
    first = _run(_version("alpha", 1))
    second = _run(_version("alpha", 2), status=RunStatus.FAILED, completed=3, failed=1)
    _run(_version("beta"))
    html = admin_client.get("/flows/alpha/bulk-runs/").content.decode()
    assert _run_ids(html) == [second.pk, first.pk]
    assert "Bulk runs of alpha" in html
    assert '<span class="badge failed">Failed</span>' in html
    assert admin_client.get("/flows/nope/bulk-runs/").status_code == 404


def test_it_polls_only_while_a_run_is_not_final(admin_client):
    run = _run(_version("alpha"), status=RunStatus.QUEUED, completed=0)
    fragment = admin_client.get("/flows/bulk-runs/", headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<div id="rows"')
    assert 'hx-trigger="every 2s"' in fragment
    BulkRun.objects.filter(pk=run.pk).update(status=RunStatus.COMPLETED, completed_lines=4)
    fragment = admin_client.get("/flows/bulk-runs/", headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in fragment


def test_it_pages_older_runs(admin_client):
    version = _version("alpha")
    runs = [_run(version) for _ in range(51)]
    first = admin_client.get("/flows/bulk-runs/").content.decode()
    assert _run_ids(first) == [run.pk for run in reversed(runs)][:50]
    assert 'href="?page=2"' in first
    assert _run_ids(admin_client.get("/flows/bulk-runs/?page=2").content.decode()) == [runs[0].pk]


def test_it_says_when_there_are_none(admin_client):
    assert "No bulk test runs yet." in admin_client.get("/flows/bulk-runs/").content.decode()


def test_the_flow_page_and_the_flows_list_link_to_it(admin_client):
    version = _version("alpha")
    version.source = FlowSource.UPLOAD
    version.save()
    _run(version)
    assert 'href="/flows/alpha/bulk-runs/"' in admin_client.get("/flows/alpha/").content.decode()
    assert 'href="/flows/bulk-runs/"' in admin_client.get("/flows/").content.decode()


@pytest.mark.parametrize("name", ["bulk-runs", "import", "runs"])
def test_it_keeps_flow_names_that_would_hide_a_page(name):
    with pytest.raises(FlowImportError, match="names a page of the studio"):
        check_flow_name(name)
