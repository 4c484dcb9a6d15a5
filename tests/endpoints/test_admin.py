"""The Django admin cannot create, delete or reshape endpoints and deployments behind the services' back:
it shows them; an endpoint's description and tags are edited through services.update_endpoint."""

import pytest

from endpoints import services
from endpoints.models import Deployment, DeploymentState, Endpoint
from workspace.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployment(import_flow, redis_url, django_capture_on_commit_callbacks):
    version = import_flow("web-classification-offline")
    with django_capture_on_commit_callbacks(execute=False):
        endpoint = services.create_endpoint("ep-admin")
        return services.create_or_update_deployment(endpoint, "blue", version, vm_size="Standard_DS1_v2")


def test_it_offers_no_add_for_endpoints_deployments_instances_or_events(admin_client, deployment):
    for model in ("endpoint", "deployment", "instance", "deploymentevent"):
        assert admin_client.get(f"/admin/endpoints/{model}/add/").status_code == 403, model
    listing = admin_client.get("/admin/endpoints/deployment/").content.decode()
    assert "/admin/endpoints/deployment/add/" not in listing


def test_it_shows_a_deployment_read_only(admin_client, deployment):
    url = f"/admin/endpoints/deployment/{deployment.pk}/change/"
    html = admin_client.get(url).content.decode()
    assert 'name="instance_count"' not in html
    assert 'name="state"' not in html
    response = admin_client.post(url, {"name": "blue", "instance_count": "5", "state": "Succeeded"})
    assert response.status_code == 403
    deployment.refresh_from_db()
    assert (deployment.instance_count, deployment.state) == (1, DeploymentState.CREATING)
    assert admin_client.post(f"/admin/endpoints/deployment/{deployment.pk}/delete/").status_code == 403
    assert Deployment.objects.filter(pk=deployment.pk).exists()


def test_it_edits_only_an_endpoints_description_and_tags_through_the_service(admin_client, deployment):
    url = f"/admin/endpoints/endpoint/{deployment.endpoint_id}/change/"
    html = admin_client.get(url).content.decode()
    assert 'name="tags"' in html and 'name="description"' in html
    assert 'name="name"' not in html and 'name="auth_type"' not in html
    inline = {"deployments-TOTAL_FORMS": "1", "deployments-INITIAL_FORMS": "1"}  # the read-only inline's
    response = admin_client.post(
        url, {**inline, "description": "Search", "tags": '{"team": "search"}', "name": "ep-other"}
    )
    assert response.status_code == 302
    endpoint = Endpoint.objects.get(pk=deployment.endpoint_id)
    assert (endpoint.name, endpoint.description, endpoint.tags) == ("ep-admin", "Search", {"team": "search"})
    assert AuditEvent.objects.filter(action="endpoint.update", target="ep-admin").exists()
    refused = admin_client.post(url, {**inline, "description": "", "tags": '["not", "pairs"]'})
    assert refused.status_code == 200
    assert "Tags must be key-value pairs with non-empty keys." in refused.content.decode()
    assert admin_client.post(f"/admin/endpoints/endpoint/{deployment.endpoint_id}/delete/").status_code == 403
