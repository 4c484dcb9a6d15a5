"""The fake ARM answers the real azure-ai-ml SDK: these tests drive MLClient against it and show how to use it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from azure.ai.ml.entities import (
    BuildContext,
    DataCollector,
    DeploymentCollection,
    Environment,
    IdentityConfiguration,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    Model,
    OnlineRequestSettings,
    ProbeSettings,
)
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.transport import HttpRequest
from fake_arm import ARM_HOST, FakeArm, FakeCredential, ml_client

pytest_plugins = ["fake_arm"]  # the fake_azure fixture
MODEL_ID = "azureml:flow-a:1"
ENVIRONMENT_ID = "azureml:flow-env:1"


@pytest.fixture
def client(fake_azure: FakeArm):
    return ml_client(fake_azure)


@pytest.fixture
def flow_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "flow-a"
    (folder / "nodes").mkdir(parents=True)
    (folder / "flow.dag.yaml").write_text("inputs: {}\noutputs: {}\nnodes: []\n")
    (folder / "nodes" / "answer.py").write_text("def answer():\n    return 42\n")
    return folder


def create_endpoint(client, name: str = "my-ep", **kwargs) -> ManagedOnlineEndpoint:
    endpoint = ManagedOnlineEndpoint(name=name, auth_mode="key", **kwargs)
    return client.online_endpoints.begin_create_or_update(endpoint).result()


def create_deployment(client, name: str = "blue", endpoint_name: str = "my-ep", **kwargs) -> ManagedOnlineDeployment:
    kwargs = {"instance_type": "Standard_DS3_v2", "instance_count": 1, **kwargs}
    deployment = ManagedOnlineDeployment(
        name=name, endpoint_name=endpoint_name, model=MODEL_ID, environment=ENVIRONMENT_ID, **kwargs
    )
    return client.online_deployments.begin_create_or_update(deployment).result()


def test_it_registers_a_model_from_a_local_folder(fake_azure, client, flow_folder):
    """The folder is uploaded to the workspace blob store and the model version points at it."""
    model = client.models.create_or_update(
        Model(
            name="flow-a",
            version="1",
            path=flow_folder,
            type="custom_model",
            properties={"azureml.promptflow.source_flow_id": "flow-42"},
        )
    )

    uploaded = fake_azure.uploaded()
    assert sorted(name.rsplit("/flow-a/", 1)[1] for name in uploaded) == ["flow.dag.yaml", "nodes/answer.py"]
    assert all(name.startswith("LocalUpload/") for name in uploaded)
    folder = uploaded[0].rsplit("/flow-a/", 1)[0] + "/flow-a"
    blob = f"{fake_azure.container}/{folder}/flow.dag.yaml"
    assert fake_azure.blobs[blob] == flow_folder.joinpath("flow.dag.yaml").read_bytes()
    assert fake_azure.blob_metadata[blob]["upload_status"] == "completed"  # the SDK's upload confirmation

    sent = fake_azure.body("PUT", "/models/flow-a/versions/1")["properties"]
    assert sent["modelType"] == "custom_model"
    assert sent["properties"] == {"azureml.promptflow.source_flow_id": "flow-42"}
    assert sent["modelUri"] == (
        f"azureml://subscriptions/{fake_azure.subscription_id}/resourcegroups/{fake_azure.resource_group}"
        f"/workspaces/{fake_azure.workspace}/datastores/workspaceblobstore/paths/{folder}"
    )
    assert model.version == "1"
    assert model.properties["azureml.promptflow.source_flow_id"] == "flow-42"
    stored = fake_azure.resource("/models/flow-a/versions/1")
    assert stored["id"] == f"{fake_azure.workspace_id}/models/flow-a/versions/1"
    assert stored["systemData"]["createdByType"] == "User"
    assert fake_azure.resource("/models/flow-a")["properties"]["latestVersion"] == "1"


def test_it_skips_uploading_a_folder_already_uploaded(fake_azure, client, flow_folder):
    """The SDK reads the confirmation metadata of the blobs it uploaded before and uploads nothing again."""
    client.models.create_or_update(Model(name="flow-a", version="1", path=flow_folder, type="custom_model"))
    puts = [r for r in fake_azure.storage_requests if r[0] == "PUT"]

    client.models.create_or_update(Model(name="flow-a", version="2", path=flow_folder, type="custom_model"))

    assert [r for r in fake_azure.storage_requests if r[0] == "PUT"] == puts
    first, second = fake_azure.bodies("PUT", "/models/flow-a/versions/1"), fake_azure.bodies("PUT", "/versions/2")
    assert first[0]["properties"]["modelUri"] == second[0]["properties"]["modelUri"]


def test_it_creates_an_environment_from_a_build_context(fake_azure, client, tmp_path):
    """The Docker build context is uploaded and the environment version carries its URL and inference config."""
    context = tmp_path / "image"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM python:3.11-slim\n")
    route = {"port": 8080}
    environment = Environment(
        name="flow-env",
        version="1",
        build=BuildContext(path=context),
        inference_config={
            "liveness_route": {"path": "/health", **route},
            "readiness_route": {"path": "/health", **route},
            "scoring_route": {"path": "/score", **route},
        },
    )

    created = client.environments.create_or_update(environment)

    sent = fake_azure.body("PUT", "/environments/flow-env/versions/1")["properties"]
    [dockerfile] = fake_azure.uploaded()
    assert dockerfile.startswith("LocalUpload/") and dockerfile.endswith("/image/Dockerfile")
    folder = dockerfile.removesuffix("Dockerfile")
    assert sent["build"] == {
        "contextUri": f"https://{fake_azure.blob_host}/{fake_azure.container}/{folder}",
    }
    assert sent["inferenceConfig"] == {
        "livenessRoute": {"path": "/health", "port": 8080},
        "readinessRoute": {"path": "/health", "port": 8080},
        "scoringRoute": {"path": "/score", "port": 8080},
    }
    assert created.build.path == sent["build"]["contextUri"]
    assert created.inference_config["scoringRoute"]["path"] == "/score"  # the SDK returns it in REST casing


def test_it_creates_an_endpoint_through_a_long_running_operation(fake_azure, client):
    """The endpoint is Creating while its operation runs, then Succeeded; the body is the SDK's REST payload."""
    fake_azure.polls_before_done = 3
    fake_azure.hold = True  # operations stay InProgress until released: no race with the poller's thread
    poller = client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(
            name="my-ep",
            auth_mode="key",
            identity=IdentityConfiguration(type="system_assigned"),
            tags={"flowdeploy": "yes"},
        )
    )

    assert client.online_endpoints.get("my-ep").provisioning_state == "Creating"
    fake_azure.hold = False
    endpoint = poller.result()

    assert endpoint.provisioning_state == "Succeeded"
    assert fake_azure.body("PUT", "/onlineEndpoints/my-ep") == {
        "location": fake_azure.location,
        "identity": {"type": "SystemAssigned"},
        "tags": {"flowdeploy": "yes"},
        "properties": {"authMode": "Key", "properties": {}, "traffic": {}, "mirrorTraffic": {}},
    }
    [operation] = fake_azure.operations.values()
    assert operation.answers[-4:] == ["InProgress", "InProgress", "InProgress", "Succeeded"]
    assert fake_azure.state_history("/onlineEndpoints/my-ep") == ["Creating", "Succeeded"]
    assert endpoint.scoring_uri == f"https://my-ep.{fake_azure.location}.inference.ml.azure.com/score"
    assert endpoint.identity.principal_id
    assert endpoint.identity.tenant_id
    stored = fake_azure.resource("/onlineEndpoints/my-ep")
    assert stored["id"] == f"{fake_azure.workspace_id}/onlineEndpoints/my-ep"
    assert stored["properties"]["swaggerUri"].endswith(".inference.ml.azure.com/swagger.json")
    assert not fake_azure.unhandled


