"""Invoke: the studio scores through the gateway with the endpoint's own credential and relays the answer."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from api_client import error

from endpoints.models import Deployment, DeploymentState
from serving.auth import signing_key, token_endpoint

pytestmark = pytest.mark.django_db


class FakeGateway:
    """Records what it is sent and answers what the test says (the real gateway is tested in tests/serving)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self.answer: dict = {"category": "Academic"}
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                gateway.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                payload = json.dumps(gateway.answer).encode()
                self.send_response(gateway.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("x-request-id", "req-1")
                self.send_header("azureml-model-deployment", "blue")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                """Keep the test output quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def gateway(settings):
    fake = FakeGateway()
    settings.FLOWDEPLOY_GATEWAY_URL = fake.url
    yield fake
    fake.server.shutdown()


@pytest.fixture
def ep(endpoint, flow_version):
    created = endpoint("ep-one")
    Deployment.objects.create(
        endpoint=created, name="blue", flow_version=flow_version(), state=DeploymentState.SUCCEEDED
    )
    return created


def test_it_scores_through_the_gateway_with_the_endpoints_key(api, ep, gateway):
    response = api.post("/online-endpoints/ep-one/invoke", {"url": "https://arxiv.org/abs/1"})
    assert response.status_code == 200
    assert response.json() == {"category": "Academic"}
    assert response["x-request-id"] == "req-1" and response["azureml-model-deployment"] == "blue"
    (sent,) = gateway.requests
    assert sent["path"] == "/endpoints/ep-one/score"
    assert sent["body"] == {"url": "https://arxiv.org/abs/1"}
    assert sent["headers"]["Authorization"] == f"Bearer {ep.get_keys()['primary']}"
    assert "azureml-model-deployment" not in sent["headers"]


def test_it_pins_the_deployment_named_in_the_query(api, ep, gateway):
    api.post("/online-endpoints/ep-one/invoke?deployment_name=blue", {"url": "x"})
    assert gateway.requests[0]["headers"]["azureml-model-deployment"] == "blue"


def test_it_names_an_unknown_deployment(api, ep, gateway):
    response = api.post("/online-endpoints/ep-one/invoke?deployment_name=green", {"url": "x"})
    assert response.status_code == 400
    assert error(response)["field"] == "deployment_name"
    assert gateway.requests == []


def test_it_uses_a_fresh_token_for_a_token_endpoint(api, endpoint, gateway, settings):
    endpoint("ep-tok", auth_type="aml_token")
    api.post("/online-endpoints/ep-tok/invoke", {"url": "x"})
    token = gateway.requests[0]["headers"]["Authorization"].removeprefix("Bearer ")
    assert token_endpoint(token, signing_key(settings.FLOWDEPLOY_SECRET_KEY or settings.SECRET_KEY)) == "ep-tok"


def test_it_relays_the_gateways_error_as_it_is(api, ep, gateway):
    gateway.status = 424
    gateway.answer = {"error": {"code": "FlowFailed", "message": "node classify failed"}}
    response = api.post("/online-endpoints/ep-one/invoke", {"url": "x"})
    assert response.status_code == 424
    assert error(response) == {"code": "FlowFailed", "message": "node classify failed"}


def test_it_answers_502_when_the_gateway_is_down(api, ep, settings):
    settings.FLOWDEPLOY_GATEWAY_URL = "http://127.0.0.1:9"
    response = api.post("/online-endpoints/ep-one/invoke", {"url": "x"})
    assert response.status_code == 502
    assert error(response)["code"] == "GatewayUnavailable"
