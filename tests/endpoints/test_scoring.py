"""End to end: deployments created through the service, provisioned by the real worker, scored through
the real gateway, as a client would."""

import json
import os
import signal
import socket
import threading
import time
from collections import Counter

import httpx
import pytest
from support import wait_for

from endpoints import provisioning, services
from endpoints.models import AuthType, Deployment, DeploymentState, Endpoint, InstanceState
from serving import launcher

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _settled(deployment: Deployment, timeout: float = 120) -> Deployment:
    def done():
        deployment.refresh_from_db()
        return deployment.state in (DeploymentState.SUCCEEDED, DeploymentState.FAILED)

    wait_for(done, timeout=timeout, message=f"deployment stayed {deployment.state}/{deployment.phase}")
    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    return deployment


def _deploy(import_flow, flow, endpoint="ep-score", name="blue", auth_type=AuthType.KEY, **settings):
    version = import_flow(flow)
    target = Endpoint.objects.filter(name=endpoint).first() or services.create_endpoint(endpoint, auth_type=auth_type)
    settings.setdefault("vm_size", "Standard_DS1_v2")
    return _settled(services.create_or_update_deployment(target, name, version, **settings))


def _key(deployment: Deployment) -> str:
    return services.credentials(deployment.endpoint)["primaryKey"]


def _score(gateway_url, endpoint, key, body, **headers):
    headers = {"Authorization": f"Bearer {key}", **headers}
    return httpx.post(f"{gateway_url}/endpoints/{endpoint}/score", json=body, headers=headers, timeout=30)


def _wait_applied(gateway_url, endpoint, key, body):
    """The gateway hears of a publish within milliseconds; wait for it rather than race it."""
    wait_for(lambda: _score(gateway_url, endpoint, key, body).status_code == 200, timeout=10)


@pytest.mark.parametrize(
    ("flow", "body", "expected"),
    [
        (
            "web-classification-offline",
            {"url": "https://www.youtube.com/watch?v=o5ZQyXaAv1g", "location": "LA"},
            {"category": "Movie", "evidence": "host www.youtube.com matches youtube.com", "location": "LA"},
        ),
        ("chat-stream-offline", {"question": "hello", "chat_history": []}, {"answer": "Turn 1: you said 'hello'."}),
        ("with-requirements", {"title": "Real-Time Inference"}, {"slug": "real-time-inference"}),
    ],
)
def test_it_answers_each_sample_flow_through_the_gateway(celery_worker, gateway_url, import_flow, flow, body, expected):
    deployment = _deploy(import_flow, flow)
    key = _key(deployment)
    _wait_applied(gateway_url, "ep-score", key, body)
    response = _score(gateway_url, "ep-score", key, body)
    assert response.status_code == 200
    assert response.json() == expected
    assert response.headers["azureml-model-deployment"] == "blue"
    assert response.headers["x-request-id"]


def test_it_answers_the_llm_flow_with_its_connection(celery_worker, gateway_url, import_flow, open_ai_connection):
    deployment = _deploy(import_flow, "chat-basic")
    key = _key(deployment)
    body = {"question": "Is it live?", "chat_history": [{"inputs": {"question": "hi"}, "outputs": {"answer": "hello"}}]}
    _wait_applied(gateway_url, "ep-score", key, body)
    assert _score(gateway_url, "ep-score", key, body).json() == {
        "answer": "Local model, turn 2: you asked 'Is it live?'."
    }


def test_it_answers_errors_with_the_contracts_statuses(celery_worker, gateway_url, import_flow):
    deployment = _deploy(import_flow, "web-classification-offline")
    key = _key(deployment)
    body = {"url": "https://arxiv.org/abs/1", "location": "LA"}
    _wait_applied(gateway_url, "ep-score", key, body)

    wrong = _score(gateway_url, "ep-score", "not-the-key", body)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "Unauthorized"

    unknown = _score(gateway_url, "no-such-endpoint", key, body)
    assert unknown.status_code == 404

    bad = httpx.post(
        f"{gateway_url}/endpoints/ep-score/score",
        content=b"{not json",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]["message"]

    failed = _score(gateway_url, "ep-score", key, {"url": "not a url", "location": "LA"})
    assert failed.status_code == 424
    assert "Execution failure in 'fetch_url_parts'" in failed.json()["error"]["message"]
    assert "not an absolute URL: 'not a url'" in failed.json()["error"]["message"]


