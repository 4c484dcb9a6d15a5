"""A deployment's Azure Machine Learning artifacts (endpoints/providers/azureml/artifacts.py): the REST payloads
azure-ai-ml would send for each choice of the wizard, and the serving image's build context."""

import json

import pytest
from azure.ai.ml._restclient.arm_ml_service._utils.model_base import SdkJSONEncoder
from export_support import CHAT, OPENAI, WEB, deployment, flow_version

from endpoints.models import AuthType, Endpoint, IdentityType
from endpoints.providers.azureml import artifacts
from endpoints.providers.azureml.artifacts import WorkspaceInfo
from runtime.environments import BASE_REQUIREMENTS
from workspace.models import ManagedIdentity, Project

pytestmark = pytest.mark.django_db

LOCATION = "westeurope"
WORKSPACE = WorkspaceInfo("0000-sub", "rg-flows", "ws-flows")
PRT = (
    "deployment.subscription_id=0000-sub,deployment.resource_group=rg-flows,deployment.workspace_name=ws-flows,"
    "deployment.endpoint_name=ep-web,deployment.deployment_name=blue"
)
IDENTITY_ID = (
    "/subscriptions/0000-sub/resourceGroups/rg-flows/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-web"
)


def sent(rest_object) -> dict:
    """The body azure-ai-ml sends: its operations serialize the REST object so, read-only fields left out."""
    return json.loads(json.dumps(rest_object, cls=SdkJSONEncoder, exclude_readonly=True))


def endpoint_payload(endpoint: Endpoint, workspace: WorkspaceInfo | None = WORKSPACE) -> dict:
    entity = artifacts.endpoint_for(endpoint, artifacts.identity_resource_id(endpoint, workspace))
    return sent(entity._to_rest_online_endpoint(location=LOCATION))  # as online_endpoints.begin_create_or_update


def deployment_payload(row, workspace: WorkspaceInfo | None = WORKSPACE, **kwargs) -> dict:
    model = artifacts.model_for(row.flow_version)
    entity = artifacts.deployment_for(row, model, "azureml:web-env:abc", workspace, **kwargs)
    return sent(entity._to_rest_object(location=LOCATION))  # as online_deployments.begin_create_or_update


@pytest.fixture
def web(isolated_flow_dirs):
    return flow_version("web", WEB)


@pytest.fixture
def blue(web):
    return deployment(web)


# --- endpoint ----------------------------------------------------------------------------------------------


def test_it_sends_a_key_endpoint_with_a_system_assigned_identity_that_enforces_secret_access(blue):
    assert endpoint_payload(blue.endpoint) == {
        "location": LOCATION,
        "properties": {
            "description": "Endpoint ep-web, from Flowdeploy.",
            "authMode": "Key",
            "properties": {"enforce_access_to_default_secret_stores": "enabled"},
            "traffic": {},
            "mirrorTraffic": {},
        },
        "identity": {"type": "SystemAssigned"},
        "tags": {},
    }


def test_it_sends_a_token_endpoint_that_does_not_enforce_secret_access(blue):
    Endpoint.objects.filter(pk=blue.endpoint.pk).update(
        auth_type=AuthType.TOKEN, enforce_access_to_connection_secrets=False, tags={"team": "search"}
    )
    payload = endpoint_payload(Endpoint.objects.get(pk=blue.endpoint.pk))
    assert payload["properties"]["authMode"] == "AMLToken"
    assert payload["properties"]["properties"] == {"enforce_access_to_default_secret_stores": "disabled"}
    assert payload["tags"] == {"team": "search"}


