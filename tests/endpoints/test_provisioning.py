"""Provisioning through a real Celery worker: instance processes serving the flow with promptflow."""

import json
import os
import signal

import httpx
import pytest
from support import wait_for

from django.core.exceptions import ValidationError

from endpoints import provisioning, publishing, services
from endpoints.models import Deployment, DeploymentState, Endpoint, Instance, InstanceState
from serving import launcher, routing

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _settled(deployment: Deployment, timeout: float = 120) -> Deployment:
    def done():
        deployment.refresh_from_db()
        return deployment.state in (DeploymentState.SUCCEEDED, DeploymentState.FAILED)

    wait_for(done, timeout=timeout, message=f"deployment stayed {deployment.state}/{deployment.phase}")
    return deployment


def _deploy(import_flow, flow: str, endpoint_name: str = "ep-one", name: str = "blue", **settings):
    version = import_flow(flow)
    endpoint = Endpoint.objects.filter(name=endpoint_name).first() or services.create_endpoint(endpoint_name)
    settings.setdefault("vm_size", "Standard_DS1_v2")
    deployment = services.create_or_update_deployment(endpoint, name, version, **settings)
    return _settled(deployment)


def _ready(deployment: Deployment) -> list[Instance]:
    return list(deployment.instances.filter(state=InstanceState.READY, generation=deployment.live_generation))


def test_it_deploys_a_flow_and_the_instance_answers(celery_worker, import_flow):
    deployment = _deploy(import_flow, "web-classification-offline")
    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    phases = list(deployment.events.values_list("phase", flat=True))
    for phase in (
        "Validating",
        "BuildingEnvironment",
        "RegisteringModel",
        "CreatingDeployment",
        "Probing",
        "Succeeded",
    ):
        assert phase in phases
    (instance,) = _ready(deployment)
    answer = httpx.post(f"{instance.url}/score", json={"url": "https://arxiv.org/abs/1", "location": "LA"}).json()
    assert answer == {"category": "Academic", "evidence": "host arxiv.org matches arxiv.org", "location": "LA"}
    assert deployment.endpoint.traffic == {"blue": 100}


def test_it_publishes_routing_for_the_gateway(celery_worker, import_flow):
    deployment = _deploy(import_flow, "chat-stream-offline")
    endpoint = deployment.endpoint
    document = json.loads(publishing.client().get(routing.route_key(endpoint.name)))
    (instance,) = _ready(deployment)
    assert document["traffic"] == {"blue": 100}
    assert document["deployments"]["blue"]["instances"] == [{"id": str(instance.id), "url": instance.url}]
    assert len(document["key_digests"]) == 2
    assert services.credentials(endpoint)["primaryKey"] not in json.dumps(document)


def test_it_serves_only_the_selected_outputs(celery_worker, import_flow):
    deployment = _deploy(import_flow, "web-classification-offline", selected_outputs=["category"])
    (instance,) = _ready(deployment)
    answer = httpx.post(f"{instance.url}/score", json={"url": "https://youtu.be/x", "location": "LA"}).json()
    assert answer == {"category": "Movie"}


def test_it_gives_instances_their_connections_through_the_studio(celery_worker, import_flow, open_ai_connection):
    deployment = _deploy(import_flow, "chat-basic")
    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    (instance,) = _ready(deployment)
    answer = httpx.post(f"{instance.url}/score", json={"question": "Deployed?", "chat_history": []}, timeout=30)
    assert answer.json() == {"answer": "Local model, turn 1: you asked 'Deployed?'."}
    env_file = (instance.folder / "flow").rglob("*.env")
    assert not list(env_file)


def test_it_refuses_a_deployment_whose_connection_is_missing(import_flow):
    version = import_flow("chat-basic")
    endpoint = services.create_endpoint("ep-missing")
    with pytest.raises(ValidationError) as caught:
        services.create_or_update_deployment(endpoint, "blue", version)
    assert "Connection 'open_ai_connection' (used by node 'chat') does not exist" in str(caught.value)
    assert not Deployment.objects.exists()


