"""The az ml way, end to end: a real Celery worker provisions, the real gateway scores, the CLI drives it."""

import pytest
from cli_support import write_yaml
from support import FIXTURE_FLOWS, wait_for

from endpoints.models import Instance
from serving import launcher

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_it_deploys_invokes_and_deletes_a_flow(cli, celery_worker, gateway_url, settings, tmp_path):
    settings.FLOWDEPLOY_GATEWAY_URL = gateway_url
    model = cli("model", "create", "--name", "web", "--path", FIXTURE_FLOWS / "web-classification-offline")
    assert model.code == 0, model.err
    assert model.json["id"] == "web:1"

    endpoint_yaml = {"$schema": "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json"}
    endpoint_yaml.update(name="ep-e2e", auth_mode="key", tags={"suite": "cli"})
    endpoint = cli("online-endpoint", "create", "-f", write_yaml(tmp_path, "endpoint.yml", endpoint_yaml))
    assert endpoint.code == 0, endpoint.err
    assert endpoint.json["scoring_uri"] == f"{gateway_url}/endpoints/ep-e2e/score"

    deployment_yaml = {
        "name": "blue",
        "endpoint_name": "ep-e2e",
        "model": "azureml:web:1",
        "instance_type": "Standard_DS1_v2",
        "instance_count": 1,
        "request_settings": {"request_timeout_ms": 30000},
        "environment": "azureml:promptflow-runtime:latest",
    }
    spec = write_yaml(tmp_path, "deployment.yml", deployment_yaml)
    deployment = cli("online-deployment", "create", "-f", spec, "--all-traffic", "--timeout", "600")
    assert deployment.code == 0, deployment.err
    assert deployment.json["provisioning_state"] == "Succeeded"
    assert deployment.json["traffic"] == 100
    assert "'environment' is not used locally" in deployment.err
    for phase in ("Validating", "BuildingEnvironment", "RegisteringModel", "CreatingDeployment", "Probing"):
        assert f" {phase}: " in deployment.err, deployment.err

    credentials = cli("online-endpoint", "get-credentials", "-n", "ep-e2e")
    assert credentials.code == 0 and set(credentials.json) == {"primaryKey", "secondaryKey"}

    request = tmp_path / "request.json"
    request.write_text('{"url": "https://arxiv.org/abs/2301.00001", "location": "Paris"}')

    def invoked():
        result = cli("online-endpoint", "invoke", "-n", "ep-e2e", "--request-file", request)
        return result if result.code == 0 else None

    answer = wait_for(invoked, timeout=20, message="the gateway never served ep-e2e")
    assert answer.json == {"category": "Academic", "evidence": "host arxiv.org matches arxiv.org", "location": "Paris"}
    pinned = cli("online-endpoint", "invoke", "-n", "ep-e2e", "--request-file", request, "--deployment-name", "blue")
    assert pinned.code == 0, pinned.err

    logs = cli("online-deployment", "get-logs", "-e", "ep-e2e", "-n", "blue", "--lines", "50")
    assert logs.code == 0, logs.err
    assert "Listening at: http://127.0.0.1:" in logs.out
    (instance,) = Instance.objects.filter(deployment__name="blue", state="Ready")

    deleted = cli("online-endpoint", "delete", "-n", "ep-e2e", "--yes", "--timeout", "120")
    assert deleted.code == 0, deleted.err
    gone = cli("online-endpoint", "show", "-n", "ep-e2e")
    assert gone.code == 1 and gone.err.strip() == "There is no online endpoint named 'ep-e2e'."
    assert not launcher.is_running(instance.pid, str(instance.id))
