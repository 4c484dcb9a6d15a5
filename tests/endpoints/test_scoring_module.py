"""endpoints/scoring.py: the studio's own calls to the gateway (the Test tab, the JSON API's invoke), with
the endpoint's credential, pinned to a deployment, and failures to reach the gateway as results."""

import json
import socket

import pytest

from endpoints import scoring, services
from endpoints.models import AuthType, Deployment, DeploymentState
from flows.models import Flow, FlowSource, FlowVersion
from serving.auth import signing_key, token_endpoint

ANSWER = {"category": "Movie", "evidence": "host www.youtube.com matches youtube.com", "location": "LA"}


@pytest.fixture
def deployment(db) -> Deployment:
    flow = Flow.objects.create(name="web")
    version = FlowVersion.objects.create(
        flow=flow, version=1, content_hash="web-hash", source=FlowSource.FOLDER, inputs={"url": {"type": "string"}}
    )
    endpoint = services.create_endpoint("ep-unit")
    return Deployment.objects.create(
        endpoint=endpoint, name="blue", flow_version=version, state=DeploymentState.SUCCEEDED, request_timeout_ms=5000
    )


def test_it_reads_the_gateways_error_message_and_code():
    error = {"error": {"code": "FlowExecutionFailed", "message": "node classify failed"}}
    result = scoring.ScoreResult(424, json.dumps(error).encode(), "application/json")
    assert not result.ok
    assert result.error_message == "node classify failed"
    assert result.error_code == "FlowExecutionFailed"
    plain = scoring.ScoreResult(500, b"Internal Server Error", "text/plain")
    assert plain.body == "Internal Server Error" and plain.error_message == "Internal Server Error"
    assert scoring.ScoreResult(200, b'{"a": 1}').body == {"a": 1}
    assert scoring.ScoreResult(200, b'{"a": 1}').error_message == ""


def test_it_pins_the_deployment_with_the_endpoints_key(deployment):
    headers = scoring.headers(deployment.endpoint, "blue", stream=True)
    assert headers["Authorization"] == f"Bearer {deployment.endpoint.get_keys()['primary']}"
    assert headers["azureml-model-deployment"] == "blue"
    assert headers["Accept"] == "text/event-stream, application/json"
    assert "azureml-model-deployment" not in scoring.headers(deployment.endpoint)
    stream = scoring.stream(deployment.endpoint, {"url": "x"}, "blue")
    assert deployment.endpoint.get_keys()["primary"] not in repr(stream)


def test_it_uses_a_fresh_token_for_a_token_endpoint(db, settings):
    endpoint = services.create_endpoint("ep-tok", auth_type=AuthType.TOKEN)
    token = scoring.credential(endpoint)
    assert token_endpoint(token, signing_key(settings.FLOWDEPLOY_SECRET_KEY or settings.SECRET_KEY)) == "ep-tok"


def test_it_waits_for_the_pinned_deployments_timeout_and_a_margin(deployment):
    Deployment.objects.create(
        endpoint=deployment.endpoint, name="green", flow_version=deployment.flow_version, request_timeout_ms=60_000
    )
    assert scoring.timeout_seconds(deployment.endpoint, "blue") == 5 + scoring.TIMEOUT_MARGIN_S
    assert scoring.timeout_seconds(deployment.endpoint) == 60 + scoring.TIMEOUT_MARGIN_S


def test_it_answers_502_with_a_message_when_the_gateway_is_unreachable(deployment, settings):
    settings.FLOWDEPLOY_GATEWAY_URL = "http://127.0.0.1:9"
    result = scoring.score(deployment.endpoint, {"url": "x"}, "blue")
    assert result.status == 502 and result.failure == "GatewayUnavailable"
    assert result.error_message.startswith("The scoring gateway at http://127.0.0.1:9 is not reachable")
    stream = scoring.stream(deployment.endpoint, {"url": "x"}, "blue")
    assert list(stream) == []
    assert stream.result.status == 502 and stream.result.failure == "GatewayUnavailable"


def test_it_answers_504_when_the_gateway_does_not_answer_in_time(deployment, settings, monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers
    settings.FLOWDEPLOY_GATEWAY_URL = f"http://127.0.0.1:{silent.getsockname()[1]}"
    monkeypatch.setattr(scoring, "TIMEOUT_MARGIN_S", 0.2)
    Deployment.objects.filter(pk=deployment.pk).update(request_timeout_ms=100)
    try:
        result = scoring.score(deployment.endpoint, {"url": "x"}, "blue")
    finally:
        silent.close()
    assert result.status == 504 and result.failure == "GatewayTimeout"
    assert result.error_message == "The scoring gateway did not answer within 0.3 s."
    assert 250 <= result.latency_ms < 5000


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_streams_a_flow_that_does_not_stream_as_one_answer_and_keeps_errors(deploy):
    blue = deploy("web-classification-offline", endpoint="ep-test", name="blue")
    whole = scoring.stream(blue.endpoint, {}, "blue")
    assert list(whole) == [ANSWER]
    assert whole.result.ok and whole.result.chunks == 1 and whole.result.deployment == "blue"
    assert whole.result.request_id and whole.result.latency_ms > 0

    failed = scoring.stream(blue.endpoint, {"url": "not a url"}, "blue")
    assert list(failed) == []
    assert failed.result.status == 424
    assert "not an absolute URL: 'not a url'" in failed.result.error_message

    scored = scoring.score(blue.endpoint, {"location": "Oslo"}, "blue")
    assert scored.status == 200 and scored.body == {**ANSWER, "location": "Oslo"} and scored.deployment == "blue"
