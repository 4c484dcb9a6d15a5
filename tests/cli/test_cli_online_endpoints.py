"""`flowdeploy online-endpoint`: Azure's endpoint YAML, credentials, traffic, invoke and delete."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cli_support import write_yaml

from endpoints.models import Deployment, DeploymentState, Endpoint
from flows.models import Flow, FlowSource, FlowVersion

pytestmark = pytest.mark.django_db(transaction=True)

ENDPOINT_YAML = {
    "$schema": "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json",
    "name": "ep-web",
    "auth_mode": "key",
    "description": "Classifies URLs",
    "tags": {"team": "search", "cost-center": 42},
    "identity": {"type": "system_assigned"},
}


def _deployments(endpoint: Endpoint, *names: str) -> None:
    flow = Flow.objects.create(name="web")
    version = FlowVersion.objects.create(flow=flow, version=1, content_hash="h", source=FlowSource.FOLDER)
    for name in names:
        Deployment.objects.create(endpoint=endpoint, name=name, flow_version=version, state=DeploymentState.SUCCEEDED)


def test_it_creates_an_endpoint_from_azures_yaml(cli, tmp_path):
    result = cli("online-endpoint", "create", "-f", write_yaml(tmp_path, "endpoint.yml", ENDPOINT_YAML))
    assert result.code == 0, result.err
    created = result.json
    assert created["name"] == "ep-web" and created["auth_mode"] == "key"
    assert created["tags"] == {"team": "search", "cost-center": "42"}
    assert created["scoring_uri"].endswith("/endpoints/ep-web/score")
    assert result.out.startswith('{\n  "name"')  # indented like az


def test_it_asks_for_an_azure_ml_endpoint_and_prints_why_not(cli, tmp_path):
    spec = write_yaml(tmp_path, "endpoint.yml", ENDPOINT_YAML)
    result = cli("online-endpoint", "create", "-f", spec, "--provider", "azureml")
    assert result.code == 1
    assert "is not connected to an Azure ML workspace" in result.err
    assert not Endpoint.objects.exists()


def test_it_reports_azure_only_fields_as_not_used(cli, tmp_path):
    spec = write_yaml(tmp_path, "endpoint.yml", {**ENDPOINT_YAML, "public_network_access": "disabled"})
    result = cli("online-endpoint", "create", "-f", spec)
    assert result.code == 0, result.err
    assert f"{spec}: 'public_network_access' is not used locally" in result.err


def test_it_names_an_unknown_field_before_calling_the_studio(cli, tmp_path):
    spec = write_yaml(tmp_path, "endpoint.yml", {**ENDPOINT_YAML, "auth_type": "key"})
    result = cli("online-endpoint", "create", "-f", spec)
    assert result.code == 1
    assert f"{spec}: unknown field 'auth_type' in the online endpoint YAML" in result.err
    assert not Endpoint.objects.exists()


def test_it_prints_the_studios_validation_message(cli, tmp_path):
    spec = write_yaml(tmp_path, "endpoint.yml", {**ENDPOINT_YAML, "auth_mode": "password"})
    result = cli("online-endpoint", "create", "-f", spec)
    assert result.code == 1
    assert result.err.strip() == "Authentication type must be one of key, aml_token."


def test_it_shows_lists_and_gets_credentials(cli, tmp_path):
    cli("online-endpoint", "create", "-f", write_yaml(tmp_path, "endpoint.yml", ENDPOINT_YAML))
    shown = cli("online-endpoint", "show", "-n", "ep-web")
    listing = cli("online-endpoint", "list")
    keys = Endpoint.objects.get(name="ep-web").get_keys()
    for result in (shown, listing):
        assert result.code == 0
        assert keys["primary"] not in result.out
    credentials = cli("online-endpoint", "get-credentials", "-n", "ep-web").json
    assert credentials == {"primaryKey": keys["primary"], "secondaryKey": keys["secondary"]}


def test_it_gets_a_token_for_a_token_endpoint(cli):
    cli("online-endpoint", "create", "--name", "ep-tok", "--auth-mode", "aml_token")
    credentials = cli("online-endpoint", "get-credentials", "-n", "ep-tok").json
    assert credentials["tokenType"] == "Bearer" and credentials["accessToken"]


def test_it_updates_traffic_like_az(cli):
    cli("online-endpoint", "create", "--name", "ep-web")
    _deployments(Endpoint.objects.get(name="ep-web"), "blue", "green", "red")
    result = cli(
        "online-endpoint", "update", "-n", "ep-web", "--traffic", "blue=90 green=10", "--mirror-traffic", "red=10"
    )
    assert result.code == 0, result.err
    assert result.json["traffic"] == {"blue": 90, "green": 10} and result.json["mirror_traffic"] == {"red": 10}
    refused = cli("online-endpoint", "update", "-n", "ep-web", "--traffic", "blue=90 green=20")
    assert refused.code == 1 and refused.err.strip() == "Traffic must add up to 100%, not 110%."


def test_it_names_a_traffic_option_it_cannot_read(cli):
    result = cli("online-endpoint", "update", "-n", "ep-web", "--traffic", "blue:90")
    assert result.code == 1
    assert result.err.strip() == "--traffic: expected name=percent pairs like 'blue=90 green=10', not 'blue:90'."


def test_it_updates_tags_from_the_yaml(cli, tmp_path):
    cli("online-endpoint", "create", "--name", "ep-web")
    spec = write_yaml(tmp_path, "endpoint.yml", {"name": "ep-web", "tags": {"stage": "prod"}})
    result = cli("online-endpoint", "update", "-n", "ep-web", "-f", spec)
    assert result.code == 0, result.err
    assert result.json["tags"] == {"stage": "prod"}


def test_it_starts_deleting_an_endpoint_only_with_confirmation(cli, deletions):
    cli("online-endpoint", "create", "--name", "ep-web")
    refused = cli("online-endpoint", "delete", "-n", "ep-web")
    assert refused.code == 1 and "add --yes" in refused.err
    result = cli("online-endpoint", "delete", "-n", "ep-web", "--yes", "--no-wait")
    assert result.code == 0, result.err
    assert cli("online-endpoint", "show", "-n", "ep-web").json["provisioning_state"] == "Deleting"
    assert deletions == [("delete_endpoint", Endpoint.objects.get(name="ep-web").pk)]


class Scorer:
    """A stand-in for the gateway, to see what invoke sends to the scoring URI."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        scorer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                scorer.seen.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                status, answer = (401, {"error": {"code": "Unauthorized", "message": "Invalid key."}})
                if self.headers["Authorization"] == scorer.expected:
                    status, answer = 200, {"category": "Academic"}
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                """Keep the test output quiet."""

        self.expected = ""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def scorer(settings):
    fake = Scorer()
    settings.FLOWDEPLOY_GATEWAY_URL = fake.url
    yield fake
    fake.server.shutdown()