def test_it_streams_a_streaming_flow_chunk_by_chunk(celery_worker, gateway_url, import_flow):
    deployment = _deploy(import_flow, "chat-stream-offline")
    key = _key(deployment)
    _wait_applied(gateway_url, "ep-score", key, {"question": "x"})
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    body = {"question": "stream this please", "chat_history": []}
    with httpx.stream("POST", f"{gateway_url}/endpoints/ep-score/score", json=body, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data:")]
    words = [json.loads(event[5:])["answer"] for event in events]
    assert len(words) >= 5
    assert "".join(words) == "Turn 1: you said 'stream this please'."


def test_it_splits_traffic_ninety_ten(celery_worker, gateway_url, import_flow):
    blue = _deploy(import_flow, "chat-stream-offline", name="blue")
    _deploy(import_flow, "chat-stream-offline", name="green")
    services.set_traffic(blue.endpoint, {"blue": 90, "green": 10})
    key = _key(blue)
    wait_for(
        lambda: (
            _score(gateway_url, "ep-score", key, {"question": "x"}, **{"azureml-model-deployment": "green"}).status_code
            == 200
        )
    )
    seen = Counter()
    with httpx.Client(timeout=30) as client:
        for _ in range(400):
            response = client.post(
                f"{gateway_url}/endpoints/ep-score/score",
                json={"question": "x"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert response.status_code == 200
            seen[response.headers["azureml-model-deployment"]] += 1
    assert 0.84 <= seen["blue"] / 400 <= 0.96, seen
    pinned = _score(gateway_url, "ep-score", key, {"question": "x"}, **{"azureml-model-deployment": "green"})
    assert pinned.headers["azureml-model-deployment"] == "green"


def test_it_stops_the_old_key_after_regeneration(celery_worker, gateway_url, import_flow):
    deployment = _deploy(import_flow, "chat-stream-offline")
    endpoint = deployment.endpoint
    old = services.credentials(endpoint)["primaryKey"]
    _wait_applied(gateway_url, "ep-score", old, {"question": "x"})
    secondary = services.credentials(endpoint)["secondaryKey"]
    services.regenerate_key(endpoint, "primary")
    time.sleep(1.0)
    assert _score(gateway_url, "ep-score", old, {"question": "x"}).status_code == 401
    assert _score(gateway_url, "ep-score", secondary, {"question": "x"}).status_code == 200
    new = services.credentials(endpoint)["primaryKey"]
    assert _score(gateway_url, "ep-score", new, {"question": "x"}).status_code == 200


def test_it_accepts_tokens_on_a_token_endpoint(celery_worker, gateway_url, import_flow):
    deployment = _deploy(import_flow, "chat-stream-offline", endpoint="ep-token", auth_type=AuthType.TOKEN)
    token = services.issue_token(deployment.endpoint)
    assert token["tokenType"] == "Bearer"
    assert token["expiryTimeUtc"] - token["refreshAfterTimeUtc"] == 1800
    _wait_applied(gateway_url, "ep-token", token["accessToken"], {"question": "x"})
    assert _score(gateway_url, "ep-token", "forged.token", {"question": "x"}).status_code == 401


def test_it_keeps_serving_while_a_killed_instance_restarts(celery_worker, gateway_url, import_flow):
    deployment = _deploy(import_flow, "chat-stream-offline", instance_count=2)
    key = _key(deployment)
    _wait_applied(gateway_url, "ep-score", key, {"question": "x"})
    victim, _survivor = deployment.instances.filter(state=InstanceState.READY).order_by("ordinal")
    os.killpg(victim.pid, signal.SIGKILL)
    statuses = Counter(_score(gateway_url, "ep-score", key, {"question": "x"}).status_code for _ in range(30))
    assert statuses == {200: 30}, statuses

    def restarted():
        provisioning.reconcile()
        victim.refresh_from_db()
        return victim.state == InstanceState.READY

    wait_for(restarted, timeout=60, interval=0.5)
    assert launcher.is_running(victim.pid, str(victim.id))


def test_it_updates_under_a_steady_stream_without_losing_a_request(celery_worker, gateway_url, import_flow):
    deployment = _deploy(import_flow, "chat-stream-offline", request_timeout_ms=5000)
    key = _key(deployment)
    _wait_applied(gateway_url, "ep-score", key, {"question": "x"})
    statuses: Counter = Counter()
    stop = threading.Event()

    def stream_requests():
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                response = client.post(
                    f"{gateway_url}/endpoints/ep-score/score",
                    json={"question": "steady"},
                    headers={"Authorization": f"Bearer {key}"},
                )
                statuses[response.status_code] += 1

    sender = threading.Thread(target=stream_requests)
    sender.start()
    try:
        updated = _settled(
            services.create_or_update_deployment(deployment.endpoint, "blue", deployment.flow_version, instance_count=2)
        )
        time.sleep(1)
    finally:
        stop.set()
        sender.join()
    assert updated.generation == 2
    assert set(statuses) == {200}, statuses
    assert statuses[200] > 20


def test_it_deletes_the_endpoint_stopping_processes_and_freeing_ports(celery_worker, gateway_url, import_flow):
    deployment = _deploy(import_flow, "chat-stream-offline", instance_count=2)
    key = _key(deployment)
    _wait_applied(gateway_url, "ep-score", key, {"question": "x"})
    instances = list(deployment.instances.filter(state=InstanceState.READY))
    services.delete_endpoint(deployment.endpoint)
    wait_for(lambda: not Endpoint.objects.filter(name="ep-score").exists(), timeout=60)
    assert _score(gateway_url, "ep-score", key, {"question": "x"}).status_code == 404
    for instance in instances:
        assert not launcher.is_running(instance.pid, str(instance.id))
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not a listener
            sock.bind(("127.0.0.1", instance.port))  # nothing listens there any more