def test_it_finishes_operations_for_callers_that_only_read_the_resource(fake_azure, client):
    """Reading the resource counts as a poll, so status polling alone sees the operation end; settle() ends all."""
    fake_azure.hold = True
    poller = client.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name="my-ep"))
    assert client.online_endpoints.get("my-ep").provisioning_state == "Creating"

    fake_azure.settle()

    assert client.online_endpoints.get("my-ep").provisioning_state == "Succeeded"
    assert poller.result().provisioning_state == "Succeeded"


def test_it_creates_a_deployment_with_the_sdk_payload(fake_azure, client):
    """A managed deployment's PUT carries the SDK's key names: ISO durations, sku capacity, data collection."""
    create_endpoint(client)

    deployment = create_deployment(
        client,
        instance_count=2,
        environment_variables={"PROMPTFLOW_RUN_MODE": "serving"},
        request_settings=OnlineRequestSettings(
            request_timeout_ms=90000, max_concurrent_requests_per_instance=4, max_queue_wait_ms=500
        ),
        liveness_probe=ProbeSettings(initial_delay=10, period=10, timeout=2, failure_threshold=30, success_threshold=1),
        readiness_probe=ProbeSettings(initial_delay=10, period=10, timeout=2, failure_threshold=3),
        data_collector=DataCollector(
            collections={
                "model_inputs": DeploymentCollection(enabled="true"),
                "model_outputs": DeploymentCollection(enabled="true"),
            }
        ),
        app_insights_enabled=True,
    )

    workspace = fake_azure.workspace_id
    assert fake_azure.body("PUT", "/onlineEndpoints/my-ep/deployments/blue") == {
        "location": fake_azure.location,
        "tags": {},
        "sku": {"name": "Default", "capacity": 2},
        "properties": {
            "endpointComputeType": "Managed",
            "model": f"{workspace}/models/flow-a/versions/1",
            "environmentId": f"{workspace}/environments/flow-env/versions/1",
            "instanceType": "Standard_DS3_v2",
            "environmentVariables": {"PROMPTFLOW_RUN_MODE": "serving"},
            "appInsightsEnabled": True,
            "properties": {},
            "requestSettings": {
                "requestTimeout": "PT1M30S",
                "maxConcurrentRequestsPerInstance": 4,
                "maxQueueWait": "PT0.5S",
            },
            "livenessProbe": {
                "initialDelay": "PT10S",
                "period": "PT10S",
                "timeout": "PT2S",
                "failureThreshold": 30,
                "successThreshold": 1,
            },
            "readinessProbe": {"initialDelay": "PT10S", "period": "PT10S", "timeout": "PT2S", "failureThreshold": 3},
            "dataCollector": {
                "collections": {
                    name: {
                        "dataCollectionMode": "enabled",
                        "dataId": f"{workspace}/data/my-ep-blue-{name}/versions/1",
                    }
                    for name in ("model_inputs", "model_outputs")
                }
            },
        },
    }
    # The SDK registers a data asset per collection before the deployment.
    data = fake_azure.body("PUT", "/data/my-ep-blue-model_inputs/versions/1")["properties"]
    assert data["dataUri"] == "azureml://datastores/workspaceblobstore/paths/modelDataCollector/my-ep/blue/model_inputs"
    assert deployment.provisioning_state == "Succeeded"
    assert deployment.instance_count == 2
    assert deployment.request_settings.request_timeout_ms == 90000
    stored = fake_azure.resource("/deployments/blue")
    assert stored["properties"]["scaleSettings"] == {"scaleType": "Default"}
    assert stored["sku"]["capacity"] == 2


