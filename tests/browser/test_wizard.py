"""A user deploys a flow with the wizard in the browser, driven by its labels, and the deployment answers
through the gateway."""

import httpx
import pytest
from playwright.sync_api import expect
from support import wait_for

from endpoints import services
from endpoints.models import Deployment, DeploymentState, Endpoint

pytestmark = [pytest.mark.browser, pytest.mark.integration]

BODY = {"url": "https://www.youtube.com/watch?v=o5ZQyXaAv1g", "location": "LA"}
ANSWER = {"category": "Movie", "evidence": "host www.youtube.com matches youtube.com", "location": "LA"}


def _score(gateway_url, endpoint_name, deployment_name=None):
    key = services.credentials(Endpoint.objects.get(name=endpoint_name))["primaryKey"]
    headers = {"Authorization": f"Bearer {key}"}
    if deployment_name:
        headers["azureml-model-deployment"] = deployment_name
    url = f"{gateway_url}/endpoints/{endpoint_name}/score"
    wait_for(lambda: httpx.post(url, json=BODY, headers=headers, timeout=30).status_code == 200, timeout=15)
    return httpx.post(url, json=BODY, headers=headers, timeout=30)


def _settled(deployment: Deployment) -> None:
    def done():
        deployment.refresh_from_db()
        return deployment.state in (DeploymentState.SUCCEEDED, DeploymentState.FAILED)

    wait_for(done, timeout=180, message="the deployment did not settle")
    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason


def _open_wizard(page, live_server, version):
    page.goto(f"{live_server.url}{version.get_absolute_url()}")
    page.get_by_role("button", name="Deploy").click()
    expect(page.get_by_role("heading", name="Basic settings")).to_be_visible()


def _small_machine(page):
    page.get_by_label("Virtual machine").select_option("Standard_DS1_v2")
    page.get_by_label("Instance count").fill("1")
    expect(page.locator("#capacity")).to_contain_text("For high availability, we recommend that you set the value")


def _wait_succeeded(page):
    expect(page.locator("#provisioning-state")).to_have_text("Succeeded", timeout=180_000)
    expect(page.locator("#status")).not_to_have_attribute("hx-trigger", "every 1s")


def test_it_deploys_a_new_endpoint_with_defaults(signed_in, live_server, celery_worker, gateway_url, import_flow):
    page = signed_in
    version = import_flow("web-classification-offline")
    _open_wizard(page, live_server, version)
    expect(page.get_by_label("New", exact=True)).to_be_checked()
    name = page.get_by_label("Endpoint name", exact=True)
    name.fill("ep-browser-new")
    expect(page.locator("#name-check")).to_have_text("ep-browser-new is available.")
    expect(page.get_by_label("Deployment name")).to_have_value("blue")
    _small_machine(page)
    page.get_by_role("button", name="Review + Create", exact=True).click()

    expect(page.get_by_role("heading", name="Review + Create")).to_be_visible()
    expect(page.get_by_text("Key-based authentication")).to_be_visible()
    page.get_by_role("button", name="Create", exact=True).click()

    expect(page.get_by_role("heading", name="blue")).to_be_visible()
    expect(page.get_by_text("/endpoints/ep-browser-new/score")).to_be_visible()
    expect(page.locator("#state-badge")).to_have_text("Creating")
    expect(page.locator("#deployment-banner")).to_contain_text("Deployment blue is being created")
    _wait_succeeded(page)
    # Without a reload, the header's badge, the banner and the traffic table followed the job to its end.
    expect(page.locator("#state-badge")).to_have_text("Succeeded")
    expect(page.locator("#deployment-banner")).to_have_count(0)
    expect(page.get_by_label("Traffic for blue", exact=True)).to_have_value("100")
    response = _score(gateway_url, "ep-browser-new")
    assert response.status_code == 200
    assert response.json() == ANSWER
    assert response.headers["azureml-model-deployment"] == "blue"

    # The one "Prompt flow deployment" notification followed the provisioning to its end.
    page.locator(".bell summary").click()
    expect(page.locator(".bell .panel")).to_contain_text("ep-browser-new/blue succeeded.", timeout=15_000)
    expect(page.locator(".bell .panel").get_by_text("Prompt flow deployment")).to_have_count(1)


