"""The deployments list and a deployment's page: state, events, scoring URL, polling only while busy."""

import pytest

from endpoints import services
from endpoints.models import Deployment, DeploymentState

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployment(flow_version, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        endpoint = services.create_endpoint("ep-pages")
        return services.create_or_update_deployment(endpoint, "blue", flow_version, vm_size="Standard_DS1_v2")


def test_it_lists_endpoints_and_their_deployments(deployer_client, deployment):
    html = deployer_client.get("/deployments/").content.decode()
    assert "ep-pages" in html
    assert 'href="/deployments/ep-pages/blue/"' in html
    assert '<span class="badge creating">Creating</span>' in html


def test_it_polls_while_the_deployment_is_being_created(deployer_client, deployment, settings):
    response = deployer_client.get("/deployments/ep-pages/blue/")
    html = response.content.decode()
    assert 'hx-trigger="every 1s"' in html
    assert f"{settings.FLOWDEPLOY_GATEWAY_URL}/endpoints/ep-pages/score" in html
    assert "provisioning is queued" in html
    fragment = deployer_client.get("/deployments/ep-pages/blue/", HTTP_HX_REQUEST="true").content.decode()
    assert fragment.strip().startswith('<div id="status"')
    assert "<html" not in fragment


def test_it_stops_polling_when_final_and_shows_the_failure_reason(deployer_client, deployment):
    Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.FAILED, failure_reason="Out of luck.")
    fragment = deployer_client.get("/deployments/ep-pages/blue/", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in fragment
    assert 'data-state="Failed"' in fragment
    assert "Out of luck." in fragment


def test_it_shows_no_keys(deployer_client, deployment):
    html = deployer_client.get("/deployments/ep-pages/blue/").content.decode()
    for key in services.credentials(deployment.endpoint).values():
        assert key not in html


def test_it_answers_404_for_an_unknown_deployment(deployer_client):
    assert deployer_client.get("/deployments/nope/blue/").status_code == 404