def test_it_routes_traffic_with_an_endpoint_update(fake_azure, client):
    """Traffic goes in the endpoint's PUT; the endpoint goes Updating then Succeeded and keeps its identity."""
    endpoint = create_endpoint(client)
    create_deployment(client)
    principal = fake_azure.resource("/onlineEndpoints/my-ep")["identity"]["principalId"]

    endpoint.traffic = {"blue": 100}
    updated = client.online_endpoints.begin_create_or_update(endpoint).result()

    assert updated.traffic == {"blue": 100}
    sent = fake_azure.body("PUT", "/onlineEndpoints/my-ep")["properties"]
    assert sent["traffic"] == {"blue": 100}
    assert fake_azure.state_history("/onlineEndpoints/my-ep") == ["Creating", "Succeeded", "Updating", "Succeeded"]
    assert fake_azure.resource("/onlineEndpoints/my-ep")["identity"]["principalId"] == principal
    assert client.online_endpoints.get("my-ep").traffic == {"blue": 100}


def test_it_refuses_traffic_to_a_missing_deployment(client):
    """Like Azure, the endpoint PUT is refused when traffic names a deployment that does not exist."""
    endpoint = create_endpoint(client)
    endpoint.traffic = {"green": 100}

    with pytest.raises(HttpResponseError, match="green"):
        client.online_endpoints.begin_create_or_update(endpoint)


