"""The Details tab in the browser, with the real worker, instances and gateway: traffic updates and scaling
take effect, and deleting an endpoint ends with it gone and its processes stopped."""

import httpx
import pytest
from playwright.sync_api import expect
from support import wait_for

from endpoints import services
from endpoints.models import Deployment, Endpoint, Instance, InstanceState
from serving import launcher

pytestmark = [pytest.mark.browser, pytest.mark.integration]

BODY = {"url": "https://www.youtube.com/watch?v=o5ZQyXaAv1g", "location": "LA"}


def _score(gateway_url: str, endpoint: str) -> httpx.Response:
    key = services.credentials(Endpoint.objects.get(name=endpoint))["primaryKey"]
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{gateway_url}/endpoints/{endpoint}/score", json=BODY, headers=headers, timeout=30)


def test_it_moves_traffic_with_the_editor(signed_in, live_server, deploy, gateway_url):
    page = signed_in
    deploy("web-classification-offline", endpoint="ep-traffic", name="blue")
    deploy("web-classification-offline", endpoint="ep-traffic", name="green")
    assert _score(gateway_url, "ep-traffic").headers["azureml-model-deployment"] == "blue"

    page.goto(f"{live_server.url}/deployments/ep-traffic/blue/")
    page.get_by_label("Traffic for blue", exact=True).fill("0")
    page.get_by_label("Traffic for green", exact=True).fill("90")
    page.get_by_role("button", name="Update traffic").click()
    expect(page.locator("#traffic")).to_contain_text("Traffic must add up to 100%, not 90%.")
    assert Endpoint.objects.get(name="ep-traffic").traffic == {"blue": 100}

    page.get_by_label("Traffic for green", exact=True).fill("100")
    page.get_by_role("button", name="Update traffic").click()
    expect(page.locator("#traffic")).to_contain_text("blue: live traffic 100% → 0% (it stops receiving live traffic).")
    assert _score(gateway_url, "ep-traffic").headers["azureml-model-deployment"] == "blue"
    page.get_by_role("button", name="Confirm update").click()
    expect(page.locator("#traffic")).to_contain_text("Traffic of ep-traffic updated: green 100%.")
    wait_for(lambda: _score(gateway_url, "ep-traffic").headers["azureml-model-deployment"] == "green", timeout=10)
    answered = {_score(gateway_url, "ep-traffic").headers["azureml-model-deployment"] for _ in range(20)}
    assert answered == {"green"}


def test_it_scales_a_deployment_out(signed_in, live_server, deploy, gateway_url):
    page = signed_in
    deployment = deploy("web-classification-offline", endpoint="ep-scale", name="blue")
    page.goto(f"{live_server.url}/deployments/ep-scale/blue/")
    expect(page.locator("#instance-count")).to_contain_text("1 (1 healthy)")

    page.get_by_label("Instance count").fill("2")
    page.get_by_role("button", name="Scale").click()
    expect(page.get_by_text("Scale ep-scale/blue from 1 to 2 instance(s)?")).to_be_visible()
    expect(page.get_by_text("The 1 current instance(s) stop after finishing the requests in flight")).to_be_visible()
    page.get_by_role("button", name="Scale").click()
    expect(page.locator("#provisioning-state")).to_have_text("Updating")
    expect(page.locator("#state-badge")).to_have_text("Updating")
    expect(page.locator("#deployment-banner")).to_contain_text("Deployment blue is being updated")
    expect(page.get_by_role("button", name="Scale")).to_be_disabled()
    expect(page.locator("#provisioning-state")).to_have_text("Succeeded", timeout=180_000)
    expect(page.locator("#instance-count")).to_contain_text("2 (2 healthy)")
    # Without a reload: the header's badge and banner, and Scale, offered again with the new count.
    expect(page.locator("#state-badge")).to_have_text("Succeeded")
    expect(page.locator("#deployment-banner")).to_have_count(0)
    expect(page.get_by_role("button", name="Scale")).to_be_enabled()
    expect(page.get_by_label("Instance count")).to_have_value("2")
    # The scale's own notification followed the rollout to its end.
    page.locator(".bell summary").click()
    expect(page.locator(".bell .panel")).to_contain_text("ep-scale/blue succeeded.", timeout=15_000)

    deployment.refresh_from_db()
    ready = Instance.objects.filter(
        deployment=deployment, generation=deployment.live_generation, state=InstanceState.READY
    )
    assert ready.count() == 2
    assert all(launcher.is_running(i.pid, str(i.id)) for i in ready)
    assert _score(gateway_url, "ep-scale").status_code == 200


def test_it_deletes_an_endpoint_and_stops_its_processes(signed_in, live_server, deploy, gateway_url):
    page = signed_in
    deployment = deploy("web-classification-offline", endpoint="ep-gone", name="blue")
    key = services.credentials(deployment.endpoint)["primaryKey"]
    instances = list(Instance.objects.filter(deployment=deployment, state=InstanceState.READY))
    assert instances and all(launcher.is_running(i.pid, str(i.id)) for i in instances)

    page.goto(f"{live_server.url}/deployments/ep-gone/blue/")
    page.get_by_role("link", name="Delete endpoint").click()
    expect(page.get_by_text("Delete endpoint ep-gone and everything deployed to it?")).to_be_visible()
    expect(page.get_by_text("Its primary and secondary keys")).to_be_visible()
    page.get_by_role("button", name="Delete endpoint").click()

    page.wait_for_url(f"{live_server.url}/deployments/")
    expect(page.locator('[data-endpoint="ep-gone"]')).to_have_count(0, timeout=60_000)
    assert not Endpoint.objects.filter(name="ep-gone").exists()
    assert not Deployment.objects.filter(pk=deployment.pk).exists()
    assert not any(launcher.is_running(i.pid, str(i.id)) for i in instances)
    gone = httpx.post(
        f"{gateway_url}/endpoints/ep-gone/score", json=BODY, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert gone.status_code == 404

    page.locator(".bell summary").click()
    expect(page.locator(".bell .panel")).to_contain_text("Endpoint ep-gone was deleted", timeout=15_000)
