"""`flowdeploy online-deployment`: Azure's deployment YAML, waiting for provisioning, logs, delete.

Provisioning is simulated here (the `provisioning` fixture); tests/cli/test_end_to_end.py uses the real worker.
"""

import pytest
from cli_support import write_yaml

from endpoints import services
from endpoints.models import Deployment, Endpoint, Instance
from flows.models import Flow, FlowSource, FlowVersion

pytestmark = pytest.mark.django_db(transaction=True)

DEPLOYMENT_YAML = {
    "$schema": "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json",
    "name": "blue",
    "endpoint_name": "ep-web",
    "model": "azureml:web:1",
    "instance_type": "Standard_DS1_v2",
    "instance_count": 1,
    "environment_variables": {"LOG_LEVEL": "debug"},
    "request_settings": {"request_timeout_ms": 5000, "max_concurrent_requests_per_instance": 2},
    "data_collector": {"collections": {"model_inputs": {"enabled": "true"}, "model_outputs": {"enabled": "false"}}},
    "app_insights_enabled": False,
    "tags": {"owner": "ops"},
    "selected_outputs": ["category"],
}


@pytest.fixture
def ep(cli):
    endpoint = services.create_endpoint("ep-web")
    flow = Flow.objects.create(name="web")
    FlowVersion.objects.create(
        flow=flow,
        version=1,
        content_hash="h",
        source=FlowSource.FOLDER,
        outputs={"category": {"type": "string"}, "evidence": {"type": "string"}},
    )
    return endpoint


def test_it_creates_a_deployment_and_waits_for_it(cli, ep, provisioning, tmp_path):
    result = cli("online-deployment", "create", "-f", write_yaml(tmp_path, "deployment.yml", DEPLOYMENT_YAML))
    assert result.code == 0, result.err
    shown = result.json
    assert shown["provisioning_state"] == "Succeeded" and shown["flow"] == "web:1"
    assert shown["vm_size"] == "Standard_DS1_v2" and shown["request_timeout_ms"] == 5000
    assert shown["max_concurrent_requests_per_instance"] == 2
    assert shown["data_collection"] is True and shown["selected_outputs"] == ["category"]
    assert shown["environment_variables"] == {"LOG_LEVEL": "debug"} and shown["tags"] == {"owner": "ops"}
    lines = result.err.splitlines()
    phases = [line.split(" ", 1)[1].split(":")[0] for line in lines]
    assert phases == ["Queued", "Validating", "CreatingDeployment", "Succeeded"], result.err


def test_it_exits_non_zero_with_the_failure_reason(cli, ep, provisioning, tmp_path):
    provisioning.outcome, provisioning.reason = "Failed", "pip could not install the requirements: no such package"
    result = cli("online-deployment", "create", "-f", write_yaml(tmp_path, "deployment.yml", DEPLOYMENT_YAML))
    assert result.code == 1
    assert result.out == ""
    assert result.err.splitlines()[-1] == (
        "Deployment ep-web/blue failed: pip could not install the requirements: no such package"
    )


def test_it_sends_all_traffic_to_the_new_deployment(cli, ep, provisioning, tmp_path):
    yaml_file = write_yaml(tmp_path, "deployment.yml", DEPLOYMENT_YAML)
    cli("online-deployment", "create", "-f", yaml_file)
    Endpoint.objects.filter(pk=ep.pk).update(traffic={"blue": 100})
    result = cli("online-deployment", "create", "-f", yaml_file, "--name", "green", "--all-traffic")
    assert result.code == 0, result.err
    assert result.json["traffic"] == 100
    assert Endpoint.objects.get(pk=ep.pk).traffic == {"green": 100}


def test_it_returns_at_once_with_no_wait(cli, ep, provisioning, tmp_path):
    result = cli("online-deployment", "create", "-f", write_yaml(tmp_path, "d.yml", DEPLOYMENT_YAML), "--no-wait")
    assert result.code == 0, result.err
    assert result.json["provisioning_state"] == "Creating"


def test_it_names_an_unknown_field(cli, tmp_path):
    spec = write_yaml(tmp_path, "deployment.yml", {**DEPLOYMENT_YAML, "instance_size": "big"})
    result = cli("online-deployment", "create", "-f", spec)
    assert result.code == 1
    assert f"{spec}: unknown field 'instance_size' in the online deployment YAML" in result.err


def test_it_names_an_unknown_field_inside_request_settings(cli, tmp_path):
    data = {**DEPLOYMENT_YAML, "request_settings": {"request_timeout": 5}}
    result = cli("online-deployment", "create", "-f", write_yaml(tmp_path, "deployment.yml", data))
    assert result.code == 1
    assert "unknown field 'request_settings.request_timeout'" in result.err


