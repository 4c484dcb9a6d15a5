"""Azure Machine Learning in a browser: an Owner connects the project to a workspace (the fake Azure Resource
Manager answers Test connection), then the wizard offers Runs on Azure and swaps this machine's capacity line
for Azure's quota, and the Review says where it runs."""

import pytest
from fake_arm import LOCATION, RESOURCE_GROUP, SUBSCRIPTION_ID, WORKSPACE, FakeArm, FakeCredential
from playwright.sync_api import expect

import workspace.azure

pytest_plugins = ["fake_arm"]  # the fake_azure fixture
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.filterwarnings("ignore")]


def test_it_connects_a_workspace_and_offers_it_in_the_wizard(
    signed_in, live_server, fake_azure: FakeArm, monkeypatch, import_flow
):
    monkeypatch.setattr(workspace.azure, "client_options", {"transport": fake_azure, "credential": FakeCredential()})
    page = signed_in
    version = import_flow("web-classification-offline")

    page.locator("#nav-azure").click()
    page.wait_for_url(f"{live_server.url}/projects/default/azure/")
    page.get_by_label("Subscription ID").fill(SUBSCRIPTION_ID)
    page.get_by_label("Resource group").fill(RESOURCE_GROUP)
    page.get_by_label("Workspace name").fill(WORKSPACE)
    page.get_by_label("DefaultAzureCredential (development only)").check()
    page.locator("#azure-save").click()
    expect(page.locator("#azure-workspace-name")).to_have_text(WORKSPACE)
    page.locator("#azure-test").click()
    expect(page.locator("#azure-status")).to_contain_text("Connected")
    expect(page.locator("#azure-region")).to_have_text(LOCATION)

    page.goto(f"{live_server.url}{version.get_absolute_url()}")
    page.get_by_role("button", name="Deploy").click()
    expect(page.get_by_role("heading", name="Basic settings")).to_be_visible()
    expect(page.locator("#capacity")).to_be_visible()
    expect(page.locator("#azure-quota")).to_be_hidden()
    page.get_by_label("Runs on").select_option("azureml")
    expect(page.locator("#capacity")).to_be_hidden()
    expect(page.locator("#azure-quota")).to_be_visible()
    page.get_by_label("Endpoint name", exact=True).fill("ep-browser-azure")
    page.get_by_role("button", name="Review + Create", exact=True).click()

    expect(page.get_by_role("heading", name="Review + Create")).to_be_visible()
    expect(page.get_by_text(f"Azure Machine Learning (workspace {WORKSPACE})")).to_be_visible()
