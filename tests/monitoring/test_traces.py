"""Traces on the Monitoring tab: the requests list links each traced request to its waterfall, the waterfall shows
the spans in tree order with inputs and outputs, a request id finds its trace, and token consumption is charted."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from roles import member

from monitoring.models import RequestRecord, Span

pytestmark = pytest.mark.django_db

BASE = "/deployments/ep-data/blue/monitoring/"
TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def viewer(client, django_user_model):
    """A Contributor: a trace holds the inputs and outputs of its request (Action.READ_DATA)."""
    user = member(django_user_model.objects.create_user("viewer", password="viewer-pass-1"), "contributor")
    client.force_login(user)
    return client


def make_span(span_id, name, parent="", offset_ms=0.0, ms=10.0, deployment="blue", trace=TRACE, **fields):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1) + timedelta(milliseconds=offset_ms)
    return Span.objects.create(
        trace_id=trace,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        start=start,
        duration_ms=ms,
        status=fields.pop("status", "Ok"),
        attributes=fields.pop("attributes", {}),
        endpoint_name="ep-data",
        deployment_name=deployment,
        request_id=fields.pop("request_id", "req-traced"),
        **fields,
    )


@pytest.fixture
def traced(deployment_row):
    deployment = deployment_row()
    deployment.app_insights_enabled = True
    deployment.save()
    make_span("a" * 16, "flow", ms=100, attributes={"span_type": "Flow", "inputs": '{"question": "Why?"}'})
    make_span("c" * 16, "openai_chat", parent="b" * 16, offset_ms=30, ms=50, prompt_tokens=10, completion_tokens=9,
              total_tokens=19, attributes={"span_type": "LLM", "output": '{"id": "chatcmpl"}'})  # fmt: skip
    make_span(
        "b" * 16, "chat", parent="a" * 16, offset_ms=20, ms=70, attributes={"node_name": "chat", "output": "Because."}
    )
    RequestRecord.objects.create(
        record_id="gw-1",
        time=datetime.now(UTC) - timedelta(minutes=1),
        endpoint_name="ep-data",
        deployment_name="blue",
        request_id="req-traced",
        status=200,
        model_status=200,
        total_ms=120,
        model_ms=110,
    )
    RequestRecord.objects.create(
        record_id="gw-2", time=datetime.now(UTC), endpoint_name="ep-data", deployment_name="blue",
        request_id="req-untraced", status=200, total_ms=5,
    )  # fmt: skip
    return deployment


def test_it_links_traced_requests_to_their_waterfall(viewer, traced):
    html = viewer.get(BASE).content.decode()
    assert f'<a href="{BASE}traces/{TRACE}/">View trace</a>' in html
    assert html.count("View trace") == 1  # req-untraced has none
    assert 'id="tokens-note"' not in html


def test_it_shows_the_waterfall_in_tree_order_with_inputs_and_outputs(viewer, traced):
    response = viewer.get(f"{BASE}traces/{TRACE}/")
    assert response.status_code == 200
    rows = response.context["rows"]
    assert [(row["span"].name, row["depth"]) for row in rows] == [("flow", 0), ("chat", 1), ("openai_chat", 2)]
    assert [(row["offset"], row["width"]) for row in rows] == [(0.0, 100.0), (20.0, 70.0), (30.0, 50.0)]
    html = response.content.decode()
    assert "<code>req-traced</code>" in html
    assert "HTTP 200 in 120.0 ms, 110.0 ms in the instance" in html
    assert '<dd id="trace-tokens">19</dd>' in html
    assert "{&quot;question&quot;: &quot;Why?&quot;}" in html and "Because." in html
    assert "Prompt tokens 10 · completion tokens 9 · total 19" in html
    assert 'class="span-bar" style="left: 20.0%; width: 70.0%"' in html


def test_it_finds_the_trace_of_a_request_id(viewer, traced):
    response = viewer.get(f"{BASE}traces/", {"request_id": "req-traced"})
    assert response.status_code == 302 and response["Location"] == f"{BASE}traces/{TRACE}/"
    missing = viewer.get(f"{BASE}traces/", {"request_id": "req-untraced"})
    assert missing.status_code == 404
    assert "No trace of request <code>req-untraced</code> has arrived yet." in missing.content.decode()


def test_it_keeps_traces_to_their_deployment(viewer, traced):
    make_span("d" * 16, "flow", deployment="green", trace="1" * 32)
    assert viewer.get(f"/deployments/ep-data/blue/monitoring/traces/{'1' * 32}/").status_code == 404
    assert viewer.get(f"{BASE}traces/nonsense/").status_code == 404


def test_it_requires_a_role_in_the_project(client, django_user_model, traced):
    client.force_login(django_user_model.objects.create_user("nobody", password="nobody-pass-1"))
    assert client.get(f"{BASE}traces/{TRACE}/").status_code == 404
    assert client.get(f"{BASE}traces/", {"request_id": "req-traced"}).status_code == 404


def test_it_charts_token_consumption_from_the_llm_calls(viewer, traced):
    html = viewer.get(BASE).content.decode()
    found = re.search(r'<script id="chart-data-tokens" type="application/json">(.*?)</script>', html, re.S)
    series = {s["label"]: sum(s["values"]) for s in json.loads(found.group(1))["series"]}
    assert series == {"Prompt tokens": 10, "Completion tokens": 9}


def test_it_says_when_a_deployment_collects_no_traces(viewer, deployment_row):
    deployment_row()
    assert 'id="tokens-note"' in viewer.get(BASE).content.decode()
    response = viewer.get(f"{BASE}traces/", {"request_id": "anything"})
    assert "Application Insights diagnostics is off" in response.content.decode()


def test_it_says_on_the_details_tab_whether_diagnostics_is_on(viewer, deployment_row):
    deployment = deployment_row()
    html = viewer.get("/deployments/ep-data/blue/").content.decode()
    assert '<dd id="app-insights">Disabled</dd>' in html
    deployment.app_insights_enabled = True
    deployment.save()
    html = viewer.get("/deployments/ep-data/blue/").content.decode()
    assert f'the <a href="{BASE}">Monitoring</a> tab' in html


def test_it_charts_each_nodes_latency_from_the_traces(viewer, traced):
    make_span("e" * 16, "chat", parent="a" * 16, ms=30, trace="2" * 32, attributes={"node_name": "chat"})
    html = viewer.get(BASE).content.decode()
    found = re.search(r'<script id="chart-data-node-latency" type="application/json">(.*?)</script>', html, re.S)
    [chat] = json.loads(found.group(1))["series"]  # the LLM call under the node is not a node
    assert chat["label"] == "chat"
    assert [v for v in chat["values"] if v is not None] == [70.0]


def test_it_keeps_traces_from_readers(client, django_user_model, traced):
    """Readers see the Monitoring tab's charts and requests, not what the requests carried."""
    client.force_login(member(django_user_model.objects.create_user("rita", password="rita-pass-1"), "reader"))
    assert client.get(f"/deployments/ep-data/blue/monitoring/traces/{TRACE}/").status_code == 403
    tab = client.get("/deployments/ep-data/blue/monitoring/")
    assert tab.status_code == 200 and "View trace" not in tab.content.decode()
