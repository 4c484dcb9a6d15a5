"""Tracing end to end: a chat-basic deployment with Application Insights diagnostics on, scored through the real
gateway against the loopback OpenAI-compatible server, exports promptflow's spans over OTLP/HTTP to the studio
(the live server), which stores the flow span, the llm node's span and the LLM call with its token counts; the
gateway's metrics count the same request, and its record carries the request id the spans carry."""

import time
import uuid

import httpx
import pytest
from support import wait_for

from endpoints import services
from monitoring import requests as monitoring_requests
from monitoring.models import RequestRecord, Span

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_it_stores_the_spans_and_metrics_of_a_traced_request(deploy, open_ai_connection, gateway_url):
    blue = deploy("chat-basic", endpoint="ep-traced", name="blue", app_insights_enabled=True)
    key = services.credentials(blue.endpoint)["primaryKey"]
    request_id = f"traced-{uuid.uuid4()}"  # Redis outlives a test session: never the id of an earlier run
    headers = {"Authorization": f"Bearer {key}", "x-request-id": request_id}
    answer = httpx.post(
        f"{gateway_url}{blue.endpoint.scoring_path}",
        json={"question": "Is it traced?", "chat_history": []},
        headers=headers,
        timeout=60,
    )
    assert answer.status_code == 200, answer.text

    wait_for(
        lambda: Span.objects.filter(request_id=request_id).count() >= 3,
        timeout=20,
        interval=0.2,
        message="the request's spans did not reach the studio",
    )
    spans = {span.name: span for span in Span.objects.filter(request_id=request_id)}
    assert {(s.endpoint_name, s.deployment_name) for s in spans.values()} == {("ep-traced", "blue")}
    assert len({s.trace_id for s in spans.values()}) == 1
    flow, node, llm = spans["flow"], spans["chat"], spans["openai_chat"]
    assert flow.is_root and flow.attributes["span_type"] == "Flow"
    assert '"question": "Is it traced?"' in flow.attributes["inputs"]
    assert "you asked 'Is it traced?'" in flow.attributes["output"]
    assert node.parent_span_id == flow.span_id and node.attributes["node_name"] == "chat"
    assert llm.parent_span_id == node.span_id and llm.attributes["span_type"] == "LLM"
    assert (llm.prompt_tokens, llm.completion_tokens, llm.total_tokens) == (10, 9, 20)  # the local server's usage
    assert flow.total_tokens is None  # counted once, on the LLM call
    assert 0 < llm.duration_ms <= node.duration_ms <= flow.duration_ms
    assert all(s.status == "Ok" for s in spans.values())

    metrics = httpx.get(f"{gateway_url}/metrics").text
    assert 'flowdeploy_requests_total{endpoint="ep-traced",deployment="blue",status_code="200"}' in metrics
    assert 'flowdeploy_model_duration_seconds_count{endpoint="ep-traced",deployment="blue"}' in metrics
    from endpoints.publishing import client

    redis = client()

    def recorded() -> bool:
        monitoring_requests.ingest(redis)
        return RequestRecord.objects.filter(request_id=request_id).exists()

    wait_for(recorded, timeout=10, interval=0.3, message="the gateway's record did not reach the studio")
    record = RequestRecord.objects.get(request_id=request_id)
    assert (record.endpoint_name, record.deployment_name, record.status) == ("ep-traced", "blue", 200)
    assert record.model_ms >= flow.duration_ms


def test_it_traces_nothing_with_diagnostics_off(deploy, open_ai_connection, gateway_url):
    blue = deploy("chat-basic", endpoint="ep-untraced", name="blue")
    key = services.credentials(blue.endpoint)["primaryKey"]
    headers = {"Authorization": f"Bearer {key}", "x-request-id": "untraced-request-1"}
    answer = httpx.post(f"{gateway_url}{blue.endpoint.scoring_path}", json={}, headers=headers, timeout=60)
    assert answer.status_code == 200
    time.sleep(2)  # twice the export delay of a traced instance
    assert not Span.objects.filter(endpoint_name="ep-untraced").exists()
