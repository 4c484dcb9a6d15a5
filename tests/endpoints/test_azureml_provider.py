"""The Azure ML provider end to end through the studio's services and its provisioning state machine, with
azure-ai-ml's real MLClient talking to a fake Azure Resource Manager (tests/fake_arm.py): the REST payloads
for the wizard's choices, the polling through Creating, Azure's failures on the page, throttling, keys,
logs and deletion. No Azure is reachable here; docs/azure.md says what was verified only against the fake."""

import pytest
from fake_arm import RESOURCE_GROUP, SUBSCRIPTION_ID, WORKSPACE, FakeArm, connect_project
from roles import member

from django.core.exceptions import ValidationError

from endpoints import provisioning, services
from endpoints.models import Deployment, DeploymentState, Endpoint, Phase, Provider
from endpoints.providers import provider_for
from workspace.models import Notification, Project, ProjectRole

pytest_plugins = ["fake_arm"]  # the azure and fake_azure fixtures

pytestmark = pytest.mark.filterwarnings("ignore")  # azure-ai-ml's experimental-class and marshmallow warnings

DEPLOYMENT_PATH = "/onlineEndpoints/ep-azure/deployments/blue"


@pytest.fixture
def owner(django_user_model):
    return member(django_user_model.objects.create_user("azure-owner", password="pw-azure-1"), ProjectRole.OWNER)


def deploy(import_flow, owner, flow: str = "chat-stream-offline", endpoint_kwargs=None, **values) -> Deployment:
    """Create the endpoint and deployment as the wizard's service does, then run the provisioning job here."""
    version = import_flow(flow)
    endpoint = Endpoint.objects.filter(name="ep-azure").first() or services.create_endpoint(
        "ep-azure", user=owner, provider=Provider.AZUREML, **(endpoint_kwargs or {})
    )
    values = {"vm_size": "Standard_DS3_v2", **values}
    deployment = services.create_or_update_deployment(endpoint, "blue", version, user=owner, **values)
    provisioning.provision(deployment.pk)
    deployment.refresh_from_db()
    return deployment


def test_it_refuses_the_azure_provider_for_a_project_without_a_workspace(db, owner):
    with pytest.raises(ValidationError) as refused:
        services.create_endpoint("ep-azure", user=owner, provider=Provider.AZUREML)
    assert "not connected to an Azure ML workspace" in refused.value.message_dict["provider"][0]
    assert not Endpoint.objects.exists()


def test_it_deploys_a_chat_flow_to_a_managed_online_endpoint(azure, import_flow, owner):
    deployment = deploy(import_flow, owner)

    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    phases = list(deployment.events.values_list("phase", flat=True))
    for phase in (Phase.VALIDATING, Phase.BUILDING_ENVIRONMENT, Phase.REGISTERING_MODEL, Phase.PROBING):
        assert phase in phases
    # The model: the flow snapshot, with the properties Azure AI Studio's Test tab reads.
    model = azure.body("PUT", "/models/chat-stream-offline/versions/1")["properties"]
    assert model["modelType"] == "custom_model"
    assert model["properties"]["azureml.promptflow.source_flow_id"] == "chat-stream-offline"
    assert model["properties"]["azureml.promptflow.mode"] == "chat"
    assert model["properties"]["azureml.promptflow.chat_input"] == "question"
    assert any(name.endswith("flow.dag.yaml") for name in azure.uploaded())
    # The environment: our build context with promptflow's routes on 8080, not a retired runtime image.
    (environment,) = azure.bodies("PUT", "/environments/chat-stream-offline-env/versions/" + _env_version(azure))
    assert environment["properties"]["build"]["contextUri"].startswith("https://fakestorage.blob.core.windows.net/")
    assert environment["properties"]["inferenceConfig"]["scoringRoute"] == {"path": "/score", "port": 8080}
    assert any(name.endswith("/Dockerfile") for name in azure.uploaded())
    # The endpoint: key auth, system-assigned identity, enforce access to the default secret stores.
    created = azure.bodies("PUT", "/onlineEndpoints/ep-azure")[0]
    assert created["identity"] == {"type": "SystemAssigned"}
    assert created["properties"]["authMode"] == "Key"
    assert created["properties"]["properties"] == {"enforce_access_to_default_secret_stores": "enabled"}
    # The deployment, then 100% of the traffic to it.
    sent = azure.body("PUT", DEPLOYMENT_PATH)
    assert sent["sku"]["capacity"] == 1
    properties = sent["properties"]
    assert properties["instanceType"] == "Standard_DS3_v2"
    assert properties["model"].endswith("/models/chat-stream-offline/versions/1")
    assert properties["requestSettings"]["requestTimeout"] == "PT1M30S"
    assert properties["environmentVariables"]["PRT_CONFIG_OVERRIDE"] == (
        f"deployment.subscription_id={SUBSCRIPTION_ID},deployment.resource_group={RESOURCE_GROUP},"
        f"deployment.workspace_name={WORKSPACE},deployment.endpoint_name=ep-azure,deployment.deployment_name=blue"
    )
    assert "dataCollector" not in properties
    assert properties["appInsightsEnabled"] is False
    assert azure.body("PUT", "/onlineEndpoints/ep-azure")["properties"]["traffic"] == {"blue": 100}
    # The studio now points clients at Azure's scoring URI, and the job's notification says it succeeded.
    endpoint = Endpoint.objects.get(name="ep-azure")
    assert endpoint.scoring_uri == "https://ep-azure.eastus2.inference.ml.azure.com/score"
    assert endpoint.traffic == {"blue": 100}
    note = Notification.objects.get(pk=deployment.notification_id)
    assert (note.level, note.body) == ("success", "ep-azure/blue succeeded.")


