"""The scoring gateway as clients see it: a real gateway process, Redis, and fake promptflow instances."""

import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from gateway_support import GATEWAY_SECRET, call, deployment_spec, read_stream
from support import wait_for

from config.local_services import free_port
from serving import routing
from serving.auth import issue_token, new_key, routing_key

pytestmark = pytest.mark.integration


def in_background(function, *args, **kwargs) -> tuple[threading.Thread, list]:
    """Run a call in a thread; the list receives its result."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(function(*args, **kwargs)), daemon=True)
    thread.start()
    return thread, result


def test_it_reports_health_once_routes_are_loaded(gateway, publish, fake):
    """/health is 200 with the number of endpoints served."""
    publish({"blue": deployment_spec(fake("blue"))})
    answer = call(gateway.url, "/health")
    assert answer.status == 200
    assert answer.json["status"] == "Healthy"
    assert answer.json["endpoints"] >= 1
    assert answer.headers["x-request-id"]


def test_it_scores_with_the_primary_and_the_secondary_key(gateway, publish, fake):
    """Either key of a key-based endpoint works; the answer names the deployment and carries a request id."""
    blue = fake("blue")
    endpoint = publish({"blue": deployment_spec(blue)})
    for key in endpoint.keys:
        answer = gateway.score(endpoint.name, {"url": "https://arxiv.org/abs/2307.04767"}, key)
        assert answer.status == 200, answer.body
        assert answer.json["instance"] == "blue"
        assert answer.json["inputs"] == {"url": "https://arxiv.org/abs/2307.04767"}
        assert answer.json["content_type"] == "application/json"
        assert answer.headers["azureml-model-deployment"] == "blue"
        request_id = answer.headers["x-request-id"]
        assert uuid.UUID(request_id).version == 4
        assert answer.json["request_id"] == request_id


def test_it_forwards_the_clients_request_id_and_accept_header(gateway, publish, fake):
    """A client's x-request-id is kept, and Accept reaches the instance."""
    endpoint = publish({"blue": deployment_spec(fake("blue"))})
    answer = gateway.score(endpoint.name, {}, endpoint.key, x_request_id="my-request-42", accept="application/json")
    assert answer.status == 200
    assert answer.headers["x-request-id"] == "my-request-42"
    assert answer.json["request_id"] == "my-request-42"
    assert answer.json["accept"] == "application/json"


def test_it_refuses_missing_and_wrong_credentials(gateway, publish, fake):
    """401 Unauthorized with a WWW-Authenticate challenge for no key, a wrong key or another scheme."""
    endpoint = publish({"blue": deployment_spec(fake("blue"))})
    attempts = [
        {},
        {"Authorization": f"Bearer {new_key()}"},
        {"Authorization": f"Basic {endpoint.key}"},
        {"Authorization": "Bearer "},
    ]
    for headers in attempts:
        answer = call(gateway.url, f"/endpoints/{endpoint.name}/score", {}, headers)
        assert answer.status == 401, headers
        assert answer.error["code"] == "Unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.headers["x-request-id"]


def test_it_accepts_a_token_only_for_its_own_endpoint(gateway, publish, fake, token_key):
    """Token endpoints take unexpired tokens issued for them, and nothing else."""
    blue = fake("blue")
    endpoint = publish({"blue": deployment_spec(blue)}, auth_type="token", key_digests=[])
    other = publish({"blue": deployment_spec(blue)}, auth_type="token", key_digests=[])

    token = issue_token(endpoint.name, token_key)["accessToken"]
    assert gateway.score(endpoint.name, {}, token).status == 200

    refused = {
        "for another endpoint": issue_token(other.name, token_key)["accessToken"],
        "expired": issue_token(endpoint.name, token_key, now=time.time() - 7200)["accessToken"],
        "signed with another key": issue_token(endpoint.name, b"another-key")["accessToken"],
        "a key": new_key(),
    }
    for reason, credential in refused.items():
        answer = gateway.score(endpoint.name, {}, credential)
        assert answer.status == 401, reason
        assert answer.error["code"] == "Unauthorized"


