"""wizard.services.create_from_draft: the wizard's Create as a service, called directly."""

import pytest

from django.core.exceptions import ValidationError

from endpoints import services
from endpoints.models import Deployment, DeploymentState, Endpoint
from wizard import services as wizard_services
from wizard.models import DeploymentDraft
from workspace.models import Notification

pytestmark = pytest.mark.django_db

BASIC = {
    "endpoint_mode": ["new"],
    "endpoint_name": ["ep-service"],
    "existing_endpoint": [""],
    "deployment_name": ["blue"],
    "vm_size": ["Standard_DS1_v2"],
    "instance_count": ["1"],
}


@pytest.fixture
def service_draft(deployer, flow_version):
    draft = DeploymentDraft.start(deployer, flow_version)
    draft.save_step("basic", BASIC)
    return draft


def test_it_creates_the_endpoint_and_deployment_from_a_draft(
    service_draft, deployer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        deployment, created = wizard_services.create_from_draft(service_draft, deployer)
    assert created
    assert (deployment.endpoint.name, deployment.name, deployment.state) == ("ep-service", "blue", "Creating")
    assert deployment.selected_outputs == ["category", "evidence", "location"]  # the skipped step's defaults
    assert deployment.endpoint.created_by == deployer
    assert callbacks
    service_draft.refresh_from_db()
    assert service_draft.deployment == deployment
    note = Notification.objects.get(user=deployer)
    assert (note.title, note.link) == ("Prompt flow deployment", "/deployments/ep-service/blue/")


def test_it_returns_the_deployment_of_a_draft_deployed_before(
    service_draft, deployer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        first, _ = wizard_services.create_from_draft(service_draft, deployer)
        again, created = wizard_services.create_from_draft(service_draft, deployer)
    assert (again, created) == (first, False)
    assert Deployment.objects.count() == 1
    assert Notification.objects.count() == 1


def test_it_names_the_step_to_fix_and_creates_nothing(service_draft, deployer, redis_url):
    services.create_endpoint("EP-Service")  # the name is taken, whatever its case
    with pytest.raises(wizard_services.DraftProblem) as caught:
        wizard_services.create_from_draft(service_draft, deployer)
    assert caught.value.step == "basic"
    assert caught.value.message == (
        "Endpoint name: Endpoint name ep-service is already taken by endpoint EP-Service: "
        "endpoint names are case-insensitive."
    )
    assert Endpoint.objects.count() == 1
    assert Deployment.objects.count() == 0
    assert Notification.objects.count() == 0


def test_it_maps_a_service_refusal_to_its_step_and_rolls_back_the_new_endpoint(
    service_draft, deployer, monkeypatch, django_capture_on_commit_callbacks
):
    """The endpoint service ran, then the deployment service refused (say the machine filled up meanwhile):
    nothing stays, and the message goes to the step of the field the service named."""

    def refuse(*args, **kwargs):
        raise ValidationError({"instance_count": "3 x Standard_DS1_v2 needs 0.9 GiB, but this machine has 0.1 GiB."})

    monkeypatch.setattr(services, "create_or_update_deployment", refuse)
    with django_capture_on_commit_callbacks(execute=False), pytest.raises(wizard_services.DraftProblem) as caught:
        wizard_services.create_from_draft(service_draft, deployer)
    assert caught.value.step == "basic"
    assert caught.value.message == "3 x Standard_DS1_v2 needs 0.9 GiB, but this machine has 0.1 GiB."
    assert not Endpoint.objects.exists()
    service_draft.refresh_from_db()
    assert service_draft.deployment is None


def test_it_updates_the_deployment_it_overwrites(
    service_draft, deployer, flow_version, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        endpoint = services.create_endpoint("ep-existing")
        blue = services.create_or_update_deployment(endpoint, "blue", flow_version, vm_size="Standard_DS1_v2")
    Deployment.objects.filter(pk=blue.pk).update(state=DeploymentState.SUCCEEDED)
    service_draft.save_step(
        "basic",
        {**BASIC, "endpoint_mode": ["existing"], "existing_endpoint": ["ep-existing"], "confirm_overwrite": ["on"]},
    )
    with django_capture_on_commit_callbacks(execute=False):
        deployment, created = wizard_services.create_from_draft(service_draft, deployer)
    assert created and deployment.pk == blue.pk
    assert (deployment.state, deployment.generation) == (DeploymentState.UPDATING, 2)
    assert "Updating ep-existing/blue" in Notification.objects.get(user=deployer).body


def test_it_sends_a_stale_step_back_with_its_first_error(service_draft, deployer):
    service_draft.save_step("deployment", {"request_timeout_ms": ["10"], "max_concurrent_requests_per_instance": ["8"]})
    with pytest.raises(wizard_services.DraftProblem) as caught:
        wizard_services.create_from_draft(service_draft, deployer)
    assert caught.value.step == "deployment"
    assert caught.value.message.startswith("Request timeout (ms): Request timeout (ms) must be between 1000")
