"""The Details tab in Chromium without a worker (rows are made directly): the Scale error shows beside the
field, scrolled into view; a poll does not replace a traffic table being edited; the header, badge, banner
and traffic follow a job that ends."""

import pytest
from playwright.sync_api import expect

from endpoints import services
from endpoints.models import Deployment, DeploymentState, Endpoint
from flows.models import Flow, FlowSource, FlowVersion

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def version():
    flow = Flow.objects.create(name="web")
    return FlowVersion.objects.create(
        flow=flow, version=1, content_hash="e" * 64, source=FlowSource.FOLDER, outputs={"answer": {"type": "string"}}
    )


@pytest.fixture
def endpoint(redis_url):
    return services.create_endpoint("ep-state")


def _deployment(endpoint, version, name="blue", state=DeploymentState.SUCCEEDED) -> Deployment:
    deployment = Deployment.objects.create(
        endpoint=endpoint, name=name, flow_version=version, state=state, vm_size="Standard_DS1_v2"
    )
    for n in range(12):  # a page long enough that Scale is below the fold
        deployment.event(f"Event {n} of the deployment's history.")
    return deployment


def test_it_shows_the_scale_error_beside_the_field_in_view(signed_in, live_server, endpoint, version):
    page = signed_in
    _deployment(endpoint, version)
    Endpoint.objects.filter(pk=endpoint.pk).update(traffic={"blue": 100})
    page.goto(f"{live_server.url}/deployments/ep-state/blue/")
    field = page.get_by_label("Instance count")
    field.fill("0")
    page.get_by_role("button", name="Scale").click()
    error = page.locator("#scale-error")
    expect(error).to_have_text("Instance count must be a whole number from 1 to 20.")
    expect(error).to_be_in_viewport()
    expect(field).to_be_focused()
    expect(field).to_have_value("0")
    box, error_box = field.bounding_box(), error.bounding_box()
    assert 0 <= error_box["y"] - (box["y"] + box["height"]) < 60  # right under the field, not elsewhere


def test_it_follows_a_job_to_its_end_without_a_reload(signed_in, live_server, endpoint, version):
    page = signed_in
    deployment = _deployment(endpoint, version, state=DeploymentState.CREATING)
    page.goto(f"{live_server.url}/deployments/ep-state/blue/")
    expect(page.locator("#state-badge")).to_have_text("Creating")
    expect(page.locator("#deployment-banner")).to_contain_text("Deployment blue is being created (Queued).")
    expect(page.get_by_label("Traffic for blue", exact=True)).to_have_value("0")
    expect(page.get_by_role("button", name="Scale")).to_be_disabled()

    Deployment.objects.filter(pk=deployment.pk).update(phase="Probing")
    expect(page.locator("#deployment-banner")).to_contain_text("(Probing)")
    # The job ends as provisioning ends it: the first deployment gets the traffic.
    Endpoint.objects.filter(pk=endpoint.pk).update(traffic={"blue": 100})
    Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.SUCCEEDED, phase="Succeeded")
    expect(page.locator("#state-badge")).to_have_text("Succeeded")
    expect(page.locator("#deployment-banner")).to_have_count(0)
    expect(page.get_by_label("Traffic for blue", exact=True)).to_have_value("100")
    expect(page.get_by_role("button", name="Scale")).to_be_enabled()
    expect(page.locator("#status")).not_to_have_attribute("hx-trigger", "every 1s")


def test_it_does_not_replace_a_traffic_table_being_edited(signed_in, live_server, endpoint, version):
    page = signed_in
    blue = _deployment(endpoint, version, state=DeploymentState.CREATING)
    _deployment(endpoint, version, name="green")
    Endpoint.objects.filter(pk=endpoint.pk).update(traffic={"green": 100})
    page.goto(f"{live_server.url}/deployments/ep-state/blue/")
    page.get_by_label("Traffic for green", exact=True).fill("70")
    Deployment.objects.filter(pk=blue.pk).update(state=DeploymentState.SUCCEEDED, phase="Succeeded")
    expect(page.locator("#state-badge")).to_have_text("Succeeded")  # the poll that brought the new table came
    expect(page.get_by_label("Traffic for green", exact=True)).to_have_value("70")  # and left what was typed
    expect(page.locator("#traffic .badge.creating")).to_have_count(1)


def test_it_follows_the_job_on_the_other_tabs(signed_in, live_server, endpoint, version):
    page = signed_in
    deployment = _deployment(endpoint, version, state=DeploymentState.UPDATING)
    Deployment.objects.filter(pk=deployment.pk).update(live_generation=1)
    page.goto(f"{live_server.url}/deployments/ep-state/blue/consume/")
    expect(page.locator("#state-badge")).to_have_text("Updating")
    expect(page.locator("#deployment-banner")).to_contain_text("Its current instances keep answering")
    Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.FAILED, failure_reason="pip failed.")
    expect(page.locator("#state-badge")).to_have_text("Failed")
    expect(page.locator("#deployment-banner")).to_contain_text("its previous version keeps answering. pip failed.")
    expect(page.locator("#deployment-head")).not_to_have_attribute("hx-trigger", "every 1s")