def _env_version(azure: FakeArm) -> str:
    (path,) = {r.path for r in azure.calls("PUT") if "/environments/chat-stream-offline-env/versions/" in r.path}
    return path.rsplit("/", 1)[1]


def test_it_sends_the_wizards_choices_to_azure(azure, import_flow, owner):
    deployment = deploy(
        import_flow,
        owner,
        flow="web-classification-offline",
        endpoint_kwargs={
            "auth_type": "aml_token",
            "enforce_access_to_connection_secrets": False,
            "tags": {"team": "a"},
        },
        instance_count=3,
        vm_size="Standard_DS4_v2",
        request_timeout_ms=400_000,
        max_concurrent_requests_per_instance=4,
        data_collection=True,
        app_insights_enabled=True,
        selected_outputs=["category"],
        environment_variables={"LOG_LEVEL": "debug"},
    )

    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    created = azure.bodies("PUT", "/onlineEndpoints/ep-azure")[0]
    assert created["properties"]["authMode"] == "AMLToken"
    assert created["properties"]["properties"] == {"enforce_access_to_default_secret_stores": "disabled"}
    assert created["tags"] == {"team": "a"}
    sent = azure.body("PUT", DEPLOYMENT_PATH)
    assert sent["sku"]["capacity"] == 3
    properties = sent["properties"]
    assert properties["instanceType"] == "Standard_DS4_v2"
    assert properties["requestSettings"] == {
        "requestTimeout": "PT5M",  # Azure's ceiling: 400 s asked, 300 s sent
        "maxConcurrentRequestsPerInstance": 4,
    } | {k: v for k, v in properties["requestSettings"].items() if k == "maxQueueWait"}
    assert properties["appInsightsEnabled"] is True
    assert set(properties["dataCollector"]["collections"]) == {"model_inputs", "model_outputs"}
    variables = properties["environmentVariables"]
    assert variables["PROMPTFLOW_RESPONSE_INCLUDED_FIELDS"] == '["category"]'
    assert variables["LOG_LEVEL"] == "debug"


def test_it_shows_azures_failure_on_the_deployment_page(azure, import_flow, owner, client):
    message = "User container has crashed or terminated: liveness probe failed on /health."
    azure.fail_next(DEPLOYMENT_PATH, "ResourceNotReady", message)

    deployment = deploy(import_flow, owner)

    assert deployment.state == DeploymentState.FAILED
    assert deployment.failure_reason == f"Creating deployment blue failed: (ResourceNotReady) {message}"
    assert azure.state_history(DEPLOYMENT_PATH)[-1] == "Failed"
    client.force_login(owner)
    page = client.get(deployment.get_absolute_url()).content.decode()
    assert "(ResourceNotReady) User container has crashed or terminated" in page
    note = Notification.objects.get(pk=deployment.notification_id)
    assert note.level == "error" and message in note.body


def test_it_polls_the_deployment_through_creating_to_succeeded(azure, import_flow, owner):
    azure.polls_before_done = 3

    deployment = deploy(import_flow, owner)

    assert deployment.state == DeploymentState.SUCCEEDED
    assert azure.state_history(DEPLOYMENT_PATH)[:2] == ["Creating", "Succeeded"]
    assert azure.state_history("/onlineEndpoints/ep-azure")[0] == "Creating"


def test_it_retries_throttled_calls(azure, import_flow, owner):
    azure.throttle_next(3)

    deployment = deploy(import_flow, owner)

    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    assert sum(1 for r in azure.requests if r.status == 429) == 3


