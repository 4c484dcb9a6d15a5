"""Request metrics through a real gateway process and fake instances: the record of each scored request shipped
to Redis for the studio, and the Prometheus /metrics endpoint."""

from __future__ import annotations

import json
import threading

import pytest
from gateway_support import call, deployment_spec, read_stream
from support import wait_for

from serving import metrics as request_metrics

pytestmark = pytest.mark.integration


def shipped(redis_client, endpoint: str) -> list[dict]:
    """The records the gateway shipped for one endpoint (the list is shared by the session's gateways)."""
    lines = redis_client.lrange(request_metrics.RECORDS_KEY, 0, -1)
    return [record for record in map(json.loads, lines) if record["endpoint"] == endpoint]


def wait_records(redis_client, endpoint: str, count: int) -> list[dict]:
    wait_for(lambda: len(shipped(redis_client, endpoint)) >= count, timeout=10, interval=0.05)
    return shipped(redis_client, endpoint)


def test_it_ships_a_record_of_each_scored_request(gateway, gateway_redis, publish, fake):
    """A scored request becomes a record: status, the instance's status, latency, time in the instance, bytes."""
    endpoint = publish({"blue": deployment_spec(fake("blue"))})
    answer = gateway.score(endpoint.name, {"sleep": 0.2}, endpoint.key, x_request_id="metrics-1")
    assert answer.status == 200
    [record] = wait_records(gateway_redis, endpoint.name, 1)
    assert record["deployment"] == "blue"
    assert record["request_id"] == "metrics-1"
    assert record["status"] == 200
    assert record["model_status"] == 200
    assert record["model_ms"] >= 200
    assert record["total_ms"] >= record["model_ms"]
    assert record["request_bytes"] == len(b'{"sleep": 0.2}')
    assert record["response_bytes"] == len(answer.body)
    assert record["throttled"] is False and record["timed_out"] is False
    assert record["id"].rsplit("-", 1)[1].isdigit()


def test_it_records_refusals_throttling_and_timeouts_apart(gateway, gateway_redis, publish, fake):
    """A 401 has no deployment and no time in the instance; a 429 is throttled; a 504 timed out; a flow failure
    keeps the instance's status."""
    blue = fake("blue")
    endpoint = publish({"blue": deployment_spec(blue, request_timeout_ms=300, max_concurrent_requests_per_instance=1)})
    assert gateway.score(endpoint.name, {}, "wrong-key").status == 401
    assert gateway.score(endpoint.name, {"sleep": 1}, endpoint.key).status == 504
    assert gateway.score(endpoint.name, {"fail": "boom"}, endpoint.key).status == 424

    slow = threading.Thread(target=gateway.score, args=(endpoint.name, {"sleep": 0.25}, endpoint.key))
    slow.start()
    wait_for(lambda: blue.inflight == 1, timeout=5, interval=0.01)
    assert gateway.score(endpoint.name, {}, endpoint.key).status == 429
    slow.join()

    records = wait_records(gateway_redis, endpoint.name, 5)
    by_status = {record["status"]: record for record in records}
    assert by_status[401]["deployment"] == "" and by_status[401]["model_ms"] is None
    assert by_status[504]["timed_out"] is True and by_status[504]["model_status"] is None
    assert 300 <= by_status[504]["model_ms"] < 1000
    assert by_status[424]["model_status"] == 400  # promptflow's answer to a failed flow; the client gets 424
    assert by_status[429]["throttled"] is True and by_status[429]["model_ms"] is None
    assert by_status[200]["deployment"] == "blue"


def test_it_measures_a_stream_until_its_end(gateway, gateway_redis, publish, fake):
    """For a streamed answer the time in the instance runs until the last chunk."""
    endpoint = publish({"blue": deployment_spec(fake("blue"))})
    headers = {"Authorization": f"Bearer {endpoint.key}", "Accept": "text/event-stream"}
    body = b'{"stream": 3, "gap": 0.1}'
    stream = read_stream(gateway.url, f"/endpoints/{endpoint.name}/score", headers, body)
    assert stream.status == 200 and len(stream.events) == 3
    [record] = wait_records(gateway_redis, endpoint.name, 1)
    assert record["streamed"] is True
    assert record["model_ms"] >= 200
    assert record["response_bytes"] == len(stream.body)