def test_it_stops_accepting_a_revoked_key_within_a_second(gateway, publish, fake):
    """Republishing without a key makes it fail at once, while the other key keeps working."""
    blue = fake("blue")
    endpoint = publish({"blue": deployment_spec(blue)})
    primary, secondary = endpoint.keys
    assert gateway.score(endpoint.name, {}, primary).status == 200

    started = time.monotonic()
    publish({"blue": deployment_spec(blue)}, name=endpoint.name, keys=[secondary], wait=False)
    wait_for(lambda: gateway.score(endpoint.name, {}, primary).status == 401, timeout=2, interval=0.02)
    assert time.monotonic() - started < 1.0
    assert gateway.score(endpoint.name, {}, secondary).status == 200


def test_it_answers_404_for_unknown_endpoints_and_routes(gateway):
    """Unknown endpoints and paths are 404 with a JSON error; the wrong method is 405."""
    answer = gateway.score("no-such-endpoint", {}, new_key())
    assert answer.status == 404
    assert answer.error["code"] == "EndpointNotFound"
    assert "no-such-endpoint" in answer.error["message"]

    answer = call(gateway.url, "/somewhere/else")
    assert answer.status == 404
    assert answer.error["code"] == "NotFound"

    answer = call(gateway.url, "/endpoints/no-such-endpoint/score", method="GET")
    assert answer.status == 405


def test_it_pins_a_deployment_by_header(gateway, publish, fake):
    """azureml-model-deployment sends the request to that deployment, even one without traffic."""
    endpoint = publish(
        {"blue": deployment_spec(fake("blue")), "green": deployment_spec(fake("green"))},
        traffic={"blue": 100, "green": 0},
    )
    answer = gateway.score(endpoint.name, {}, endpoint.key, azureml_model_deployment="green")
    assert answer.status == 200
    assert answer.json["instance"] == "green"
    assert answer.headers["azureml-model-deployment"] == "green"

    answer = gateway.score(endpoint.name, {}, endpoint.key, azureml_model_deployment="purple")
    assert answer.status == 404
    assert answer.error["code"] == "DeploymentNotFound"


def test_it_splits_traffic_by_the_weights(gateway, publish, fake):
    """With blue 90 and green 10, about a tenth of 400 requests go to green."""
    endpoint = publish(
        {"blue": deployment_spec(fake("blue")), "green": deployment_spec(fake("green"))},
        traffic={"blue": 90, "green": 10},
    )
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: gateway.score(endpoint.name, {}, endpoint.key), range(400)))
    assert all(a.status == 200 for a in answers)
    green = sum(a.headers["azureml-model-deployment"] == "green" for a in answers)
    assert 0.05 <= green / 400 <= 0.15, green  # 10% +- 5%: more than 4 standard deviations


def test_it_mirrors_traffic_without_waiting_for_the_mirror(gateway, publish, fake):
    """Mirrored copies reach the mirror deployment; the client gets the live deployment's answer, undelayed."""
    blue, green = fake("blue"), fake("green", delay=1.5)
    endpoint = publish(
        {"blue": deployment_spec(blue), "green": deployment_spec(green)},
        traffic={"blue": 100, "green": 0},
        mirror_traffic={"green": 100},
    )
    started = time.monotonic()
    for number in range(3):
        answer = gateway.score(endpoint.name, {"n": number}, endpoint.key)
        assert answer.status == 200
        assert answer.json["instance"] == "blue"
        assert answer.headers["azureml-model-deployment"] == "blue"
    assert time.monotonic() - started < 1.0
    wait_for(lambda: len(green.received) == 3, timeout=5, message="the mirror did not get its copies")
    assert sorted(r.body for r in green.received) == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']