def test_it_reads_and_regenerates_keys_and_logs_through_azure(azure, import_flow, owner):
    deployment = deploy(import_flow, owner)
    endpoint = deployment.endpoint
    first = services.credentials(endpoint)
    assert first["primaryKey"] and first["primaryKey"] == azure.endpoint_keys["ep-azure"]["primaryKey"]

    services.regenerate_key(endpoint, "primary", user=owner)

    again = services.credentials(endpoint)
    assert again["primaryKey"] != first["primaryKey"]
    assert again["secondaryKey"] == first["secondaryKey"]
    azure.logs[("ep-azure", "blue", "StorageInitializer")] = "line 1\nline 2\nline 3"
    assert provider_for(endpoint).logs(deployment, 2, "storage-initializer") == "line 2\nline 3"


def test_it_deletes_the_deployment_then_the_endpoint_on_azure(azure, import_flow, owner):
    deployment = deploy(import_flow, owner)
    endpoint = deployment.endpoint
    services.set_traffic(endpoint, {"blue": 0})  # Azure refuses to delete a deployment that has traffic
    services.delete_deployment(Deployment.objects.get(pk=deployment.pk), user=owner)

    assert provisioning.delete_deployment(deployment.pk)

    assert not Deployment.objects.filter(pk=deployment.pk).exists()
    assert azure.state_history(DEPLOYMENT_PATH)[-1] == "Deleted"
    services.delete_endpoint(Endpoint.objects.get(pk=endpoint.pk), user=owner)
    assert provisioning.delete_endpoint(endpoint.pk)
    assert not Endpoint.objects.filter(pk=endpoint.pk).exists()
    assert azure.state_history("/onlineEndpoints/ep-azure")[-1] == "Deleted"