def test_it_reuses_the_environment_of_a_flow_with_requirements(celery_worker, import_flow):
    first = _deploy(import_flow, "with-requirements", endpoint_name="slug-one")
    assert first.state == DeploymentState.SUCCEEDED, first.failure_reason
    second = _deploy(import_flow, "with-requirements", endpoint_name="slug-two")
    assert second.state == DeploymentState.SUCCEEDED, second.failure_reason
    assert first.flow_version.environment == second.flow_version.environment
    (instance,) = _ready(second)
    assert httpx.post(f"{instance.url}/score", json={"title": "Hello World"}).json() == {"slug": "hello-world"}


def test_it_fails_with_pips_message_when_requirements_cannot_install(celery_worker, import_flow):
    version = import_flow("with-requirements")
    type(version).objects.filter(pk=version.pk).update(requirements="flowdeploy-no-such-package-for-tests==0.0.1\n")
    version.refresh_from_db()
    endpoint = services.create_endpoint("ep-badreq")
    deployment = _settled(services.create_or_update_deployment(endpoint, "blue", version, vm_size="Standard_DS1_v2"))
    assert deployment.state == DeploymentState.FAILED
    assert "pip could not install the requirements" in deployment.failure_reason
    assert "flowdeploy-no-such-package-for-tests" in deployment.failure_reason


def test_it_refuses_what_does_not_fit_on_this_machine(settings, import_flow):
    settings.FLOWDEPLOY_LOCAL_CAPACITY_MIB = 2048
    version = import_flow("chat-stream-offline")
    endpoint = services.create_endpoint("ep-big")
    with pytest.raises(ValidationError) as caught:
        services.create_or_update_deployment(endpoint, "blue", version, vm_size="Standard_DS3_v2", instance_count=3)
    message = caught.value.message_dict["instance_count"][0]
    assert "3 x Standard_DS3_v2 needs 2.7 GiB (including 20% reserved for upgrades)" in message
    assert "this machine has 2.0 GiB free of 2.0 GiB" in message


@pytest.mark.parametrize("name", ["ab", "1abc", "has_underscore", "ends-", "x" * 33])
def test_it_refuses_names_that_break_azures_rule(name):
    with pytest.raises(ValidationError) as caught:
        services.create_endpoint(name)
    assert "3 to 32 characters, start with a letter" in caught.value.message_dict["name"][0]


def test_it_rolls_out_an_update_and_stops_the_old_instances(celery_worker, import_flow):
    deployment = _deploy(import_flow, "web-classification-offline", request_timeout_ms=5000)
    (old,) = _ready(deployment)
    version = deployment.flow_version
    updated = _settled(services.create_or_update_deployment(deployment.endpoint, "blue", version, instance_count=2))
    assert updated.state == DeploymentState.SUCCEEDED, updated.failure_reason
    assert updated.generation == 2 and updated.live_generation == 2
    assert len(_ready(updated)) == 2
    old.refresh_from_db()
    assert old.state == InstanceState.STOPPED
    assert not launcher.is_running(old.pid, str(old.id))


def test_it_restarts_a_killed_instance(celery_worker, import_flow):
    deployment = _deploy(import_flow, "chat-stream-offline")
    (instance,) = _ready(deployment)
    os.killpg(instance.pid, signal.SIGKILL)
    wait_for(lambda: not launcher.is_running(instance.pid, str(instance.id)), timeout=10)
    provisioning.reconcile()
    instance.refresh_from_db()
    assert instance.state == InstanceState.CRASHED and instance.restarts == 1

    def back():
        provisioning.reconcile()
        instance.refresh_from_db()
        return instance.state == InstanceState.READY

    wait_for(back, timeout=60, interval=0.5, message="the instance was not restarted")
    assert httpx.post(f"{instance.url}/score", json={"question": "again"}).json() == {
        "answer": "Turn 1: you said 'again'."
    }
    messages = list(deployment.events.values_list("message", flat=True))
    assert any("exited; restarting" in m for m in messages)


def test_it_deletes_an_endpoint_and_stops_every_process(celery_worker, import_flow):
    deployment = _deploy(import_flow, "chat-stream-offline", instance_count=2)
    instances = _ready(deployment)
    services.delete_endpoint(deployment.endpoint)
    wait_for(lambda: not Endpoint.objects.filter(name="ep-one").exists(), timeout=60)
    for instance in instances:
        assert not launcher.is_running(instance.pid, str(instance.id))
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{instance.url}/health")
    assert publishing.client().get(routing.route_key("ep-one")) is None