def test_it_sends_the_next_request_to_the_instance_with_the_fewest_in_flight(gateway, publish, fake):
    """While one instance is busy with a slow request, the others get the next requests."""
    first, second = fake("first"), fake("second")
    endpoint = publish({"blue": deployment_spec(first, second)})
    thread, _ = in_background(gateway.score, endpoint.name, {"sleep": 1.5}, endpoint.key)
    wait_for(lambda: first.inflight + second.inflight == 1, timeout=5, interval=0.01)
    busy, idle = (first, second) if first.inflight else (second, first)
    for _ in range(4):
        assert gateway.score(endpoint.name, {}, endpoint.key).json["instance"] == idle.name
    assert len(busy.received) == 1
    thread.join()


def test_it_answers_429_when_every_instance_is_at_its_limit(gateway, publish, fake):
    """max_concurrent_requests_per_instance requests in flight everywhere: the next one is 429."""
    blue = fake("blue")
    endpoint = publish({"blue": deployment_spec(blue, max_concurrent_requests_per_instance=1)})
    thread, result = in_background(gateway.score, endpoint.name, {"sleep": 1.0}, endpoint.key)
    wait_for(lambda: blue.inflight == 1, timeout=2, interval=0.01)
    answer = gateway.score(endpoint.name, {}, endpoint.key)
    assert answer.status == 429
    assert answer.error["code"] == "TooManyRequests"
    assert answer.headers["azureml-model-deployment"] == "blue"
    assert answer.headers["retry-after"] == "1"
    thread.join()
    assert result[0].status == 200
    assert gateway.score(endpoint.name, {}, endpoint.key).status == 200


def test_it_answers_504_when_the_instance_is_too_slow(gateway, publish, fake):
    """An answer later than request_timeout_ms is a 504, given when the timeout passes."""
    endpoint = publish({"blue": deployment_spec(fake("blue"), request_timeout_ms=300)})
    started = time.monotonic()
    answer = gateway.score(endpoint.name, {"sleep": 3}, endpoint.key)
    assert answer.status == 504
    assert answer.error["code"] == "RequestTimeout"
    assert "300 ms" in answer.error["message"]
    assert 0.3 <= time.monotonic() - started < 1.5


def test_it_answers_413_for_bodies_over_the_limit(gateway, publish, fake):
    """max_body_bytes is enforced by Content-Length and, for chunked uploads, while reading."""
    blue = fake("blue")
    endpoint = publish({"blue": deployment_spec(blue, max_body_bytes=1000)})
    too_big = {"text": "x" * 2000}
    path = f"/endpoints/{endpoint.name}/score"
    headers = {"Authorization": f"Bearer {endpoint.key}"}
    for chunked in (False, True):
        answer = call(gateway.url, path, too_big, headers, chunked=chunked)
        assert answer.status == 413, chunked
        assert answer.error["code"] == "PayloadTooLarge"
        assert "1000 bytes" in answer.error["message"]
    assert call(gateway.url, path, {"text": "x" * 900}, headers, chunked=True).status == 200
    assert len(blue.received) == 1


def test_it_uses_the_default_body_limit_from_the_environment(start_gateway, publish, fake, gateway_redis_url):
    """FLOWDEPLOY_GATEWAY_MAX_BODY_BYTES applies to deployments that do not set max_body_bytes."""
    gateway = start_gateway(FLOWDEPLOY_GATEWAY_MAX_BODY_BYTES="500")
    spec = deployment_spec(fake("blue"))
    del spec["max_body_bytes"]
    endpoint = publish({"blue": spec})
    wait_for(lambda: gateway.score(endpoint.name, {}, endpoint.key).status == 200, timeout=5)
    assert gateway.score(endpoint.name, {"text": "x" * 600}, endpoint.key).status == 413


