"""An endpoint's own page: an endpoint without deployments has its details, keys, an empty traffic, Delete
endpoint and "Deploy a flow to it", which opens the wizard with the endpoint chosen."""

import pytest
from roles import member

from endpoints import services
from endpoints.models import AuthType, Endpoint
from wizard.models import DeploymentDraft

pytestmark = pytest.mark.django_db


@pytest.fixture
def empty_endpoint(redis_url):
    return services.create_endpoint("ep-empty", tags={"team": "search"})


def test_it_shows_an_endpoint_without_deployments(admin_client, empty_endpoint, settings):
    response = admin_client.get("/endpoints/ep-empty/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>ep-empty</h1>" in html
    assert f"{settings.FLOWDEPLOY_GATEWAY_URL}/endpoints/ep-empty/score" in html
    assert "Key-based authentication" in html
    assert "team: search" in html
    assert "No deployments: the endpoint's traffic is empty." in html
    assert 'href="/deployments/new/?endpoint=ep-empty">Deploy a flow to it</a>' in html
    assert 'href="/endpoints/ep-empty/delete/">Delete endpoint</a>' in html
    # keys: masked, revealed on demand, never in the page
    assert 'hx-get="/endpoints/ep-empty/keys/primary/"' in html
    assert 'data-copy-url="/endpoints/ep-empty/keys/secondary/"' in html
    for key in services.credentials(empty_endpoint).values():
        assert key not in html


def test_it_lists_the_endpoints_deployments_and_their_traffic(
    admin_client, empty_endpoint, import_flow, django_capture_on_commit_callbacks
):
    version = import_flow("web-classification-offline")
    with django_capture_on_commit_callbacks(execute=False):
        services.create_or_update_deployment(empty_endpoint, "blue", version, vm_size="Standard_DS1_v2")
    Endpoint.objects.filter(pk=empty_endpoint.pk).update(traffic={"blue": 100})
    html = admin_client.get("/endpoints/ep-empty/").content.decode()
    assert '<a href="/deployments/ep-empty/blue/">blue</a>' in html
    assert "<td>100%</td>" in html
    assert "No deployments" not in html


def test_it_is_linked_from_the_list_and_the_deployment_pages(admin_client, empty_endpoint):
    html = admin_client.get("/deployments/").content.decode()
    assert '<a href="/endpoints/ep-empty/">ep-empty</a>' in html
    assert "open the endpoint</a> to deploy a flow to it or delete it" in html


def test_it_offers_a_token_for_a_token_based_endpoint_even_without_javascript(admin_client, redis_url):
    services.create_endpoint("ep-token-empty", auth_type=AuthType.TOKEN)
    html = admin_client.get("/endpoints/ep-token-empty/").content.decode()
    assert ">Get token</button>" in html
    response = admin_client.post("/endpoints/ep-token-empty/token/")
    assert response.status_code == 200
    assert 'id="token-value"' in response.content.decode()


def test_it_hides_keys_and_actions_from_users_without_rights(viewer_client, empty_endpoint):
    html = viewer_client.get("/endpoints/ep-empty/").content.decode()
    assert "Deploy a flow to it" not in html
    assert "Delete endpoint" not in html
    assert "Keys are shown to Contributors and Owners." in html


def test_it_returns_a_regenerated_key_to_the_endpoint_page(admin_client, empty_endpoint):
    response = admin_client.post("/endpoints/ep-empty/keys/primary/regenerate/")
    assert response["Location"] == "/endpoints/ep-empty/"


def test_it_confirms_the_delete_and_cancels_back_to_the_endpoint_page(
    admin_client, empty_endpoint, django_capture_on_commit_callbacks
):
    html = admin_client.get("/endpoints/ep-empty/delete/").content.decode()
    assert "Delete endpoint ep-empty and everything deployed to it?" in html
    assert '<a href="/endpoints/ep-empty/" class="button">Cancel</a>' in html
    with django_capture_on_commit_callbacks(execute=False):
        assert admin_client.post("/endpoints/ep-empty/delete/")["Location"] == "/deployments/"
    page = admin_client.get("/endpoints/ep-empty/").content.decode()
    assert '<span class="badge deleting" id="endpoint-state">Deleting</span>' in page
    assert 'hx-trigger="every 2s"' in page
    assert "Deploy a flow to it" not in page
    Endpoint.objects.filter(pk=empty_endpoint.pk).delete()
    gone = admin_client.get("/endpoints/ep-empty/", HTTP_HX_REQUEST="true")
    assert gone["HX-Redirect"] == "/deployments/"


def test_it_deploys_a_flow_to_the_endpoint_with_existing_endpoint_chosen(
    client, django_user_model, empty_endpoint, import_flow
):
    user = member(django_user_model.objects.create_user("deployer", password="deployer-pass-1"), "contributor")
    client.force_login(user)
    version = import_flow("web-classification-offline")
    choose = client.get("/deployments/new/", {"endpoint": "ep-empty"}).content.decode()
    assert "Deploy a flow to ep-empty" in choose
    assert f'name="flow_version" value="{version.pk}"' in choose
    assert '<input type="hidden" name="endpoint" value="ep-empty">' in choose
    response = client.post("/deployments/new/", {"flow_version": version.pk, "endpoint": "ep-empty"})
    draft = DeploymentDraft.objects.get()
    assert response["Location"] == draft.step_url("basic")
    basic = client.get(draft.step_url("basic")).content.decode()
    assert (
        '<input type="radio" name="endpoint_mode" value="existing" id="id_endpoint_mode_1" required checked>' in basic
    )
    assert '<option value="ep-empty" selected>ep-empty</option>' in basic
