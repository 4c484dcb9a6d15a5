"""The Monitoring tab in Chromium, on a real deployment of chat-basic (against the loopback OpenAI-compatible
server) scored through the real gateway: the gateway's request records reach the studio (beat's ingest task,
called here), the instance is sampled from /proc, and the tab draws the charts and lists the requests; with
Application Insights diagnostics on, a request opens into the waterfall of its spans."""

import re
import time
import uuid

import httpx
import pytest
from playwright.sync_api import expect
from support import wait_for

from endpoints import services
from monitoring import requests as monitoring_requests
from monitoring.models import InstanceSample, RequestRecord, Span

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_it_charts_a_live_deployments_requests(signed_in, live_server, deploy, open_ai_connection, gateway_url):

    from endpoints.publishing import client

    redis = client()
    blue = deploy("chat-basic", endpoint="ep-monitor", name="blue")
    time.sleep(1.2)  # the gateway ships its records every second: the deploy fixture's probe goes first
    monitoring_requests.ingest(redis)
    RequestRecord.objects.filter(endpoint_name="ep-monitor").delete()
    key = services.credentials(blue.endpoint)["primaryKey"]
    headers = {"Authorization": f"Bearer {key}", "azureml-model-deployment": "blue"}
    url = f"{gateway_url}{blue.endpoint.scoring_path}"
    for turn in range(4):
        answer = httpx.post(url, json={"question": f"Turn {turn}?", "chat_history": []}, headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
    assert httpx.post(url, json={}, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    assert httpx.post(url, content=b"[1]", headers=headers, timeout=10).status_code == 400

    monitoring_requests.sample_instances()

    def ingested() -> bool:
        monitoring_requests.ingest(redis)
        return RequestRecord.objects.filter(endpoint_name="ep-monitor").count() >= 6

    wait_for(ingested, timeout=15, interval=0.3, message="the gateway's records did not reach the studio")
    time.sleep(1.1)
    monitoring_requests.sample_instances()
    assert InstanceSample.objects.filter(endpoint_name="ep-monitor").count() >= 2
    scored = RequestRecord.objects.filter(endpoint_name="ep-monitor", deployment_name="blue", status=200)
    assert scored.count() == 4
    assert all(r.model_ms and r.model_ms <= r.total_ms and r.model_status == 200 for r in scored)

    page = signed_in
    page.goto(f"{live_server.url}/deployments/ep-monitor/blue/")
    page.get_by_role("link", name="Monitoring", exact=True).click()
    expect(page.locator("#summary-requests")).to_have_text("5")  # the 401 has no deployment: endpoint-wide only
    expect(page.locator("#summary-errors")).to_contain_text("1")
    for chart in ("requests", "latency", "errors", "cpu", "memory"):
        expect(page.locator(f"#chart-{chart} .uplot canvas")).to_have_count(1)
    expect(page.locator("#chart-requests .u-legend")).to_contain_text("HTTP 200")
    expect(page.locator("#chart-requests .u-legend")).to_contain_text("HTTP 400")
    expect(page.locator("#chart-latency .u-legend")).to_contain_text("P99")
    expect(page.locator("#request-rows tbody tr")).to_have_count(5)

    page.evaluate("window.notReloaded = true")
    page.get_by_role("link", name="Last week").click()
    expect(page).to_have_url(f"{live_server.url}/deployments/ep-monitor/blue/monitoring/?range=7d")
    expect(page.locator("#chart-requests .uplot canvas")).to_have_count(1)  # drawn again after the swap
    assert page.evaluate("window.notReloaded") is True

    page.get_by_label("Status").select_option("errors")
    expect(page.locator("#request-rows tbody tr")).to_have_count(1)
    expect(page.locator("#request-rows tbody tr")).to_contain_text("400")


def test_it_opens_a_traced_request_as_a_waterfall(signed_in, live_server, deploy, open_ai_connection, gateway_url):
    from endpoints.publishing import client

    blue = deploy("chat-basic", endpoint="ep-waterfall", name="blue", app_insights_enabled=True)
    key = services.credentials(blue.endpoint)["primaryKey"]
    request_id = f"waterfall-{uuid.uuid4()}"
    headers = {"Authorization": f"Bearer {key}", "x-request-id": request_id}
    body = {"question": "Show me the spans?", "chat_history": []}
    answer = httpx.post(f"{gateway_url}{blue.endpoint.scoring_path}", json=body, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    redis = client()

    def arrived() -> bool:
        monitoring_requests.ingest(redis)
        return (
            RequestRecord.objects.filter(request_id=request_id).exists()
            and Span.objects.filter(request_id=request_id).count() >= 3
        )

    wait_for(arrived, timeout=20, interval=0.3, message="the request's record or spans did not reach the studio")

    page = signed_in
    page.goto(f"{live_server.url}/deployments/ep-waterfall/blue/monitoring/")
    row = page.locator("#request-rows tbody tr", has_text=request_id)
    row.get_by_role("link", name="View trace").click()
    expect(page.get_by_role("heading", name=re.compile("^Trace"))).to_be_visible()
    expect(page.locator("#trace-props")).to_contain_text(request_id)
    expect(page.locator("#trace-tokens")).to_have_text("20")
    spans = page.locator("#waterfall > li")
    expect(spans).to_have_count(3)
    expect(spans.nth(0)).to_contain_text("flow")
    expect(spans.nth(1)).to_contain_text("chat")
    expect(spans.nth(2)).to_contain_text("openai_chat")
    expect(spans.nth(2)).to_contain_text("20 tokens")
    bars = page.locator(".span-bar")
    widths = [bars.nth(i).evaluate("(bar) => bar.getBoundingClientRect().width") for i in range(3)]
    assert widths[0] >= widths[1] >= widths[2] > 0  # each span inside its parent on the time line

    llm = spans.nth(2)
    expect(llm.locator(".span-output")).to_be_hidden()
    llm.locator("summary").click()
    expect(llm.locator(".span-output")).to_be_visible()
    expect(llm.locator(".span-output")).to_contain_text("you asked 'Show me the spans?'")
    # The local server counts the answer's words as completion tokens, and 20 in all.
    expect(llm).to_contain_text(re.compile(r"Prompt tokens 10 · completion tokens \d+ · total 20"))

    # The Test tab's chat window links its answer to the trace of that request.
    page.goto(f"{live_server.url}/deployments/ep-waterfall/blue/test/")
    page.locator("#chat-input").fill("Trace this turn?")
    page.locator("#chat-send").click()
    link = page.locator("#chat-window .trace-link")
    expect(link).to_have_count(1, timeout=60_000)

    chat_request = link.get_attribute("href").split("request_id=", 1)[1]

    def chat_spans() -> bool:
        return Span.objects.filter(request_id=chat_request).count() >= 3

    wait_for(chat_spans, timeout=20, interval=0.3, message="the chat turn's spans did not reach the studio")
    link.click()
    expect(page.get_by_role("heading", name=re.compile("^Trace"))).to_be_visible()
    expect(page.locator("#waterfall > li")).to_have_count(3)
    expect(page.locator("#waterfall")).to_contain_text("Trace this turn?")