def test_it_lists_and_regenerates_keys(fake_azure, client):
    """Each endpoint has two keys; regenerating one changes only that one, to the value the SDK sends."""
    create_endpoint(client)
    before = client.online_endpoints.get_keys("my-ep")

    client.online_endpoints.begin_regenerate_keys("my-ep", key_type="secondary").result()

    after = client.online_endpoints.get_keys("my-ep")
    [sent] = fake_azure.bodies("POST", "/onlineEndpoints/my-ep/regenerateKeys")
    assert sent == {"keyType": "Secondary", "keyValue": before.secondary_key}  # the SDK sends the current key
    assert after.primary_key == before.primary_key
    assert after.secondary_key != before.secondary_key
    assert fake_azure.endpoint_keys["my-ep"]["secondaryKey"] == after.secondary_key


def test_it_returns_the_tail_of_a_containers_logs(fake_azure, client):
    """getLogs answers the last lines of the text set in fake.logs for the deployment and container."""
    create_endpoint(client)
    create_deployment(client)
    fake_azure.logs[("my-ep", "blue", "StorageInitializer")] = "one\ntwo\nthree"

    logs = client.online_deployments.get_logs("blue", "my-ep", 2, container_type="storage-initializer")

    assert logs == "two\nthree"
    assert fake_azure.body("POST", "/deployments/blue/getLogs") == {"containerType": "StorageInitializer", "tail": 2}
    assert client.online_deployments.get_logs("blue", "my-ep", 10) == ""


def test_it_fails_the_next_operation_on_a_resource_when_told(fake_azure, client):
    """An injected failure ends the operation Failed: the SDK raises the Azure error and GET shows Failed."""
    create_endpoint(client)
    fake_azure.fail_next("/deployments/blue", "ImageBuildFailure", "The image build failed: see the build log.")

    with pytest.raises(HttpResponseError) as failure:
        create_deployment(client)

    assert failure.value.error.code == "ImageBuildFailure"
    assert "The image build failed" in str(failure.value)
    assert client.online_deployments.get("blue", "my-ep").provisioning_state == "Failed"
    assert create_deployment(client).provisioning_state == "Succeeded"  # the failure was for one operation only


def test_it_fails_a_plain_write_at_once(fake_azure, client):
    """Outside long-running operations, an injected failure is the immediate answer."""
    fake_azure.fail_next(lambda method, path: path.endswith("/environments/flow-env/versions/1"), "UserError", "Nope")

    with pytest.raises(HttpResponseError, match="Nope"):
        client.environments.create_or_update(Environment(name="flow-env", version="1", image="python:3.11"))

    assert fake_azure.resource("/environments/flow-env/versions/1") is None