def test_it_does_not_record_unknown_endpoints(gateway, gateway_redis):
    """A name the gateway does not route is answered 404 and counted under endpoint="", never shipped."""
    assert call(gateway.url, "/endpoints/no-such-endpoint-x1/score", {}).status == 404
    metrics = call(gateway.url, "/metrics").body.decode()
    assert 'flowdeploy_requests_total{endpoint="",deployment="",status_code="404"}' in metrics
    assert shipped(gateway_redis, "no-such-endpoint-x1") == []


def test_it_serves_prometheus_metrics_by_endpoint_and_deployment(gateway, publish, fake):
    """/metrics counts requests by status, with latency histograms, bytes and requests in flight."""
    endpoint = publish({"blue": deployment_spec(fake("blue"))})
    for _ in range(3):
        assert gateway.score(endpoint.name, {}, endpoint.key).status == 200
    answer = call(gateway.url, "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.body.decode()
    labels = f'endpoint="{endpoint.name}",deployment="blue"'
    assert f'flowdeploy_requests_total{{{labels},status_code="200"}} 3' in text
    assert f'flowdeploy_request_duration_seconds_bucket{{{labels},le="+Inf"}} 3' in text
    assert f"flowdeploy_request_duration_seconds_count{{{labels}}} 3" in text
    assert f"flowdeploy_model_duration_seconds_count{{{labels}}} 3" in text
    assert f"flowdeploy_request_bytes_total{{{labels}}} 6" in text
    assert f"flowdeploy_requests_in_flight{{{labels}}} 0" in text
    assert "# TYPE flowdeploy_request_duration_seconds histogram" in text


def test_it_requires_the_metrics_token_when_one_is_set(start_gateway):
    """With FLOWDEPLOY_GATEWAY_METRICS_TOKEN set, /metrics wants it, even from loopback."""
    own = start_gateway(FLOWDEPLOY_GATEWAY_METRICS_TOKEN="scrape-me-7")
    assert call(own.url, "/metrics").status == 401
    assert call(own.url, "/metrics", headers={"Authorization": "Bearer nope"}).status == 401
    answer = call(own.url, "/metrics", headers={"Authorization": "Bearer scrape-me-7"})
    assert answer.status == 200
    assert b"flowdeploy_request_records_dropped_total 0" in answer.body


def test_it_keeps_records_while_redis_is_away_and_ships_them_later(gateway_redis):
    """Records that Redis did not take are shipped by the next try; past the bound the oldest are dropped."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import redis.asyncio
    import redis.exceptions

    metrics = request_metrics.Metrics("gw-unit", max_pending=3)
    for number in range(5):
        meter = request_metrics.Meter(None)
        meter.status, meter.endpoint, meter.deployment = 200, "unit-ep-keep", "blue"
        meter.request_id = f"r{number}".encode()
        metrics.observe(meter)
    assert metrics.dropped == 2

    async def ship_to(url: str) -> int:
        client = redis.asyncio.Redis.from_url(url)
        try:
            return await metrics.ship(client)
        finally:
            await client.aclose()

    def ship(url: str) -> int:
        # In a thread of its own: a browser test earlier in the session leaves Playwright's loop in this one.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, ship_to(url)).result()

    with pytest.raises(redis.exceptions.ConnectionError):
        ship("redis://127.0.0.1:1/0")
    assert len(metrics._unsent) == 3
    url = gateway_redis.connection_pool.connection_kwargs
    assert ship(f"redis://{url['host']}:{url['port']}/{url['db']}") == 3
    records = shipped(gateway_redis, "unit-ep-keep")
    assert [record["request_id"] for record in records] == ["r0", "r1", "r2"]
