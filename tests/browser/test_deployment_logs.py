"""The Logs tab in Chromium: the log opens at its last line, Follow shows new lines without a reload, and
without Follow the page stays as it is until asked."""

import pytest
from playwright.sync_api import expect

from endpoints.models import Deployment, DeploymentState, Endpoint, Instance, InstanceState
from flows.models import Flow, FlowSource, FlowVersion

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Whether the end of the log text is inside the scroll box, whatever way the page keeps it there.
BOTTOM_VISIBLE = """(box) => {
  const range = document.createRange();
  range.selectNodeContents(box.querySelector("pre"));
  const rects = range.getClientRects();
  const last = rects[rects.length - 1];
  const outer = box.getBoundingClientRect();
  return box.scrollHeight > box.clientHeight && last.bottom <= outer.bottom + 1 && last.bottom > outer.top;
}"""


@pytest.fixture
def instances(settings, tmp_path):
    """ep-logs/blue with two ready instances whose logs hold 300 numbered lines each; nothing runs."""
    settings.FLOWDEPLOY_DEPLOYMENTS_DIR = tmp_path / "deployments"
    flow = Flow.objects.create(name="web")
    version = FlowVersion.objects.create(flow=flow, version=1, content_hash="web-hash", source=FlowSource.FOLDER)
    endpoint = Endpoint.objects.create(name="ep-logs", traffic={"blue": 100})
    deployment = Deployment.objects.create(
        endpoint=endpoint, name="blue", flow_version=version, state=DeploymentState.SUCCEEDED, live_generation=1
    )
    deployment.set_phase("Succeeded", "Deployment blue is ready.")
    made = []
    for ordinal in (1, 2):
        instance = Instance.objects.create(
            deployment=deployment, generation=1, ordinal=ordinal, state=InstanceState.READY
        )
        instance.log_path.parent.mkdir(parents=True)
        instance.log_path.write_text("".join(f"instance {ordinal} line {n}\n" for n in range(1, 301)))
        made.append(instance)
    return made


def _append(instance, line):
    with instance.log_path.open("a") as log:
        log.write(line + "\n")


def test_it_follows_the_log_live_and_stops_when_follow_is_off(signed_in, live_server, instances):
    page = signed_in
    first = instances[0]
    page.goto(f"{live_server.url}/deployments/ep-logs/blue/")
    page.get_by_role("link", name="Logs", exact=True).click()
    expect(page.get_by_role("heading", name="Instance logs")).to_be_visible()
    log = page.locator("#log-text")
    expect(log).to_contain_text("instance 1 line 300")
    expect(page.locator("#events")).to_contain_text("Deployment blue is ready.")
    assert page.locator(".log-scroll").evaluate(BOTTOM_VISIBLE), "the log did not open at its last line"
    page.evaluate("window.notReloaded = true")

    page.get_by_label("Follow").check()
    expect(page.locator("#log")).to_have_attribute("hx-trigger", "every 2s")
    assert "follow=on" in page.url
    _append(first, "a line written while following")
    expect(log).to_contain_text("a line written while following", timeout=10_000)
    assert page.locator(".log-scroll").evaluate(BOTTOM_VISIBLE), "following did not keep the last line in view"
    assert page.evaluate("window.notReloaded === true")

    page.get_by_label("Follow").uncheck()
    expect(page.locator("#log")).not_to_have_attribute("hx-trigger", "every 2s")
    _append(first, "a line written after following stopped")
    page.wait_for_timeout(4_500)  # two polling periods
    expect(log).not_to_contain_text("a line written after following stopped")
    page.get_by_role("button", name="Refresh").click()
    expect(log).to_contain_text("a line written after following stopped")
    assert page.evaluate("window.notReloaded === true")


def test_it_switches_instance_and_number_of_lines(signed_in, live_server, instances):
    page = signed_in
    second = instances[1]
    page.goto(f"{live_server.url}/deployments/ep-logs/blue/logs/")
    page.get_by_label("Instance", exact=True).select_option(label="Instance 2 · generation 1 · Ready")
    log = page.locator("#log-text")
    expect(log).to_contain_text("instance 2 line 300")
    lines = page.get_by_label("Lines")
    lines.fill("2")
    lines.press("Enter")
    expect(log).to_have_text("instance 2 line 299\ninstance 2 line 300")
    assert f"instance={second.id}" in page.url and "lines=2" in page.url
