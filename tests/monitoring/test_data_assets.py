"""The data asset pages: the list, a deployment's records browser, downloads, and its collection settings."""

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
import redis
from roles import member

from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from monitoring.models import DataCollectionPolicy
from serving import collector as collection

pytestmark = pytest.mark.django_db

PAGE = "/data-assets/ep-data/blue/"


@pytest.fixture
def viewer(client, django_user_model):
    """A Contributor of the default project: records and files are what requests carried (Action.READ_DATA)."""
    user = member(django_user_model.objects.create_user("viewer", password="viewer-pass-1"), "contributor")
    client.force_login(user)
    return client


@pytest.fixture
def changer(client, django_user_model):
    """A Contributor of the default project: may change how a deployment collects."""
    user = member(django_user_model.objects.create_user("changer", password="changer-pass-1"), "contributor")
    client.force_login(user)
    return client


@pytest.fixture
def recent(deployment_row, collect):
    """blue collects; three requests in the last hours, one two days ago."""
    deployment_row()
    now = timezone.now()
    collect("ep-data", "blue", "req-a", {"question": "first"}, {"answer": "one"}, now - timedelta(hours=2))
    collect("ep-data", "blue", "req-b", {"question": "second"}, {"answer": "two"}, now - timedelta(minutes=30))
    collect("ep-data", "blue", "req-c", {"question": "third"}, {"error": {"code": "UserError"}}, now, status=424)
    collect("ep-data", "blue", "req-old", {"question": "old"}, {"answer": "old"}, now - timedelta(days=2))
    return now


def _request_ids(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('<tr data-request-id="')[1:]]


def test_it_requires_signing_in(client, recent):
    for url in ("/data-assets/", PAGE, f"{PAGE}download/?hour=2026-01-01T00"):
        answer = client.get(url)
        assert answer.status_code == 302 and "/accounts/login/" in answer["Location"]


def test_it_lists_collecting_deployments_and_data_left_by_deleted_ones(viewer, deployment_row, collect):
    """Deployments with collection on are listed (even before any data); folders of deleted deployments of an
    endpoint of the user's project too; a deployment with collection off and no data is not."""
    deployment_row(name="blue")
    deployment_row(name="green", data_collection=False)
    collect("ep-data", "red", "req-1", {"q": 1}, {"a": 1}, timezone.now())
    html = viewer.get("/data-assets/").content.decode()
    assert 'data-asset="ep-data/blue"' in html
    assert 'data-asset="ep-data/red"' in html
    assert "Deployment deleted" in html
    assert 'data-asset="ep-data/green"' not in html
    assert 'href="/data-assets/"' in html and ">Data</a>" in html  # the left navigation


def test_it_shows_data_of_a_deleted_endpoint_to_superusers_only(viewer, admin_client, deployment_row, collect):
    """An endpoint that is gone belongs to no project any more: its data is the site administrator's."""
    collect("ep-gone", "red", "req-1", {"q": 1}, {"a": 1}, timezone.now())
    assert 'data-asset="ep-gone/red"' not in viewer.get("/data-assets/").content.decode()
    assert viewer.get("/data-assets/ep-gone/red/").status_code == 404
    assert 'data-asset="ep-gone/red"' in admin_client.get("/data-assets/").content.decode()
    assert admin_client.get("/data-assets/ep-gone/red/").status_code == 200


def test_it_hides_other_projects_data(client, django_user_model, deployment_row, collect):
    from workspace.models import Project

    deployment_row(name="blue")
    outsider = django_user_model.objects.create_user("out", password="out-pass-123")
    client.force_login(member(outsider, "owner", Project.objects.create(name="team-c")))
    assert 'data-asset="ep-data/blue"' not in client.get("/data-assets/").content.decode()
    assert client.get(PAGE).status_code == 404
    assert client.post(f"{PAGE}policy/", {"sampling_percent": "5", "retention_days": "3"}).status_code == 404


