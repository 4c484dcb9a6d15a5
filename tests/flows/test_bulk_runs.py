"""Bulk test runs: a flow version over every line of a JSONL file, through the real worker."""

import csv
import io
import json

import pytest
from support import wait_for

from django.core.exceptions import ValidationError

from flows import services
from flows.models import BulkRun, RunStatus
from workspace.models import Notification

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _finished(run: BulkRun) -> BulkRun:
    def done():
        run.refresh_from_db()
        return run.is_final

    wait_for(done, timeout=120, message=f"bulk run stayed {run.status}")
    return run


def test_it_runs_every_line_of_the_flows_data_file(celery_worker, import_flow, admin_user):
    """web-classification's data.jsonl: five lines, each classified as its answer column says."""
    version = import_flow("web-classification-offline")
    run = _finished(services.start_bulk_run_from_flow_data(version, admin_user))
    assert run.status == RunStatus.COMPLETED, run.error
    assert (run.total_lines, run.completed_lines, run.failed_lines) == (5, 5, 0)
    data = [json.loads(line) for line in (version.snapshot_dir / "data.jsonl").read_text().splitlines()]
    lines = list(run.lines.all())
    assert [line.outputs["category"] for line in lines] == [row["answer"] for row in data]
    assert all("answer" not in line.inputs for line in lines)
    assert run.flow_version == version


def test_it_records_failed_lines_and_keeps_going(celery_worker, import_flow, admin_user):
    version = import_flow("web-classification-offline")
    data = b'{"url": "https://arxiv.org/abs/1"}\n{"url": "nope"}\n{"url": "https://youtu.be/x"}\n'
    run = _finished(services.start_bulk_run(version, data, "mixed.jsonl", admin_user))
    assert run.status == RunStatus.FAILED
    assert (run.completed_lines, run.failed_lines) == (2, 1)
    failed = run.lines.get(index=1)
    assert "not an absolute URL: 'nope'" in failed.error["message"]
    assert run.error == {"message": "1 lines failed."}


def test_it_tells_the_user_through_a_notification(celery_worker, import_flow, admin_user):
    version = import_flow("chat-stream-offline")
    run = _finished(services.start_bulk_run(version, b'{"question": "a"}\n{"question": "b"}\n', "q.jsonl", admin_user))
    note = Notification.objects.get(pk=run.notification_id)
    assert note.user == admin_user
    assert note.level == "success"
    assert "2 of 2 lines completed" in note.body
    assert note.link == run.get_absolute_url()


def test_it_downloads_results_as_jsonl_and_csv(celery_worker, import_flow, admin_client, admin_user):
    version = import_flow("web-classification-offline")
    run = _finished(services.start_bulk_run_from_flow_data(version, admin_user))
    response = admin_client.get(f"/flows/bulk-runs/{run.pk}/download/?format=jsonl")
    rows = [json.loads(line) for line in response.content.decode().splitlines()]
    assert [row["line_number"] for row in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["outputs"]["category"] == "Movie"
    response = admin_client.get(f"/flows/bulk-runs/{run.pk}/download/?format=csv")
    table = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert table[1]["category"] == "Academic"
    assert table[1]["inputs.location"] == "Seattle"
    assert response["Content-Disposition"] == f'attachment; filename="bulk-run-{run.pk}.csv"'


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"url": "https://a.b"}\nnot json\n', "Line 2 is not valid JSON"),
        (b"[1, 2]\n", "Line 1 must be a JSON object"),
        (b"\n\n", "The data file has no lines."),
        (b'{"other": 1}\n', "No line has a column named after an input of the flow (location, url)."),
    ],
)
def test_it_refuses_bad_data_naming_the_line(import_flow, data, message):
    version = import_flow("web-classification-offline")
    with pytest.raises(ValidationError) as caught:
        services.start_bulk_run(version, data, "bad.jsonl", None)
    assert message in caught.value.message_dict["data"][0]
    assert not BulkRun.objects.exists()