def test_it_invokes_the_scoring_uri_with_the_endpoints_key(cli, scorer, tmp_path):
    cli("online-endpoint", "create", "--name", "ep-web")
    scorer.expected = f"Bearer {Endpoint.objects.get(name='ep-web').get_keys()['primary']}"
    request = tmp_path / "request.json"
    request.write_text('{"url": "https://arxiv.org/abs/1"}')
    result = cli("online-endpoint", "invoke", "-n", "ep-web", "--request-file", request, "--deployment-name", "blue")
    assert result.code == 0, result.err
    assert result.json == {"category": "Academic"}
    (seen,) = scorer.seen
    assert seen["path"] == "/endpoints/ep-web/score"
    assert seen["body"] == {"url": "https://arxiv.org/abs/1"}
    assert seen["headers"]["azureml-model-deployment"] == "blue"


def test_it_prints_the_gateways_error_on_a_failed_invoke(cli, scorer, tmp_path):
    cli("online-endpoint", "create", "--name", "ep-web")
    scorer.expected = "Bearer something-else"
    request = tmp_path / "request.json"
    request.write_text("{}")
    result = cli("online-endpoint", "invoke", "-n", "ep-web", "--request-file", request)
    assert result.code == 1
    assert result.err.strip() == "Invalid key."


def test_it_refuses_a_request_file_that_is_not_json(cli, tmp_path):
    request = tmp_path / "request.json"
    request.write_text("url=x")
    result = cli("online-endpoint", "invoke", "-n", "ep-web", "--request-file", request)
    assert result.code == 1
    assert result.err.startswith(f"--request-file: {request} is not valid JSON")