def test_it_sends_a_user_assigned_identity_by_its_resource_id_without_the_enforce_property(blue):
    identity = ManagedIdentity.objects.create(project=Project.default(), name="id-web")
    Endpoint.objects.filter(pk=blue.endpoint.pk).update(
        identity_type=IdentityType.USER, user_assigned_identity=identity
    )
    payload = endpoint_payload(Endpoint.objects.get(pk=blue.endpoint.pk))
    assert payload["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY_ID: {}}}
    assert payload["properties"]["properties"] == {}


def test_it_names_the_identity_with_placeholders_without_a_workspace(blue):
    identity = ManagedIdentity.objects.create(project=Project.default(), name="id-web")
    blue.endpoint.identity_type, blue.endpoint.user_assigned_identity = IdentityType.USER, identity
    assert artifacts.identity_resource_id(blue.endpoint) == (
        "/subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/Microsoft.ManagedIdentity"
        "/userAssignedIdentities/id-web"
    )


def test_it_refuses_a_user_assigned_endpoint_without_the_identity_resource_id(blue):
    blue.endpoint.identity_type = IdentityType.USER
    with pytest.raises(ValueError, match="user-assigned"):
        artifacts.endpoint_for(blue.endpoint, None)


def test_it_sends_the_traffic_and_mirror_traffic_without_zeroes(blue):
    blue.endpoint.traffic = {"blue": 90, "green": 10, "red": 0}
    blue.endpoint.mirror_traffic = {"green": 0, "red": 20}
    entity = artifacts.endpoint_for(blue.endpoint, None)
    entity.traffic, entity.mirror_traffic = artifacts.traffic_for(blue.endpoint)
    payload = sent(entity._to_rest_online_endpoint(location=LOCATION))
    assert payload["properties"]["traffic"] == {"blue": 90, "green": 10}
    assert payload["properties"]["mirrorTraffic"] == {"red": 20}


# --- deployment --------------------------------------------------------------------------------------------


def test_it_sends_the_deployment_with_its_settings(blue):
    blue.vm_size, blue.instance_count, blue.tags = "Standard_DS4_v2", 3, {"owner": "ops"}
    blue.environment_variables = {"LOG_LEVEL": "debug"}
    assert deployment_payload(blue) == {
        "location": LOCATION,
        "properties": {
            "environmentId": "azureml:web-env:abc",
            "model": "azureml:web:1",
            "properties": {},
            "environmentVariables": {
                "LOG_LEVEL": "debug",
                "PROMPTFLOW_WORKER_NUM": "4",
                "PROMPTFLOW_WORKER_THREADS": "8",
                "PRT_CONFIG_OVERRIDE": PRT,
            },
            "appInsightsEnabled": False,
            "requestSettings": {"maxConcurrentRequestsPerInstance": 8, "requestTimeout": "PT1M30S"},
            "livenessProbe": {"failureThreshold": 30, "timeout": "PT10S", "period": "PT10S", "initialDelay": "PT10S"},
            "instanceType": "Standard_DS4_v2",
            "readinessProbe": {"failureThreshold": 30, "timeout": "PT10S", "period": "PT10S", "initialDelay": "PT10S"},
            "endpointComputeType": "Managed",
        },
        "tags": {"owner": "ops"},
        "sku": {"name": "Default", "capacity": 3},
    }


def test_it_caps_the_request_timeout_at_azures_five_minutes(blue):
    blue.request_timeout_ms, blue.max_concurrent_requests_per_instance = 600_000, 2
    settings = deployment_payload(blue)["properties"]["requestSettings"]
    assert settings == {"maxConcurrentRequestsPerInstance": 2, "requestTimeout": "PT5M"}


def test_it_returns_only_the_selected_outputs_when_they_are_a_subset(blue):
    blue.selected_outputs = ["category"]
    variables = deployment_payload(blue)["properties"]["environmentVariables"]
    assert variables["PROMPTFLOW_RESPONSE_INCLUDED_FIELDS"] == '["category"]'


@pytest.mark.parametrize("selected", [[], ["evidence", "category"]])
def test_it_returns_every_output_when_all_are_selected(blue, selected):
    blue.selected_outputs = selected
    assert "PROMPTFLOW_RESPONSE_INCLUDED_FIELDS" not in deployment_payload(blue)["properties"]["environmentVariables"]


def test_it_collects_inputs_and_outputs_when_data_collection_is_on(blue):
    blue.data_collection = True
    assert deployment_payload(blue)["properties"]["dataCollector"] == {
        "collections": {
            "model_inputs": {"dataCollectionMode": "enabled"},
            "model_outputs": {"dataCollectionMode": "enabled"},
        }
    }
    blue.data_collection = False
    assert "dataCollector" not in deployment_payload(blue)["properties"]


def test_it_turns_application_insights_on_and_off(blue):
    blue.app_insights_enabled = True
    assert deployment_payload(blue)["properties"]["appInsightsEnabled"] is True
    blue.app_insights_enabled = False
    assert deployment_payload(blue)["properties"]["appInsightsEnabled"] is False


def test_it_leaves_placeholders_for_the_workspace_when_there_is_none(blue):
    variables = deployment_payload(blue, workspace=None)["properties"]["environmentVariables"]
    assert variables["PRT_CONFIG_OVERRIDE"] == (
        "deployment.subscription_id=<subscription-id>,deployment.resource_group=<resource-group>,"
        "deployment.workspace_name=<workspace-name>,deployment.endpoint_name=ep-web,deployment.deployment_name=blue"
    )


def test_it_gives_the_user_assigned_identitys_client_id(blue):
    identity = ManagedIdentity.objects.create(project=Project.default(), name="id-web")
    blue.endpoint.identity_type, blue.endpoint.user_assigned_identity = IdentityType.USER, identity
    variables = deployment_payload(blue, identity_client_id="11111111-2222")["properties"]["environmentVariables"]
    assert variables["AZURE_CLIENT_ID"] == "11111111-2222"
    unknown = deployment_payload(blue)["properties"]["environmentVariables"]
    assert unknown["AZURE_CLIENT_ID"] == "<client-id of id-web>"
    blue.endpoint.identity_type = IdentityType.SYSTEM
    assert "AZURE_CLIENT_ID" not in deployment_payload(blue)["properties"]["environmentVariables"]


def test_it_overrides_connections_by_name_as_promptflow_reads_them(blue):
    blue.connection_overrides = {OPENAI: "gpt-eu", "not used by the flow": "x"}
    variables = deployment_payload(blue)["properties"]["environmentVariables"]
    assert variables[OPENAI] == "gpt-eu"
    assert "not_used_by_the_flow" not in variables


def test_it_leaves_out_variables_the_rule_refuses(blue):
    blue.environment_variables = {"PF_HOME": "/tmp", "LOG_LEVEL": "info"}
    variables = deployment_payload(blue)["properties"]["environmentVariables"]
    assert "PF_HOME" not in variables and variables["LOG_LEVEL"] == "info"


# --- model -------------------------------------------------------------------------------------------------


def test_it_registers_the_flow_snapshot_as_a_custom_model(web):
    model = artifacts.model_for(web)
    assert (model.name, model.version, model.path) == ("web", "1", str(web.snapshot_dir))
    properties = sent(model._to_rest_object())["properties"]
    assert properties["modelType"] == "custom_model"
    assert properties["properties"] == {"azureml.promptflow.source_flow_id": "web"}
    assert properties["description"] == f"Prompt flow web, version 1 (content {web.content_hash})."


def test_it_marks_a_chat_flows_model_with_its_chat_input_and_output(isolated_flow_dirs):
    chat = flow_version("chat", CHAT, version=4)
    properties = sent(artifacts.model_for(chat)._to_rest_object())["properties"]["properties"]
    assert properties == {
        "azureml.promptflow.source_flow_id": "chat",
        "azureml.promptflow.mode": "chat",
        "azureml.promptflow.chat_input": "question",
        "azureml.promptflow.chat_output": "answer",
    }


@pytest.mark.parametrize(("name", "expected"), [("web", "web"), ("my flow!", "my-flow-"), ("_x.", "x"), ("", "flow")])
def test_it_makes_asset_names_azure_accepts(name, expected):
    assert artifacts.asset_name(name) == expected


# --- environment -------------------------------------------------------------------------------------------


def test_it_writes_a_build_context_serving_promptflows_app_on_the_pinned_runtime(web, tmp_path):
    context = artifacts.write_build_context(web, tmp_path / "context")
    assert sorted(p.name for p in context.iterdir()) == [
        "Dockerfile",
        "requirements.txt",
        "runtime-requirements.txt",
        "start.sh",
    ]
    dockerfile = (context / "Dockerfile").read_text()
    assert dockerfile.splitlines()[2] == "FROM python:3.11-slim"
    assert 'RUN pip install -r runtime-requirements.txt "promptflow-core[azureml-serving]==1.18.5"' in dockerfile
    assert "RUN pip install -r requirements.txt" in dockerfile
    assert (context / "runtime-requirements.txt").read_bytes() == BASE_REQUIREMENTS.read_bytes()
    # promptflow's own lines are the runtime's, as in a local layer
    assert (context / "requirements.txt").read_text() == "bs4\n"
    start = (context / "start.sh").read_text()
    assert "--bind 0.0.0.0:8080" in start and "AZUREML_MODEL_DIR" in start and "PROMPTFLOW_PROJECT_PATH" in start
    assert "\"promptflow.core._serving.app:create_app(extension_type='azureml')\"" in start


def test_it_installs_nothing_more_when_the_flow_needs_only_the_runtime(isolated_flow_dirs, tmp_path):
    chat = flow_version("chat", CHAT)
    context = artifacts.write_build_context(chat, tmp_path / "context")
    assert not (context / "requirements.txt").exists()
    assert "requirements.txt ./" not in (context / "Dockerfile").read_text().replace("runtime-requirements", "")


def test_it_versions_the_environment_by_the_contexts_content(blue, tmp_path):
    first = artifacts.environment_for(blue, artifacts.write_build_context(blue, tmp_path / "one"))
    again = artifacts.environment_for(blue, artifacts.write_build_context(blue.flow_version, tmp_path / "two"))
    assert (first.name, first.version) == (again.name, again.version) == ("web-env", first.version)
    assert len(first.version) == 16
    assert first.build.path == str(tmp_path / "one")
    assert first.inference_config == {
        "liveness_route": {"path": "/health", "port": 8080},
        "readiness_route": {"path": "/health", "port": 8080},
        "scoring_route": {"path": "/score", "port": 8080},
    }
    blue.flow_version.requirements += "\nrequests>=2\n"
    changed = artifacts.environment_for(blue, artifacts.write_build_context(blue, tmp_path / "three"))
    assert changed.version != first.version