def test_it_throttles_and_the_sdk_retries(fake_azure, client):
    """The next requests answer 429 with Retry-After; azure-core's retry policy retries and the call succeeds."""
    fake_azure.throttle_next(2)

    endpoint = create_endpoint(client)

    assert endpoint.provisioning_state == "Succeeded"
    throttled = [r for r in fake_azure.requests if r.status == 429]
    assert len(throttled) == 2
    assert throttled[0].path == throttled[1].path  # the same request, retried
    assert len(fake_azure.bodies("PUT", "/onlineEndpoints/my-ep")) == 1
    assert fake_azure.sleeps  # the backoff went through the transport, which does not really sleep


def test_it_deletes_deployments_then_endpoints(fake_azure, client):
    """Deletions are long-running operations; afterwards the resources are gone and GET raises not found."""
    endpoint = create_endpoint(client)
    create_deployment(client)
    endpoint.traffic = {"blue": 100}
    client.online_endpoints.begin_create_or_update(endpoint).result()

    with pytest.raises(HttpResponseError, match="traffic"):
        client.online_deployments.begin_delete("blue", "my-ep")  # Azure refuses while it receives traffic

    endpoint.traffic = {"blue": 0}
    client.online_endpoints.begin_create_or_update(endpoint).result()
    client.online_deployments.begin_delete("blue", "my-ep").result()
    assert fake_azure.resource("/deployments/blue") is None
    assert fake_azure.resource("/onlineEndpoints/my-ep")["properties"]["traffic"] == {}

    client.online_endpoints.begin_delete("my-ep").result()

    assert fake_azure.state_history("/onlineEndpoints/my-ep")[-2:] == ["Deleting", "Deleted"]
    assert not [rid for rid in fake_azure.resources if "/onlineEndpoints/" in rid]
    with pytest.raises(ResourceNotFoundError) as missing:
        client.online_endpoints.get("my-ep")
    assert missing.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.online_endpoints.get_keys("my-ep")


def test_it_deletes_an_endpoint_with_its_deployments(fake_azure, client):
    """Deleting the endpoint removes its deployments too."""
    create_endpoint(client)
    create_deployment(client)

    client.online_endpoints.begin_delete("my-ep").result()

    assert fake_azure.resource("/deployments/blue") is None
    assert fake_azure.state_history("/deployments/blue")[-1] == "Deleted"


def test_it_rejects_calls_without_the_fake_token(fake_azure):
    """Without ``Authorization: Bearer fake`` ARM answers 401, which the SDK raises as ClientAuthenticationError."""
    stranger = ml_client(fake_azure, credential=FakeCredential("someone-else"))

    with pytest.raises(ClientAuthenticationError) as denied:
        stranger.online_endpoints.get("my-ep")

    assert denied.value.error.code == "InvalidAuthenticationToken"
    response = fake_azure.send(
        HttpRequest("GET", f"https://{ARM_HOST}{fake_azure.workspace_id}?api-version=2024-10-01")
    )
    assert response.status_code == 401
    assert response.internal_response.json()["error"]["code"] == "AuthenticationFailed"
    assert [r.status for r in fake_azure.requests] == [401, 401]


def test_it_records_routes_it_does_not_serve(fake_azure, client):
    """Unknown routes answer 404 and land in fake.unhandled, so a test sees what the fake lacks."""
    with pytest.raises(ResourceNotFoundError, match="no route"):
        client.compute.get("cpu-cluster")

    [unhandled] = fake_azure.unhandled
    assert unhandled.method == "GET"
    assert unhandled.path.endswith("/computes/cpu-cluster")


def test_it_serves_clients_in_several_threads(fake_azure):
    """One fake serves worker threads at once, as Celery's in-process workers will."""
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            client = ml_client(fake_azure)
            create_endpoint(client, name=f"ep-{index}")
            client.online_endpoints.get_keys(f"ep-{index}")
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    states = [fake_azure.resource(f"/onlineEndpoints/ep-{i}")["properties"]["provisioningState"] for i in range(6)]
    assert states == ["Succeeded"] * 6