def test_it_answers_400_for_bodies_that_are_not_a_json_object(gateway, publish, fake):
    """The message names the problem; nothing reaches the instance."""
    blue = fake("blue")
    endpoint = publish({"blue": deployment_spec(blue)})
    answer = gateway.score(endpoint.name, b"not json", endpoint.key)
    assert answer.status == 400
    assert answer.error == {
        "code": "BadRequest",
        "message": "Request body is not valid JSON: Expecting value at line 1 column 1",
    }
    answer = gateway.score(endpoint.name, b'[{"url": "x"}]', endpoint.key)
    assert answer.status == 400
    assert answer.error["message"] == "Request body must be a JSON object of flow inputs, not an array."
    assert blue.received == []


def test_it_maps_flow_failures_to_424_and_input_errors_to_400(gateway, publish, fake):
    """A failing node or a SystemError is 424 with promptflow's message; a wrong input stays promptflow's 400."""
    endpoint = publish({"blue": deployment_spec(fake("blue"))})

    answer = gateway.score(endpoint.name, {"fail": "not an absolute URL: 'bad'"}, endpoint.key)
    assert answer.status == 424
    assert answer.error["code"] == "FlowExecutionFailed"
    assert answer.error["message"] == "Execution failure in 'fetch_url_parts': (ValueError) not an absolute URL: 'bad'"
    assert answer.headers["azureml-model-deployment"] == "blue"

    answer = gateway.score(endpoint.name, {"system_error": True}, endpoint.key)
    assert answer.status == 424
    assert answer.error["message"] == "boom"

    answer = gateway.score(endpoint.name, {"bad_input": True}, endpoint.key)
    assert answer.status == 400
    assert answer.error["code"] == "UserError"
    assert answer.error["message"].startswith("The input for flow is incorrect.")


def test_it_answers_503_without_a_healthy_instance(gateway, publish):
    """No instance, an instance that refuses connections, or no deployment taking traffic: 503."""
    closed = f"http://127.0.0.1:{free_port()}"
    cases = [
        publish({"blue": deployment_spec()}),
        publish({"blue": deployment_spec(closed)}),
        publish({"blue": deployment_spec(closed)}, traffic={}),
    ]
    for endpoint in cases:
        answer = gateway.score(endpoint.name, {}, endpoint.key)
        assert answer.status == 503, endpoint.document
        assert answer.error["code"] == "NoHealthyInstance"
        assert "No healthy instance" in answer.error["message"]


def test_it_streams_server_sent_events_as_they_come(gateway, publish, fake):
    """With Accept: text/event-stream each event reaches the client when the instance writes it."""
    endpoint = publish({"blue": deployment_spec(fake("blue"))})
    headers = {
        "Authorization": f"Bearer {endpoint.key}",
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
    }
    body = b'{"stream": 5, "gap": 0.3}'
    stream = read_stream(gateway.url, f"/endpoints/{endpoint.name}/score", headers, body)
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["azureml-model-deployment"] == "blue"
    assert stream.headers["x-request-id"]
    assert stream.events == [f'{{"answer": "chunk {n}"}}' for n in range(5)]
    assert len(stream.reads) >= 5
    assert stream.reads[0][0] < 0.5  # all five take the instance 1.2 s: the first came long before the end
    assert stream.reads[-1][0] >= 1.2