def test_the_logs_tab_and_the_api_read_azures_containers(azure, import_flow, owner, client):
    from api.models import PersonalAccessToken

    deployment = deploy(import_flow, owner)
    azure.logs[("ep-azure", "blue", "InferenceServer")] = "booting\nserving on 8080"
    azure.logs[("ep-azure", "blue", "StorageInitializer")] = "model mounted"
    client.force_login(owner)

    page = client.get(f"{deployment.get_absolute_url()}logs/").content.decode()
    assert "Inference server (Azure ML)" in page and "serving on 8080" in page
    page = client.get(f"{deployment.get_absolute_url()}logs/?instance=storage-initializer").content.decode()
    assert "model mounted" in page
    token = PersonalAccessToken.issue(owner)[1]
    answer = client.get(
        "/api/v1/online-endpoints/ep-azure/deployments/blue/logs?container=storage-initializer&lines=5",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200
    assert answer.json()["content"] == "model mounted"


def test_azures_refusal_answers_502_with_its_message(azure, import_flow, owner, client):
    from api.models import PersonalAccessToken

    deploy(import_flow, owner)
    azure.fail_next(lambda method, path: method == "POST", "AuthorizationFailed", "No regenerateKeys for you.")
    token = PersonalAccessToken.issue(owner)[1]

    answer = client.post(
        "/api/v1/online-endpoints/ep-azure/regenerate-keys",
        data={"key_type": "primary"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )

    assert answer.status_code == 502
    assert answer.json()["error"]["message"] == (
        "Regenerating the primary key of endpoint ep-azure failed: (AuthorizationFailed) No regenerateKeys for you."
    )


def test_the_api_creates_an_azure_endpoint_only_in_a_connected_project(db, owner, client, monkeypatch):
    from api.models import PersonalAccessToken

    headers = {"Authorization": f"Bearer {PersonalAccessToken.issue(owner)[1]}"}
    body = {"name": "ep-azure", "provider": "azureml"}

    refused = client.post("/api/v1/online-endpoints", data=body, content_type="application/json", headers=headers)
    assert refused.status_code == 400
    assert refused.json()["error"]["field"] == "provider"
    connect_project()
    created = client.post("/api/v1/online-endpoints", data=body, content_type="application/json", headers=headers)
    assert created.status_code == 201, created.content
    assert created.json()["provider"] == "azureml"
    assert Endpoint.objects.get(name="ep-azure").provider == Provider.AZUREML


def test_the_details_and_monitoring_tabs_say_the_deployment_runs_on_azure(azure, import_flow, owner, client):
    deployment = deploy(import_flow, owner, data_collection=True)
    client.force_login(owner)

    details = client.get(deployment.get_absolute_url()).content.decode()

    assert f"Azure Machine Learning, workspace {WORKSPACE}" in details
    assert "https://ep-azure.eastus2.inference.ml.azure.com/score" in details
    assert "Azure collects model inputs and outputs to the workspace's blob store" in details
    monitoring = client.get(f"{deployment.get_absolute_url()}monitoring/").content.decode()
    assert "Its request metrics, CPU and memory are in Azure Monitor" in monitoring


def test_the_watch_fails_a_deployment_deleted_outside_the_studio(azure, import_flow, owner, settings):
    from fake_arm import ml_client

    from endpoints.providers.azureml import watch

    deployment = deploy(import_flow, owner)
    assert watch.watch() == 0  # Azure agrees: nothing changes
    client = ml_client(azure)
    remote = client.online_endpoints.get("ep-azure")
    remote.traffic = {}
    client.online_endpoints.begin_create_or_update(remote).result()
    client.online_deployments.begin_delete(name="blue", endpoint_name="ep-azure").result()

    assert watch.watch() == 1

    deployment.refresh_from_db()
    assert deployment.state == DeploymentState.FAILED
    assert "it was deleted outside the studio" in deployment.failure_reason
    assert deployment.events.last().level == "error"
    assert settings.CELERY_BEAT_SCHEDULE["watch-azure-deployments"]["task"] == "endpoints.tasks.watch_azure"


def test_a_flows_connections_are_the_workspaces_on_azure(azure, import_flow, owner):
    with pytest.raises(ValidationError) as refused:
        deploy(import_flow, owner, flow="chat-basic")
    (problem,) = refused.value.message_dict["connection_overrides"]
    assert (
        f"Connection 'open_ai_connection' (used by node 'chat') does not exist in Azure ML workspace {WORKSPACE}"
        in (problem)
    )
    assert "az ml connection create" in problem
    azure.connections = {"open_ai_connection": "CustomKeys"}  # a custom connection: the llm node refuses it
    with pytest.raises(ValidationError) as refused:
        deploy(import_flow, owner, flow="chat-basic")
    assert "is a CustomConnection" in refused.value.message_dict["connection_overrides"][0]

    azure.connections = {"open_ai_connection": "OpenAI"}  # no such connection in the studio: Azure's is enough
    deployment = deploy(import_flow, owner, flow="chat-basic")

    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason


def test_a_user_assigned_identity_runs_on_azure_by_its_azure_ids(azure, import_flow, owner):
    from workspace.models import ManagedIdentity

    identity = ManagedIdentity.objects.create(project=Project.default(), name="flow-runner")
    user_assigned = {"identity_type": "user_assigned", "user_assigned_identity": "flow-runner"}

    failed = deploy(import_flow, owner, endpoint_kwargs=user_assigned)

    assert failed.state == DeploymentState.FAILED
    assert failed.failure_reason.startswith("User-assigned identity flow-runner has no Azure resource ID or client ID")
    resource_id = (
        f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/identities-rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/flow-runner"
    )
    client_id = "11111111-2222-4333-8444-555555555555"
    ManagedIdentity.objects.filter(pk=identity.pk).update(azure_resource_id=resource_id, azure_client_id=client_id)

    deployment = deploy(import_flow, owner)

    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    created = azure.bodies("PUT", "/onlineEndpoints/ep-azure")[0]
    assert created["identity"]["type"] == "UserAssigned"
    assert list(created["identity"]["userAssignedIdentities"]) == [resource_id]
    assert "enforce_access_to_default_secret_stores" not in created["properties"].get("properties", {})
    variables = azure.body("PUT", DEPLOYMENT_PATH)["properties"]["environmentVariables"]
    assert variables["AZURE_CLIENT_ID"] == client_id


def test_a_traffic_change_is_applied_on_azure_or_its_refusal_shown(azure, import_flow, owner):
    from endpoints import tasks

    deployment = deploy(import_flow, owner)
    green = services.create_or_update_deployment(
        deployment.endpoint, "green", deployment.flow_version, user=owner, vm_size="Standard_DS3_v2"
    )
    provisioning.provision(green.pk)
    endpoint = Endpoint.objects.get(name="ep-azure")
    services.set_traffic(endpoint, {"blue": 70, "green": 30})

    tasks.apply_routing(endpoint.pk)  # what the commit dispatches

    assert azure.body("PUT", "/onlineEndpoints/ep-azure")["properties"]["traffic"] == {"blue": 70, "green": 30}
    assert green.events.last().message == "Azure ML applied the traffic: {'blue': 70, 'green': 30}."
    refusal = "Traffic cannot go to a deployment being updated."
    azure.fail_next("/onlineEndpoints/ep-azure", "BadArgument", refusal)
    services.set_traffic(endpoint, {"blue": 50, "green": 50})
    tasks.apply_routing(endpoint.pk)
    event = deployment.events.last()
    assert event.level == "error"
    assert event.message == f"Setting the traffic of endpoint ep-azure failed: (BadArgument) {refusal}"


def test_scale_and_delete_confirmations_say_what_happens_on_azure(azure, import_flow, owner, client):
    deployment = deploy(import_flow, owner)
    client.force_login(owner)

    scale = client.post(f"{deployment.get_absolute_url()}scale/", {"instance_count": "3"}).content.decode()
    delete = client.get(f"{deployment.get_absolute_url()}delete/").content.decode()

    assert "Azure ML updates deployment blue to 3 instance(s) of Standard_DS3_v2, rolling" in scale
    assert "this machine" not in scale and "processes" not in scale
    assert "The managed online deployment on Azure ML with its 1 instance(s)" in delete


def test_a_connection_override_names_a_workspace_connection(azure, import_flow, owner):
    azure.connections = {"prod-openai": "OpenAI"}  # neither name exists in the studio

    deployment = deploy(
        import_flow, owner, flow="chat-basic", connection_overrides={"open_ai_connection": "prod-openai"}
    )

    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    variables = azure.body("PUT", DEPLOYMENT_PATH)["properties"]["environmentVariables"]
    assert variables["open_ai_connection"] == "prod-openai"  # promptflow's override of a connection by name


def test_a_custom_environment_is_used_as_is(azure, import_flow, owner):
    from azure.ai.ml.entities import Environment
    from fake_arm import ml_client

    from endpoints.providers.azureml.artifacts import INFERENCE_CONFIG

    failed = deploy(import_flow, owner, environment="azureml:team-serving:3")
    assert failed.state == DeploymentState.FAILED
    assert failed.failure_reason == (
        f"Environment azureml:team-serving:3 is not in Azure ML workspace {WORKSPACE}. Register it there first "
        "(az ml environment create), or leave Environment empty."
    )
    ml_client(azure).environments.create_or_update(
        Environment(
            name="team-serving", version="3", image="myacr.azurecr.io/serving:3", inference_config=INFERENCE_CONFIG
        )
    )

    deployment = deploy(import_flow, owner, environment="azureml:team-serving:3")

    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    environment_id = azure.body("PUT", DEPLOYMENT_PATH)["properties"]["environmentId"]
    assert environment_id.endswith("/environments/team-serving/versions/3")
    assert not [r for r in azure.calls("PUT") if "/environments/chat-stream-offline-env/" in r.path]


def test_a_custom_environment_is_refused_on_this_machine_and_when_malformed(db, import_flow, owner):
    version = import_flow("chat-stream-offline")
    endpoint = services.create_endpoint("ep-local", user=owner)
    with pytest.raises(ValidationError) as refused:
        services.create_or_update_deployment(endpoint, "blue", version, user=owner, environment="azureml:env:1")
    assert (
        "a custom environment is for Azure Machine Learning endpoints" in refused.value.message_dict["environment"][0]
    )
    with pytest.raises(ValidationError) as refused:
        services.create_or_update_deployment(endpoint, "blue", version, user=owner, environment="python:3.11")
    assert refused.value.message_dict["environment"][0].startswith("Environment: azureml:<name>:<version>")
    assert not Deployment.objects.exists()


def test_the_pages_name_azure_before_and_after_azure_made_the_endpoint(azure, import_flow, owner, client):
    client.force_login(owner)
    endpoint = services.create_endpoint("ep-azure", user=owner, provider=Provider.AZUREML)

    before = client.get(f"/endpoints/{endpoint.name}/").content.decode()
    assert "known once Azure ML has created the endpoint" in before

    deploy(import_flow, owner)
    listing = client.get("/deployments/").content.decode()
    assert "Azure Machine Learning" in listing and "(on Azure ML)" in listing
    after = client.get("/endpoints/ep-azure/").content.decode()
    assert "https://ep-azure.eastus2.inference.ml.azure.com/score" in after


def test_a_deployment_with_a_workspace_connection_override_scales(azure, import_flow, owner):
    azure.connections = {"prod-openai": "OpenAI"}
    overrides = {"open_ai_connection": "prod-openai"}
    deployment = deploy(import_flow, owner, flow="chat-basic", connection_overrides=overrides)

    scaled = services.scale_deployment(deployment, 2, user=owner)
    provisioning.provision(scaled.pk)

    scaled.refresh_from_db()
    assert scaled.state == DeploymentState.SUCCEEDED, scaled.failure_reason
    assert azure.body("PUT", DEPLOYMENT_PATH)["sku"]["capacity"] == 2
