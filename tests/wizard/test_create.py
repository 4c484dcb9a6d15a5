"""Review + Create: the skip to Review, creation through the services, the double-submit guard,
stale drafts, permissions, draft ownership and expiry."""

from datetime import timedelta

import pytest
from roles import member

from endpoints import services
from endpoints.models import Deployment, DeploymentState, Endpoint
from wizard.models import DeploymentDraft
from workspace.models import ManagedIdentity, Notification, ProjectRole

pytestmark = pytest.mark.django_db

BASIC = {
    "endpoint_mode": "new",
    "endpoint_name": "ep-wizard",
    "existing_endpoint": "",
    "deployment_name": "blue",
    "vm_size": "Standard_DS1_v2",
    "instance_count": "1",
}


def _basic(client, draft, **changes):
    response = client.post(draft.step_url("basic"), {**BASIC, "go": "review", **changes})
    assert response.status_code == 302, response.content.decode()
    assert response["Location"] == draft.step_url("review")
    return response


def test_it_goes_from_basic_settings_straight_to_review_with_defaults(deployer_client, draft):
    _basic(deployer_client, draft)
    html = deployer_client.get(draft.step_url("review")).content.decode()
    assert "ep-wizard" in html
    assert "Key-based authentication" in html
    assert "System-assigned" in html
    assert "90000" in html
    assert "category, evidence, location" in html
    assert "For high availability, we recommend that you set the value to at least 3" in html
    for step in ("basic", "endpoint", "deployment", "outputs"):
        assert f'href="{draft.step_url(step)}">Edit</a>' in html
    assert ">Create</button>" in html


def test_it_creates_the_endpoint_and_deployment_and_notifies(
    deployer_client, deployer, draft, django_capture_on_commit_callbacks
):
    _basic(deployer_client, draft, data_collection="on")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = deployer_client.post(draft.step_url("review"))
    assert response.status_code == 302
    assert response["Location"] == "/deployments/ep-wizard/blue/"
    assert callbacks  # provisioning (and publishing) dispatched on commit
    endpoint = Endpoint.objects.get()
    assert endpoint.name == "ep-wizard"
    assert endpoint.created_by == deployer
    deployment = Deployment.objects.get()
    assert (deployment.vm_size, deployment.instance_count, deployment.data_collection) == ("Standard_DS1_v2", 1, True)
    assert deployment.selected_outputs == ["category", "evidence", "location"]
    assert deployment.state == DeploymentState.CREATING
    notification = Notification.objects.get(user=deployer)
    assert notification.title == "Prompt flow deployment"
    assert notification.link == "/deployments/ep-wizard/blue/"
    draft.refresh_from_db()
    assert draft.deployment == deployment


def test_it_creates_with_the_advanced_settings(deployer_client, draft, django_capture_on_commit_callbacks):
    _basic(deployer_client, draft)
    ManagedIdentity.objects.create(project=draft.flow_version.flow.project, name="id-x")
    deployer_client.post(
        draft.step_url("endpoint"),
        {"auth_type": "aml_token", "identity_type": "user_assigned", "user_assigned_identity": "id-x", "tags": "a=1"},
    )
    deployer_client.post(
        draft.step_url("deployment"),
        {
            "tags": "b=2",
            "request_timeout_ms": "5000",
            "max_concurrent_requests_per_instance": "3",
            "app_insights_enabled": "on",
        },
    )
    deployer_client.post(draft.step_url("outputs"), {"selected_outputs": ["category"]})
    assert 'id="review-app-insights">Enabled' in deployer_client.get(draft.step_url("review")).content.decode()
    with django_capture_on_commit_callbacks(execute=False):
        deployer_client.post(draft.step_url("review"))
    endpoint = Endpoint.objects.get()
    assert (endpoint.auth_type, endpoint.identity_type, endpoint.user_assigned_identity.name) == (
        "aml_token",
        "user_assigned",
        "id-x",
    )
    assert endpoint.enforce_access_to_connection_secrets is False
    assert endpoint.tags == {"a": "1"}
    deployment = Deployment.objects.get()
    assert deployment.tags == {"b": "2"}
    assert (deployment.request_timeout_ms, deployment.max_concurrent_requests_per_instance) == (5000, 3)
    assert deployment.app_insights_enabled is True  # instances export their spans (tests/monitoring/test_tracing.py)
    assert deployment.selected_outputs == ["category"]


