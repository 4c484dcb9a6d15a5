"""A deployment's Monitoring tab: the summary and the charts' data from its request records and instance samples,
the ranges, the requests list with its filters, and who may look."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from roles import member

from monitoring import charts
from monitoring.models import InstanceSample, RequestRecord

pytestmark = pytest.mark.django_db

PAGE = "/deployments/ep-data/blue/monitoring/"


@pytest.fixture
def viewer(client, django_user_model):
    """A signed-in Reader of the default project."""
    client.force_login(member(django_user_model.objects.create_user("viewer", password="viewer-pass-1"), "reader"))
    return client


def record(n: int, at: datetime, status: int = 200, total_ms: float = 100.0, deployment: str = "blue", **fields):
    return RequestRecord.objects.create(
        record_id=f"gw-{deployment}-{n}",
        time=at,
        endpoint_name="ep-data",
        deployment_name=deployment,
        request_id=f"req-{n}",
        status=status,
        model_status=fields.pop("model_status", status),
        total_ms=total_ms,
        model_ms=fields.pop("model_ms", total_ms - 5),
        **fields,
    )


def chart(html: str, chart_id: str) -> dict:
    found = re.search(rf'<script id="chart-data-{chart_id}" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(found.group(1))


def test_it_shows_requests_per_minute_by_status_latency_and_errors(viewer, deployment_row):
    deployment_row()
    now = datetime.now(UTC)
    for n in range(100):
        record(n, now - timedelta(minutes=2), total_ms=n + 1)
    record(100, now - timedelta(minutes=2), status=429, total_ms=1, model_status=None, model_ms=None, throttled=True)
    record(101, now - timedelta(minutes=5), status=504, total_ms=5000, timed_out=True)
    record(102, now - timedelta(hours=2), status=500)  # out of the last hour
    record(103, now - timedelta(minutes=2), deployment="green")  # another deployment

    response = viewer.get(PAGE)
    assert response.status_code == 200
    assert "endpoints/deployment_monitoring.html" in [t.name for t in response.templates]
    html = response.content.decode()
    assert '<a href="/deployments/ep-data/blue/monitoring/" class="active" aria-current="page">Monitoring</a>' in html
    summary = response.context["data"]["summary"]
    assert summary == {"requests": 102, "errors": 2, "error_rate": 1.96, "p50": 50.0, "p95": 96.0, "p99": 100.0}

    requests = chart(html, "requests")
    assert len(requests["x"]) == 60 and requests["x"][1] - requests["x"][0] == 60
    series = {s["label"]: s["values"] for s in requests["series"]}
    assert sorted(series) == ["HTTP 200", "HTTP 429", "HTTP 504"]
    assert sum(series["HTTP 200"]) == 100 and sum(series["HTTP 504"]) == 1
    latency = {s["label"]: s["values"] for s in chart(html, "latency")["series"]}
    assert max(v for v in latency["P99"] if v is not None) == 5000.0
    assert set(latency) == {"P50", "P95", "P99", "P95 in the instance"}
    errors = {s["label"]: sum(s["values"]) for s in chart(html, "errors")["series"]}
    assert errors == {"Errors (4xx and 5xx)": 2, "Throttled (429)": 1, "Timed out (408, 504)": 1}


def test_it_looks_back_a_day_or_a_week(viewer, deployment_row):
    deployment_row()
    now = datetime.now(UTC)
    record(1, now - timedelta(hours=20))
    record(2, now - timedelta(days=5))
    assert viewer.get(PAGE).context["data"]["summary"]["requests"] == 0
    day = viewer.get(PAGE, {"range": "1d"})
    assert day.context["data"]["summary"]["requests"] == 1
    assert len(day.context["data"]["charts"][0]["x"]) == 96
    assert viewer.get(PAGE, {"range": "7d"}).context["data"]["summary"]["requests"] == 2
    assert viewer.get(PAGE, {"range": "nonsense"}).context["chosen"].key == "1h"


def test_it_charts_instance_cpu_and_memory_from_samples(viewer, deployment_row):
    deployment_row()
    now = datetime.now(UTC).replace(second=30)
    for minute, cpu in enumerate((10.0, 16.0, 19.0)):
        InstanceSample.objects.create(
            time=now - timedelta(minutes=3 - minute),
            endpoint_name="ep-data",
            deployment_name="blue",
            instance_name="0b5c0000-0000-0000-0000-000000000000",
            cpu_seconds=cpu,
            memory_bytes=(100 + minute) * 1024 * 1024,
        )
    html = viewer.get(PAGE).content.decode()
    [cpu] = chart(html, "cpu")["series"]
    assert cpu["label"] == "Instance 0b5c0000"  # the instance row is gone: named by its id
    assert [v for v in cpu["values"] if v is not None] == [10.0, 5.0]  # 6 s, then 3 s of CPU in 60 s
    [memory] = chart(html, "memory")["series"]
    assert [v for v in memory["values"] if v is not None] == [100.0, 101.0, 102.0]


def test_it_lists_the_newest_requests_with_filters(viewer, deployment_row):
    deployment_row()
    now = datetime.now(UTC)
    for n in range(60):
        record(n, now - timedelta(seconds=n), total_ms=10)
    record(60, now - timedelta(seconds=30), status=424, total_ms=900)
    html = viewer.get(PAGE).content.decode()
    assert html.count("<code>req-") == 50
    assert "req-0</code>" in html and "req-55</code>" not in html
    older = re.search(r'<a href="([^"]+)" id="older-requests">', html).group(1).replace("&amp;", "&")
    older_html = viewer.get(older).content.decode()
    assert "req-55</code>" in older_html and "req-0</code>" not in older_html

    errors = viewer.get(PAGE, {"status": "errors", "part": "requests"}, HTTP_HX_REQUEST="true")
    assert errors.content.decode().count("<code>req-") == 1
    assert "req-60</code>" in errors.content.decode()
    assert '<section class="card" id="requests">' in errors.content.decode()
    assert "chart-data" not in errors.content.decode()  # the fragment only
    slow = viewer.get(PAGE, {"min_ms": "500"}).content.decode()
    assert slow.count("<code>req-") == 1


def test_it_names_a_bad_latency_filter(viewer, deployment_row):
    deployment_row()
    record(1, datetime.now(UTC))
    html = viewer.get(PAGE, {"min_ms": "fast"}).content.decode()
    assert "Latency at least: &#x27;fast&#x27; is not a number of milliseconds." in html
    assert "req-1</code>" in html


def test_it_requires_a_role_in_the_project(client, django_user_model, deployment_row):
    deployment_row()
    assert client.get(PAGE).status_code == 302
    client.force_login(django_user_model.objects.create_user("nobody", password="nobody-pass-1"))
    assert client.get(PAGE).status_code == 404


def test_it_takes_nearest_rank_percentiles():
    assert charts.percentile([], 0.5) is None
    assert charts.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert charts.percentile([float(n) for n in range(1, 101)], 0.99) == 99.0
