"""Access control (IAM) in a browser: from the side menu, an Owner adds a role assignment for an endpoint's
system-assigned identity through Azure's steps (Role, Members, Review + assign), then removes it."""

import pytest

from endpoints import services
from workspace.models import RoleAssignment

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_adds_and_removes_a_role_assignment_step_by_step(signed_in, live_server):
    page = signed_in
    endpoint = services.create_endpoint("ep-browser-iam", enforce_access_to_connection_secrets=False)
    page.goto(f"{live_server.url}/flows/")
    page.locator("#nav-access").click()
    page.wait_for_url(f"{live_server.url}/projects/default/access/")
    assert "Missing" in page.locator("#endpoint-identities").inner_text()

    page.locator("#add-role-assignment").click()
    page.get_by_label("Azure Machine Learning Workspace Connection Secrets Reader").check()
    page.get_by_role("button", name="Next").click()
    page.wait_for_selector("#step-members")
    page.get_by_label("Managed identity").check()
    page.get_by_label("Members").select_option("system:ep-browser-iam")
    assert page.get_by_label("Scope").input_value() == "project"
    page.get_by_role("button", name="Review + assign").click()
    page.wait_for_selector("#step-review")
    assert str(endpoint.principal_id) in page.locator("#review").inner_text()
    assert page.locator("#az-command").inner_text() == (
        f"az role assignment create --assignee {endpoint.principal_id} "
        '--role "Azure Machine Learning Workspace Connection Secrets Reader" --scope /projects/default'
    )
    page.locator("#assign").click()
    page.wait_for_url(f"{live_server.url}/projects/default/access/")
    assignment = RoleAssignment.objects.get(principal_id=endpoint.principal_id)
    assert "Granted" in page.locator("#endpoint-identities").inner_text()

    page.locator(f"#assignment-{assignment.pk}").get_by_role("button", name="Remove").click()
    page.wait_for_selector("text=Removed:")
    assert not RoleAssignment.objects.exists()