def test_it_reports_azure_only_fields_as_not_used_locally(cli, ep, provisioning, tmp_path):
    data = {
        **DEPLOYMENT_YAML,
        "environment": "azureml:promptflow-runtime:1",
        "code_configuration": {"code": "./src", "scoring_script": "score.py"},
        "scale_settings": {"type": "default"},
        "liveness_probe": {"initial_delay": 10},
        "readiness_probe": {"period": 10},
        "egress_public_network_access": "disabled",
        "request_settings": {**DEPLOYMENT_YAML["request_settings"], "max_queue_wait_ms": 500},
    }
    result = cli("online-deployment", "create", "-f", write_yaml(tmp_path, "deployment.yml", data))
    assert result.code == 0, result.err
    for name in ("environment", "code_configuration", "scale_settings", "liveness_probe", "readiness_probe"):
        assert f"'{name}' is not used locally" in result.err
    assert "'egress_public_network_access' is not used locally" in result.err
    assert "request_settings.'max_queue_wait_ms' is not used locally" in result.err


def test_it_prints_the_studios_message_naming_the_problem(cli, ep, tmp_path):
    data = {**DEPLOYMENT_YAML, "instance_type": "Standard_NC24"}
    result = cli("online-deployment", "create", "-f", write_yaml(tmp_path, "deployment.yml", data))
    assert result.code == 1
    assert result.err.strip().startswith("Virtual machine must be one of Standard_DS1_v2")
    data = {**DEPLOYMENT_YAML, "model": "azureml:nope:3"}
    result = cli("online-deployment", "create", "-f", write_yaml(tmp_path, "deployment.yml", data))
    assert result.err.strip() == "flow: there is no version 3 of flow 'nope'."


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("web", "names no version"),
        ("azureml://registries/azureml/models/gpt/versions/1", "registry references"),
        ({"name": "web"}, "model.path"),
    ],
)
def test_it_names_a_model_reference_it_cannot_use(cli, tmp_path, model, message):
    result = cli(
        "online-deployment", "create", "-f", write_yaml(tmp_path, "d.yml", {**DEPLOYMENT_YAML, "model": model})
    )
    assert result.code == 1
    assert message in result.err


def test_it_uploads_an_inline_model_folder(
    cli, ep, provisioning, tmp_path, copy_flow, flow_runtime, isolated_flow_dirs
):
    copy_flow("web-classification-offline")
    data = {**DEPLOYMENT_YAML, "model": {"path": "./web-classification-offline", "name": "web"}}
    result = cli("online-deployment", "create", "-f", write_yaml(tmp_path, "deployment.yml", data))
    assert result.code == 0, result.err
    assert "Registered flow web:2." in result.err
    assert result.json["flow"] == "web:2"


def test_it_rolls_out_an_update_from_the_yaml(cli, ep, provisioning, tmp_path):
    cli("online-deployment", "create", "-f", write_yaml(tmp_path, "deployment.yml", DEPLOYMENT_YAML))
    update = {"name": "blue", "endpoint_name": "ep-web", "instance_count": 2}
    result = cli("online-deployment", "update", "-f", write_yaml(tmp_path, "update.yml", update))
    assert result.code == 0, result.err
    assert result.json["instance_count"] == 2 and result.json["generation"] == 2
    assert result.json["flow"] == "web:1" and result.json["vm_size"] == "Standard_DS1_v2"
    assert "Deployment updated" in result.err


def test_it_shows_lists_gets_logs_and_deletes(cli, ep, provisioning, deletions, tmp_path, settings):
    settings.FLOWDEPLOY_DEPLOYMENTS_DIR = tmp_path / "deployments"
    cli("online-deployment", "create", "-f", write_yaml(tmp_path, "deployment.yml", DEPLOYMENT_YAML))
    deployment = Deployment.objects.get(name="blue")
    instance = Instance.objects.create(deployment=deployment, generation=1, ordinal=0, state="Ready")
    instance.log_path.parent.mkdir(parents=True)
    instance.log_path.write_text("booting\n[INFO] Listening at: http://127.0.0.1:5000\n")
    shown = cli("online-deployment", "show", "-e", "ep-web", "-n", "blue").json
    assert shown["instances"][0]["state"] == "Ready"
    assert [d["name"] for d in cli("online-deployment", "list", "-e", "ep-web").json] == ["blue"]
    logs = cli("online-deployment", "get-logs", "-e", "ep-web", "-n", "blue", "--lines", "1")
    assert logs.out == "[INFO] Listening at: http://127.0.0.1:5000\n"
    events = cli("online-deployment", "get-logs", "-e", "ep-web", "-n", "blue", "--container", "events")
    assert "Succeeded: Deployment succeeded (simulated)." in events.out
    missing = cli("online-deployment", "get-logs", "-e", "ep-web", "-n", "blue", "--instance", "4")
    assert missing.code == 1 and missing.err.strip() == "instance: deployment blue has no instance 4 (instances: 0)."
    assert cli("online-deployment", "delete", "-e", "ep-web", "-n", "blue", "--yes", "--no-wait").code == 0
    assert Deployment.objects.get(name="blue").state == "Deleting"
    assert deletions == [("delete_deployment", deployment.pk)]


def test_it_fails_cleanly_for_an_unknown_deployment(cli, ep):
    result = cli("online-deployment", "show", "-e", "ep-web", "-n", "nope")
    assert result.code == 1
    assert result.err.strip() == "Online endpoint ep-web has no deployment named 'nope'."