def test_it_adds_a_second_deployment_to_an_existing_endpoint(
    signed_in, live_server, celery_worker, gateway_url, import_flow
):
    page = signed_in
    version = import_flow("web-classification-offline")
    endpoint = services.create_endpoint("ep-browser-two")
    _settled(services.create_or_update_deployment(endpoint, "blue", version, vm_size="Standard_DS1_v2"))

    _open_wizard(page, live_server, version)
    page.get_by_label("Existing", exact=True).check()
    page.get_by_label("Existing endpoint").select_option("ep-browser-two")
    page.get_by_label("Deployment name").fill("green")
    _small_machine(page)
    page.get_by_role("button", name="Next").click()

    expect(page.get_by_role("heading", name="Advanced settings: Endpoint")).to_be_visible()
    expect(page.get_by_text("its settings stay as they are")).to_be_visible()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Advanced settings: Deployment")).to_be_visible()
    expect(page.get_by_text("custom environments are for Azure Machine Learning endpoints.")).to_be_visible()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Advanced settings: Outputs & connections")).to_be_visible()
    expect(page.get_by_label("category (string)")).to_be_checked()
    page.get_by_role("button", name="Review + Create", exact=True).click()
    page.get_by_role("button", name="Create", exact=True).click()

    expect(page.get_by_role("heading", name="green")).to_be_visible()
    _wait_succeeded(page)
    assert sorted(endpoint.deployments.values_list("name", flat=True)) == ["blue", "green"]
    response = _score(gateway_url, "ep-browser-two", "green")
    assert response.status_code == 200
    assert response.json() == ANSWER
    assert response.headers["azureml-model-deployment"] == "green"


def test_it_overwrites_an_existing_deployment_after_confirmation(
    signed_in, live_server, celery_worker, gateway_url, import_flow
):
    page = signed_in
    version = import_flow("web-classification-offline")
    endpoint = services.create_endpoint("ep-browser-over")
    blue = services.create_or_update_deployment(endpoint, "blue", version, vm_size="Standard_DS1_v2")
    _settled(blue)

    _open_wizard(page, live_server, version)
    page.get_by_label("Existing", exact=True).check()
    page.get_by_label("Existing endpoint").select_option("ep-browser-over")
    _small_machine(page)
    page.get_by_role("button", name="Review + Create", exact=True).click()
    expect(page.get_by_text("it will be overwritten with this configuration")).to_be_visible()
    page.get_by_label("Overwrite the existing deployment").check()
    page.get_by_role("button", name="Review + Create", exact=True).click()

    expect(page.get_by_text("Deployment blue on endpoint ep-browser-over will be overwritten")).to_be_visible()
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.get_by_role("heading", name="blue")).to_be_visible()
    _wait_succeeded(page)
    blue.refresh_from_db()
    assert blue.generation == 2
    response = _score(gateway_url, "ep-browser-over")
    assert response.status_code == 200
    assert response.json() == ANSWER


def test_it_keeps_what_was_typed_on_back_and_on_the_step_list(signed_in, live_server, import_flow):
    """Nothing is deployed: Back and the step list save the step as typed, and it is there on return."""
    page = signed_in
    version = import_flow("web-classification-offline")
    _open_wizard(page, live_server, version)
    page.get_by_label("Endpoint name", exact=True).fill("ep-browser-back")
    _small_machine(page)
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Advanced settings: Endpoint")).to_be_visible()
    page.get_by_label("Tags").fill("team=search")
    page.get_by_role("button", name="Next").click()

    expect(page.get_by_role("heading", name="Advanced settings: Deployment")).to_be_visible()
    page.get_by_label("Tags").fill("owner=me")
    page.get_by_label("Request timeout (ms)").fill("10")  # not valid: kept all the same
    page.get_by_role("button", name="Back").click()
    expect(page.get_by_role("heading", name="Advanced settings: Endpoint")).to_be_visible()
    expect(page.get_by_label("Tags")).to_have_value("team=search")
    page.get_by_label("Tags").fill("team=search\ncost=42")

    steps = page.get_by_role("navigation", name="Wizard steps")
    steps.get_by_role("button", name="3. Advanced settings: Deployment").click()
    expect(page.get_by_role("heading", name="Advanced settings: Deployment")).to_be_visible()
    expect(page.get_by_label("Tags")).to_have_value("owner=me")
    expect(page.get_by_label("Request timeout (ms)")).to_have_value("10")
    expect(page.get_by_text("Request timeout (ms) must be between 1000 and 3600000.")).to_be_visible()

    steps.get_by_role("button", name="1. Basic settings").click()
    expect(page.get_by_label("Endpoint name", exact=True)).to_have_value("ep-browser-back")
    steps.get_by_role("button", name="2. Advanced settings: Endpoint").click()
    expect(page.get_by_label("Tags")).to_have_value("team=search\ncost=42")

    # Enter in a field means Next, not Back or a step of the list.
    steps.get_by_role("button", name="1. Basic settings").click()
    page.get_by_label("Deployment name").press("Enter")
    expect(page.get_by_role("heading", name="Advanced settings: Endpoint")).to_be_visible()