def test_it_offers_application_insights_diagnostics_off_by_default(deployer_client, draft):
    """Tracing costs a few milliseconds a request (docs/performance.md): off unless asked for."""
    _basic(deployer_client, draft)
    page = deployer_client.get(draft.step_url("deployment")).content.decode()
    assert "Application Insights diagnostics" in page
    assert 'name="app_insights_enabled"' in page and "checked" not in page.split('name="app_insights_enabled"')[1][:40]


def test_it_saves_the_data_collection_policy_with_the_deployment(
    deployer_client, draft, django_capture_on_commit_callbacks
):
    from monitoring.services import policy_for

    _basic(deployer_client, draft, data_collection="on", sampling_percent="25", retention_days="7")
    review = deployer_client.get(draft.step_url("review")).content.decode()
    assert "On: 25% of requests, kept 7 days" in review
    with django_capture_on_commit_callbacks(execute=False):
        deployer_client.post(draft.step_url("review"))
    deployment = Deployment.objects.get()
    assert deployment.data_collection is True
    policy = policy_for("ep-wizard", "blue")
    assert (policy.sampling_percent, policy.retention_days) == (25, 7)


def test_it_refuses_a_sampling_rate_out_of_range_beside_its_field(deployer_client, draft):
    response = deployer_client.post(
        draft.step_url("basic"),
        {**BASIC, "go": "review", "data_collection": "on", "sampling_percent": "0", "retention_days": "0"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Sampling rate must be a percentage from 0.01 to 100." in page
    assert "Retention must be a whole number of days from 1 to 3650." in page


def test_it_creates_only_once_on_a_double_submit(deployer_client, draft, django_capture_on_commit_callbacks):
    _basic(deployer_client, draft)
    with django_capture_on_commit_callbacks(execute=False):
        first = deployer_client.post(draft.step_url("review"))
        second = deployer_client.post(draft.step_url("review"))
    assert first["Location"] == second["Location"] == "/deployments/ep-wizard/blue/"
    assert Deployment.objects.count() == 1
    assert Notification.objects.count() == 1


def test_it_sends_a_stale_draft_back_to_the_step_to_fix(deployer_client, draft, django_capture_on_commit_callbacks):
    _basic(deployer_client, draft)
    services.create_endpoint("ep-wizard")  # someone else took the name meanwhile
    with django_capture_on_commit_callbacks(execute=False):
        response = deployer_client.post(draft.step_url("review"), follow=True)
    assert response.redirect_chain[-1][0] == draft.step_url("basic")
    html = response.content.decode()
    assert "Endpoint name: Endpoint name ep-wizard is already taken. Nothing was created" in html
    assert html.count("Endpoint name ep-wizard is already taken.") >= 2  # the message and the field error
    assert Deployment.objects.count() == 0
    assert Endpoint.objects.count() == 1


def test_it_sends_a_newly_needed_overwrite_confirmation_back_to_basic(
    deployer_client, draft, flow_version, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        endpoint = services.create_endpoint("ep-existing")
    _basic(deployer_client, draft, endpoint_mode="existing", existing_endpoint="ep-existing")
    with django_capture_on_commit_callbacks(execute=False):
        other = services.create_or_update_deployment(endpoint, "blue", flow_version, vm_size="Standard_DS1_v2")
    Deployment.objects.filter(pk=other.pk).update(state=DeploymentState.SUCCEEDED)
    response = deployer_client.post(draft.step_url("review"))
    assert response["Location"] == draft.step_url("basic")
    assert Deployment.objects.get().generation == 1  # nothing was overwritten


def test_it_adds_a_deployment_to_an_existing_endpoint(
    deployer_client, draft, flow_version, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        endpoint = services.create_endpoint("ep-existing")
        services.create_or_update_deployment(endpoint, "blue", flow_version, vm_size="Standard_DS1_v2")
    _basic(deployer_client, draft, endpoint_mode="existing", existing_endpoint="ep-existing", deployment_name="green")
    with django_capture_on_commit_callbacks(execute=False):
        response = deployer_client.post(draft.step_url("review"))
    assert response["Location"] == "/deployments/ep-existing/green/"
    assert Endpoint.objects.count() == 1
    assert sorted(endpoint.deployments.values_list("name", flat=True)) == ["blue", "green"]


def test_it_overwrites_a_confirmed_existing_deployment(
    deployer_client, draft, flow_version, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        endpoint = services.create_endpoint("ep-existing")
        blue = services.create_or_update_deployment(endpoint, "blue", flow_version, vm_size="Standard_DS1_v2")
    Deployment.objects.filter(pk=blue.pk).update(state=DeploymentState.SUCCEEDED)
    _basic(
        deployer_client,
        draft,
        endpoint_mode="existing",
        existing_endpoint="ep-existing",
        confirm_overwrite="on",
        instance_count="2",
    )
    with django_capture_on_commit_callbacks(execute=False):
        response = deployer_client.post(draft.step_url("review"))
    assert response["Location"] == "/deployments/ep-existing/blue/"
    blue.refresh_from_db()
    assert (blue.generation, blue.state, blue.instance_count) == (2, DeploymentState.UPDATING, 2)


def test_it_refuses_the_wizard_to_a_reader(client, django_user_model, flow_version, draft):
    viewer = django_user_model.objects.create_user("viewer", password="viewer-pass-1", is_staff=True)
    client.force_login(member(viewer, ProjectRole.READER))
    assert client.post("/deployments/new/", {"flow_version": flow_version.pk}).status_code == 403
    for step in ("basic", "endpoint", "deployment", "outputs", "review"):
        assert client.get(draft.step_url(step)).status_code == 403
    assert client.post(draft.step_url("review")).status_code == 403
    page = client.get(flow_version.get_absolute_url()).content.decode()
    assert ">Deploy</button>" not in page


def test_it_shows_deploy_on_the_flow_page_and_the_bulk_run(deployer_client, flow_version):
    from flows.models import BulkRun

    page = deployer_client.get(flow_version.get_absolute_url()).content.decode()
    assert ">Deploy</button>" in page
    assert f'name="flow_version" value="{flow_version.pk}"' in page
    run = BulkRun.objects.create(flow_version=flow_version, name="run", data_file_name="data.jsonl")
    page = deployer_client.get(f"/flows/bulk-runs/{run.pk}/").content.decode()
    assert ">Deploy</button>" in page
    assert f'name="flow_version" value="{flow_version.pk}"' in page


def test_it_keeps_drafts_to_their_owner(client, django_user_model, draft):
    other = django_user_model.objects.create_user("other", password="other-pass-1")
    client.force_login(member(other, ProjectRole.CONTRIBUTOR))
    assert client.get(draft.step_url("basic")).status_code == 404
    assert client.post(draft.step_url("review")).status_code == 404


def test_it_expires_abandoned_drafts(deployer_client, draft, flow_version):
    DeploymentDraft.objects.filter(pk=draft.pk).update(updated_at=draft.updated_at - timedelta(days=8))
    assert deployer_client.get(draft.step_url("basic")).status_code == 404
    deployer_client.post("/deployments/new/", {"flow_version": flow_version.pk})
    assert not DeploymentDraft.objects.filter(pk=draft.pk).exists()
    assert DeploymentDraft.objects.count() == 1


def test_it_leads_a_used_draft_to_its_deployment(deployer_client, draft, django_capture_on_commit_callbacks):
    _basic(deployer_client, draft)
    with django_capture_on_commit_callbacks(execute=False):
        deployer_client.post(draft.step_url("review"))
    response = deployer_client.get(draft.step_url("basic"))
    assert response["Location"] == "/deployments/ep-wizard/blue/"


def test_it_answers_404_for_an_unknown_flow_version(deployer_client):
    assert deployer_client.post("/deployments/new/", {"flow_version": "nope"}).status_code == 404
    assert deployer_client.post("/deployments/new/", {"flow_version": "999"}).status_code == 404
    assert deployer_client.put("/deployments/new/").status_code == 405


def test_it_lists_the_flows_to_deploy_when_opened_without_one(deployer_client, flow_version):
    html = deployer_client.get("/deployments/new/").content.decode()
    assert "<h1>Deploy a flow</h1>" in html
    assert f'name="flow_version" value="{flow_version.pk}"' in html
    assert 'name="endpoint"' not in html


def test_review_warns_what_a_user_assigned_identity_lacks_before_create(deployer_client, draft):
    _basic(deployer_client, draft)
    ManagedIdentity.objects.create(project=draft.flow_version.flow.project, name="id-bare")
    deployer_client.post(
        draft.step_url("endpoint"),
        {"auth_type": "key", "identity_type": "user_assigned", "user_assigned_identity": "id-bare", "go": "review"},
    )

    html = deployer_client.get(draft.step_url("review")).content.decode()

    assert "lacks &#x27;AcrPull&#x27; on the environment registry of project &#x27;default&#x27;" in html
    assert "lacks &#x27;Storage Blob Data Reader&#x27;" in html
    assert "An Owner can grant it at /projects/default/access/." in html
