"""On a 390 x 844 screen (a phone) no page scrolls sideways: the navigation collapses behind the Menu
button, wide tables scroll inside their own box. Rows are made directly; nothing runs."""

import pytest
from playwright.sync_api import expect

from endpoints import services
from endpoints.models import Deployment, DeploymentState, Endpoint
from flows.models import Flow, FlowSource, FlowVersion
from wizard.models import DeploymentDraft

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
SCROLL_WIDTH = "document.documentElement.scrollWidth"


@pytest.fixture
def version():
    flow = Flow.objects.create(name="web-classification-with-a-rather-long-name")
    return FlowVersion.objects.create(
        flow=flow,
        version=1,
        content_hash="f" * 64,
        source=FlowSource.FOLDER,
        inputs={"url": {"type": "string", "default": "https://www.youtube.com/watch?v=o5ZQyXaAv1g"}},
        outputs={"category": {"type": "string"}, "evidence": {"type": "string"}},
    )


@pytest.fixture
def deployment(version, redis_url):
    endpoint = services.create_endpoint("ep-phone-with-a-long-name", tags={"team": "search", "cost-center": "42"})
    Endpoint.objects.filter(pk=endpoint.pk).update(traffic={"blue": 100})
    deployment = Deployment.objects.create(
        endpoint=endpoint, name="blue", flow_version=version, state=DeploymentState.SUCCEEDED, live_generation=1
    )
    deployment.set_phase("Succeeded", "Deployment blue is ready: " + "a long event message " * 8)
    return deployment


def _fits(page, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("load")
    width = page.evaluate(SCROLL_WIDTH)
    assert width <= PHONE["width"], f"{url} is {width} px wide"


def test_no_page_scrolls_sideways_on_a_phone(signed_in, live_server, deployment, version):
    page = signed_in
    page.set_viewport_size(PHONE)
    base = live_server.url
    for path in (
        "/flows/",
        "/deployments/",
        "/deployments/ep-phone-with-a-long-name/blue/",
        "/deployments/ep-phone-with-a-long-name/blue/test/",
        "/deployments/ep-phone-with-a-long-name/blue/consume/",
        "/deployments/ep-phone-with-a-long-name/blue/logs/",
        "/endpoints/ep-phone-with-a-long-name/",
        "/deployments/new/",
    ):
        _fits(page, base + path)

    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.get(username="studio-admin")
    draft = DeploymentDraft.start(owner, version)
    _fits(page, base + draft.step_url("basic"))
    page.get_by_label("Endpoint name", exact=True).fill("ep-phone")
    page.get_by_role("button", name="Next").click()
    for step in ("endpoint", "deployment", "outputs", "review"):
        expect(page).to_have_url(base + draft.step_url(step))
        width = page.evaluate(SCROLL_WIDTH)
        assert width <= PHONE["width"], f"the {step} step is {width} px wide"
        if step == "outputs":
            page.get_by_role("button", name="Review + Create", exact=True).click()
        elif step != "review":
            page.get_by_role("button", name="Next").click()


def test_the_navigation_collapses_behind_the_menu_button(signed_in, live_server):
    page = signed_in
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/flows/")
    navigation = page.get_by_role("navigation", name="Main")
    menu = page.get_by_role("button", name="Menu")
    expect(navigation).to_be_hidden()
    expect(menu).to_have_attribute("aria-expanded", "false")
    menu.click()
    expect(navigation).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "true")
    navigation.get_by_role("link", name="Deployments").click()
    expect(page.get_by_role("heading", name="Deployments")).to_be_visible()
    expect(navigation).to_be_hidden()  # a new page starts with it closed

    page.set_viewport_size({"width": 1400, "height": 900})
    expect(navigation).to_be_visible()
    expect(menu).to_be_hidden()


def test_a_wide_table_scrolls_inside_its_box(signed_in, live_server, deployment):
    page = signed_in
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/deployments/")
    box = page.locator("#rows .table-scroll")
    assert box.evaluate("(el) => el.scrollWidth > el.clientWidth")  # the table is wider than the screen...
    assert page.evaluate(SCROLL_WIDTH) <= PHONE["width"]  # ...and only its box scrolls