def test_it_stops_the_stream_when_the_client_goes_away(gateway, gateway_redis, publish, fake):
    """A client that hangs up mid-stream ends the request on the instance too, and the in-flight count drops."""
    blue = fake("blue")
    endpoint = publish({"blue": deployment_spec(blue)})
    parts = urlsplit(gateway.url)
    body = b'{"stream": 50, "gap": 0.1}'
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        head = (
            f"POST /endpoints/{endpoint.name}/score HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {endpoint.key}\r\nAccept: text/event-stream\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        assert b"chunk 0" in sock.recv(65536) + sock.recv(65536)
        wait_for(lambda: routing.inflight(gateway_redis, [blue.id]) == 1, timeout=2, interval=0.02)
    hung_up = time.monotonic()
    wait_for(lambda: blue.inflight == 0, timeout=3, interval=0.02, message="the instance kept streaming")
    wait_for(lambda: routing.inflight(gateway_redis, [blue.id]) == 0, timeout=2, interval=0.02)
    assert time.monotonic() - hung_up < 2.0  # the whole stream would take 5 s


def test_it_serves_the_swagger_of_the_deployment_with_the_most_traffic(gateway, publish, fake):
    """From the document when published there, else fetched from an instance; it needs the same key as scoring."""
    endpoint = publish(
        {
            "blue": deployment_spec(fake("blue"), swagger={"openapi": "3.0.0", "info": {"title": "published"}}),
            "green": deployment_spec(fake("green")),
        },
        traffic={"blue": 30, "green": 70},
    )
    path = f"/endpoints/{endpoint.name}/swagger.json"
    answer = call(gateway.url, path, headers={"Authorization": f"Bearer {endpoint.key}"})
    assert answer.status == 200
    assert answer.json["info"]["title"] == "swagger of green"
    assert answer.headers["azureml-model-deployment"] == "green"

    pinned = {"Authorization": f"Bearer {endpoint.key}", "azureml-model-deployment": "blue"}
    assert call(gateway.url, path, headers=pinned).json["info"]["title"] == "published"

    answer = call(gateway.url, path)
    assert answer.status == 401


def test_it_writes_the_applied_version_and_the_in_flight_counts(gateway, gateway_redis, publish, fake):
    """The control plane reads which version the gateway serves and how many requests each instance has."""
    blue = fake("blue")
    endpoint = publish({"blue": deployment_spec(blue)})
    assert routing.applied_version(gateway_redis, endpoint.name) == endpoint.version

    thread, _ = in_background(gateway.score, endpoint.name, {"sleep": 1.0}, endpoint.key)
    wait_for(lambda: gateway_redis.hget(routing.INFLIGHT_KEY, blue.id) == b"1", timeout=2, interval=0.02)
    thread.join()
    wait_for(lambda: gateway_redis.hget(routing.INFLIGHT_KEY, blue.id) == b"0", timeout=2, interval=0.02)

    routing.withdraw(gateway_redis, endpoint.name)
    wait_for(lambda: gateway.score(endpoint.name, {}, endpoint.key).status == 404, timeout=2, interval=0.02)


def test_it_answers_503_until_redis_answers_and_keeps_serving_without_it(start_gateway, fake, tmp_path):
    """A gateway started before Redis waits for it; one that loses Redis serves from its copy of the routes."""
    import redis as redis_client

    from config.local_services import start_redis
    from serving.auth import key_digest

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    gateway = start_gateway(redis_url=url, wait_healthy=False)
    assert call(gateway.url, "/health").status == 503
    answer = gateway.score("anything", {}, new_key())
    assert answer.status == 503
    assert answer.error["code"] == "ServiceUnavailable"

    redis_process = start_redis(url, tmp_path / "redis")
    try:
        key = new_key()
        document = {
            "name": "survivor",
            "version": 1,
            "auth_type": "key",
            "key_digests": [key_digest(key)],
            "traffic": {"blue": 100},
            "mirror_traffic": {},
            "deployments": {"blue": deployment_spec(fake("blue"))},
        }
        routing.publish(redis_client.Redis.from_url(url), document, routing_key(GATEWAY_SECRET))
        wait_for(gateway.healthy, timeout=10, message="the gateway did not load routes once Redis answered")
        assert gateway.score("survivor", {}, key).status == 200
    finally:
        redis_process.terminate()
        redis_process.wait(timeout=10)
    time.sleep(0.5)
    assert gateway.score("survivor", {}, key).status == 200
    assert call(gateway.url, "/health").status == 200
    assert gateway.process.poll() is None
