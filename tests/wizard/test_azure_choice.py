"""The wizard's Runs on: offered only in a project connected to Azure ML; chosen, the Create makes an Azure ML
endpoint whose deployment carries the wizard's sampling rate to Azure's data collector."""

import pytest
from fake_arm import WORKSPACE

from endpoints import provisioning
from endpoints.models import Deployment, DeploymentState, Endpoint, Provider

pytest_plugins = ["fake_arm"]  # the azure and fake_azure fixtures
pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore")]

BASIC = {
    "endpoint_mode": "new",
    "endpoint_name": "ep-wizard-azure",
    "existing_endpoint": "",
    "deployment_name": "blue",
    "vm_size": "Standard_DS3_v2",
    "instance_count": "2",
    "go": "review",
}


def test_it_offers_azure_only_in_a_connected_project(deployer_client, draft):
    html = deployer_client.get(draft.step_url("basic")).content.decode()
    assert 'name="provider"' not in html
    response = deployer_client.post(draft.step_url("basic"), {**BASIC, "provider": "azureml"})
    assert response.status_code == 400
    assert "Select a valid choice. azureml is not one of the available choices." in response.content.decode()
    assert not Endpoint.objects.exists()


def test_it_creates_an_azure_endpoint_from_the_wizard(
    azure, deployer_client, draft, django_capture_on_commit_callbacks
):
    html = deployer_client.get(draft.step_url("basic")).content.decode()
    assert f"Azure Machine Learning (workspace {WORKSPACE})" in html
    answer = deployer_client.post(
        draft.step_url("basic"), {**BASIC, "provider": "azureml", "data_collection": "on", "sampling_percent": "25"}
    )
    assert answer.status_code == 302, answer.content.decode()
    review = deployer_client.get(draft.step_url("review")).content.decode()
    assert f"Azure Machine Learning (workspace {WORKSPACE})" in review
    with django_capture_on_commit_callbacks(execute=False):
        assert deployer_client.post(draft.step_url("review")).status_code == 302

    endpoint = Endpoint.objects.get()
    assert endpoint.provider == Provider.AZUREML
    deployment = Deployment.objects.get()
    provisioning.provision(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    sent = azure.body("PUT", "/onlineEndpoints/ep-wizard-azure/deployments/blue")
    assert sent["sku"]["capacity"] == 2
    collections = sent["properties"]["dataCollector"]["collections"]
    assert collections["model_inputs"]["samplingRate"] == 0.25


def test_the_deployment_step_takes_a_custom_environment_only_for_azure(azure, deployer_client, draft):
    settings = {"request_timeout_ms": "90000", "max_concurrent_requests_per_instance": "8", "go": "review"}
    deployer_client.post(draft.step_url("basic"), BASIC)  # this machine
    refused = deployer_client.post(draft.step_url("deployment"), {**settings, "environment": "azureml:team:1"})
    assert refused.status_code == 400
    assert "A custom environment is for Azure Machine Learning endpoints; this one runs here." in (
        refused.content.decode()
    )

    deployer_client.post(draft.step_url("basic"), {**BASIC, "provider": "azureml"})
    page = deployer_client.get(draft.step_url("deployment")).content.decode()
    assert 'name="environment"' in page
    taken = deployer_client.post(draft.step_url("deployment"), {**settings, "environment": "azureml:team:1"})
    assert taken.status_code == 302, taken.content.decode()
    review = deployer_client.get(draft.step_url("review")).content.decode()
    assert "azureml:team:1 (custom, used as is)" in review