def test_it_shows_the_newest_records_with_inputs_and_outputs_side_by_side(viewer, recent, collection_dir):
    answer = viewer.get(PAGE)
    html = answer.content.decode()
    assert answer.status_code == 200
    assert _request_ids(html) == ["req-c", "req-b", "req-a"]  # the last 24 hours, newest first
    row = html.split('<tr data-request-id="req-b">', 1)[1].split("</tr>", 1)[0]
    assert '<pre class="inputs">{\n  &quot;question&quot;: &quot;second&quot;\n}</pre>' in row
    assert '<pre class="outputs">{\n  &quot;answer&quot;: &quot;two&quot;\n}</pre>' in row
    assert ">424<" in html
    assert "ep-data-blue-model_inputs, ep-data-blue-model_outputs" in html
    files = list((collection_dir / "ep-data" / "blue").rglob("*.jsonl"))
    size = sum(path.stat().st_size for path in files)
    assert f'<dd id="size-used">{filesizeformat(size)} in {len(files)} files</dd>' in html


def test_it_filters_by_request_id_and_time_range(viewer, recent):
    assert _request_ids(viewer.get(PAGE, {"request_id": "req-a"}).content.decode()) == ["req-a"]
    old_day = (recent - timedelta(days=2)).strftime("%Y-%m-%dT00:00")
    html = viewer.get(PAGE, {"start": old_day, "request_id": "req-old"}).content.decode()
    assert _request_ids(html) == ["req-old"]
    start = (recent - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert _request_ids(viewer.get(PAGE, {"start": start}).content.decode()) == ["req-c", "req-b"]
    html = viewer.get(PAGE, {"request_id": "no-such-request"}).content.decode()
    assert _request_ids(html) == [] and "No records with this request ID" in html


def test_it_answers_the_results_fragment_to_htmx(viewer, recent):
    answer = viewer.get(PAGE, {"request_id": "req-b"}, headers={"HX-Request": "true"})
    html = answer.content.decode()
    assert html.lstrip().startswith('<div id="results">')
    assert _request_ids(html) == ["req-b"]
    assert "<html" not in html


def test_it_pages_to_older_records(viewer, deployment_row, collect, monkeypatch):
    from monitoring import views

    deployment_row()
    now = timezone.now()
    for number in range(5):
        collect("ep-data", "blue", f"req-{number}", {"n": number}, {"n": number}, now - timedelta(minutes=5 - number))
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    html = viewer.get(PAGE).content.decode()
    assert _request_ids(html) == ["req-4", "req-3"]
    older = html.split(">Older records</a>", 1)[0].rsplit('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    html = viewer.get(older).content.decode()
    assert _request_ids(html) == ["req-2", "req-1"]


def test_it_refuses_a_range_that_ends_before_it_starts(viewer, recent):
    html = viewer.get(PAGE, {"start": "2026-12-02T00:00", "end": "2026-12-01T00:00"}).content.decode()
    assert "To must be after From." in html
    assert _request_ids(html) == []
    fragment = viewer.get(PAGE, {"start": "2026-12-02T00:00", "end": "x"}, headers={"HX-Request": "true"})
    assert "To (UTC): Enter a valid date/time." in fragment.content.decode()


def test_it_answers_404_for_unknown_deployments_and_names_that_are_not_names(viewer, recent):
    assert viewer.get("/data-assets/ep-data/nobody/").status_code == 404
    assert viewer.get("/data-assets/ep-data/..%2F..%2Fetc/").status_code == 404
    assert viewer.get("/data-assets/../blue/").status_code == 404


def _zip_names(answer) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(b"".join(answer.streaming_content)))
    return {name: archive.read(name) for name in archive.namelist()}


def test_it_downloads_one_hour_as_a_zip(viewer, recent):
    hour = recent.astimezone(UTC).strftime("%Y-%m-%dT%H")
    answer = viewer.get(f"{PAGE}download/", {"hour": hour})
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/zip"
    label = recent.astimezone(UTC).strftime("%Y%m%d%H")
    assert f'filename="ep-data-blue-{label}.zip"' in answer["Content-Disposition"]
    files = _zip_names(answer)
    folder = recent.astimezone(UTC).strftime("%Y/%m/%d/%H")
    assert set(files) == {
        f"ep-data-blue-{label}/model_inputs/{folder}/gw-test.jsonl",
        f"ep-data-blue-{label}/model_outputs/{folder}/gw-test.jsonl",
    }
    inputs = [
        json.loads(line) for line in files[f"ep-data-blue-{label}/model_inputs/{folder}/gw-test.jsonl"].splitlines()
    ]
    assert "req-c" in {line["xrequestid"] for line in inputs}
    assert viewer.get(f"{PAGE}download/", {"hour": "1999-01-01T00"}).status_code == 404
    assert viewer.get(f"{PAGE}download/", {"hour": "yesterday"}).status_code == 404


def test_it_downloads_a_range_as_a_zip(viewer, recent):
    start = (recent - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    answer = viewer.get(f"{PAGE}download/", {"start": start, "end": recent.strftime("%Y-%m-%dT%H:%M")})
    files = _zip_names(answer)
    request_ids = {
        json.loads(line)["xrequestid"]
        for name, body in files.items()
        if "/model_outputs/" in name
        for line in body.splitlines()
    }
    assert request_ids == {"req-a", "req-b", "req-c", "req-old"}


def test_it_downloads_one_jsonl_file_and_nothing_outside_the_folder(viewer, recent, collection_dir):
    folder = recent.astimezone(UTC).strftime("%Y/%m/%d/%H")
    answer = viewer.get(f"{PAGE}files/model_outputs/{folder}/gw-test.jsonl")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in b"".join(answer.streaming_content).splitlines()]
    assert "req-c" in {line["xrequestid"] for line in lines}
    (collection_dir / "secret.jsonl").write_text("{}")
    for relative in ("../../secret.jsonl", "model_outputs/../../../secret.jsonl", f"model_outputs/{folder}/x.txt"):
        assert viewer.get(f"{PAGE}files/{relative}").status_code == 404


def test_it_shows_the_records_the_gateway_dropped(viewer, recent, redis_url, settings):
    settings.REDIS_URL = redis_url
    client = redis.Redis.from_url(redis_url)
    key = collection.drops_key("ep-data", "blue")
    first = datetime(2026, 12, 1, 9, 30, tzinfo=UTC).timestamp()
    client.hset(key, mapping={"dropped": 17, "first": repr(first), "last": repr(first + 60)})
    try:
        html = viewer.get(PAGE).content.decode()
    finally:
        client.delete(key)
        client.close()
    assert "17 records dropped since 2026-12-01 09:30:00 UTC" in html


def test_it_saves_the_sampling_rate_and_retention_and_publishes_the_rate(
    changer, recent, redis_url, settings, django_capture_on_commit_callbacks
):
    from serving.auth import routing_key
    from serving.routing import verified

    settings.REDIS_URL = redis_url
    with django_capture_on_commit_callbacks(execute=True):
        answer = changer.post(f"{PAGE}policy/", {"sampling_percent": "25", "retention_days": "7"})
    assert answer.status_code == 302
    policy = DataCollectionPolicy.objects.get(endpoint_name="ep-data", deployment_name="blue")
    assert (policy.sampling_percent, policy.retention_days) == (25.0, 7)
    client = redis.Redis.from_url(redis_url)
    try:
        document = json.loads(client.get(collection.POLICY_KEY))
    finally:
        client.close()
    assert verified(document, routing_key(settings.FLOWDEPLOY_SECRET_KEY or settings.SECRET_KEY))
    assert collection.policy_rates(document)["ep-data/blue"] == 0.25
    html = changer.get(PAGE).content.decode()
    assert "25% of scored requests" in html and "7 days" in html


def test_it_refuses_bad_settings_naming_the_field(changer, recent):
    answer = changer.post(f"{PAGE}policy/", {"sampling_percent": "0", "retention_days": "0"})
    assert answer.status_code == 422
    html = answer.content.decode()
    assert "Sampling rate must be a percentage from 0.01 to 100." in html
    assert "Retention must be a whole number of days from 1 to 3650." in html
    assert not DataCollectionPolicy.objects.exists()


def test_it_lets_only_those_who_may_change_deployments_change_the_settings(client, django_user_model, recent):
    client.force_login(member(django_user_model.objects.create_user("rita", password="rita-pass-1"), "reader"))
    assert 'id="policy-form"' not in client.get(PAGE).content.decode()
    assert client.post(f"{PAGE}policy/", {"sampling_percent": "50", "retention_days": "3"}).status_code == 403
    assert not DataCollectionPolicy.objects.exists()


def test_it_shows_readers_the_asset_but_not_what_requests_carried(client, django_user_model, recent):
    client.force_login(member(django_user_model.objects.create_user("rita", password="rita-pass-1"), "reader"))
    html = client.get(PAGE).content.decode()
    assert 'id="records-for-contributors"' in html and "req-a" not in html
    hour = timezone.now().strftime("%Y-%m-%dT%H")
    assert client.get(f"{PAGE}download/", {"hour": hour}).status_code == 403
