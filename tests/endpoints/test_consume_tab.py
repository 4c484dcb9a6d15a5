"""A deployment's Consume tab: the REST endpoint and code samples for everyone who may see the deployment;
keys (revealed one at a time, regenerated after a confirmation) and tokens only for Contributors and Owners
of the endpoint's project."""

import re
import time
from datetime import UTC, datetime

import pytest
from roles import member

from django.urls import reverse

from endpoints import services
from endpoints.models import AuthType
from serving import auth
from workspace.models import Notification, ProjectRole

pytestmark = pytest.mark.django_db

CONSUME = "/deployments/ep-consume/blue/consume/"
PRIMARY = "/endpoints/ep-consume/keys/primary/"
REGENERATE_PRIMARY = "/endpoints/ep-consume/keys/primary/regenerate/"


@pytest.fixture
def flow_version(import_flow):
    return import_flow("web-classification-offline")


def _deployment(flow_version, endpoint_name, auth_type=AuthType.KEY):
    endpoint = services.create_endpoint(endpoint_name, auth_type=auth_type)
    return services.create_or_update_deployment(endpoint, "blue", flow_version, vm_size="Standard_DS1_v2")


@pytest.fixture
def deployment(flow_version, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):  # no provisioning: the pages only read rows
        return _deployment(flow_version, "ep-consume")


@pytest.fixture
def token_deployment(flow_version, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return _deployment(flow_version, "ep-consume-token", AuthType.TOKEN)


@pytest.fixture
def operator(django_user_model):
    """A Contributor of the default project: may read and regenerate keys."""
    user = django_user_model.objects.create_user("operator", password="operator-pass-1")
    return member(user, ProjectRole.CONTRIBUTOR)


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


def _keys(deployment) -> dict[str, str]:
    deployment.endpoint.refresh_from_db()
    return services.credentials(deployment.endpoint)


def test_it_shows_the_rest_endpoint_and_samples_but_not_the_keys(operator_client, deployment, settings):
    response = operator_client.get(CONSUME)
    assert response.status_code == 200
    assert "endpoints/deployment_consume.html" in [t.name for t in response.templates]
    html = response.content.decode()
    assert f"{settings.FLOWDEPLOY_GATEWAY_URL}/endpoints/ep-consume/score" in html
    assert f"{settings.FLOWDEPLOY_GATEWAY_URL}/endpoints/ep-consume/swagger.json" in html
    assert "Key-based authentication" in html
    assert 'aria-current="page">Consume</a>' in html
    for label in ("Primary key", "Secondary key"):
        assert f"<dt>{label}</dt>" in html
        assert f'aria-label="Show {label.lower()}"' in html
        assert f'aria-label="Regenerate {label.lower()}"' in html
    assert f'hx-get="{PRIMARY}"' in html
    assert f'data-copy-url="{PRIMARY}"' in html
    for key in _keys(deployment).values():
        assert key not in html
    for label in ("Python", "Python (requests)", "JavaScript", "C#", "curl", "R"):
        assert f">{label}</label>" in html
    assert html.count('<div class="highlight"><pre>') == 6
    assert "<code>location</code>, <code>url</code>" in html  # the flow's inputs, named
    assert "/static/endpoints/consume.js" in html


def test_it_shows_other_users_the_url_and_samples_without_keys(viewer_client, deployment, settings):
    html = viewer_client.get(CONSUME).content.decode()
    assert f"{settings.FLOWDEPLOY_GATEWAY_URL}/endpoints/ep-consume/score" in html
    assert html.count('<div class="highlight"><pre>') == 6
    assert "Keys are shown to Contributors and Owners." in html
    assert "Regenerate" not in html
    assert PRIMARY not in html
    for key in _keys(deployment).values():
        assert key not in html


def test_it_reveals_one_key_in_place(operator_client, deployment):
    key = _keys(deployment)["primaryKey"]
    response = operator_client.get(PRIMARY, HTTP_HX_REQUEST="true")
    fragment = response.content.decode().strip()
    assert fragment.startswith('<span class="secret" id="primary-key">')
    assert f'<code class="secret-value" aria-label="Primary key">{key}</code>' in fragment
    assert 'aria-label="Hide primary key"' in fragment
    assert _keys(deployment)["secondaryKey"] not in fragment
    assert "no-store" in response["Cache-Control"]


def test_it_masks_the_key_again_on_hide(operator_client, deployment):
    fragment = operator_client.get(f"{PRIMARY}?hide=1", HTTP_HX_REQUEST="true").content.decode()
    assert '<code class="masked"' in fragment
    assert 'aria-label="Show primary key"' in fragment
    assert _keys(deployment)["primaryKey"] not in fragment


def test_it_answers_the_bare_key_to_copy(operator_client, deployment):
    """What Copy fetches (and what the Show link opens without JavaScript): the key as plain text."""
    response = operator_client.get("/endpoints/ep-consume/keys/secondary/")
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == _keys(deployment)["secondaryKey"]
    assert "no-store" in response["Cache-Control"]


def test_it_refuses_keys_and_tokens_to_users_who_may_not_change_the_endpoint(
    viewer_client, deployment, token_deployment
):
    before = _keys(deployment)
    assert viewer_client.get(PRIMARY).status_code == 403
    assert viewer_client.get(PRIMARY, HTTP_HX_REQUEST="true").status_code == 403
    assert viewer_client.get(REGENERATE_PRIMARY).status_code == 403
    assert viewer_client.post(REGENERATE_PRIMARY).status_code == 403
    assert viewer_client.post("/endpoints/ep-consume-token/token/").status_code == 403
    assert _keys(deployment) == before


def test_it_requires_sign_in(client, deployment):
    login = reverse("login")
    for url in (CONSUME, PRIMARY, REGENERATE_PRIMARY):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == f"{login}?next={url}"


def test_it_answers_404_for_an_unknown_key_or_endpoint(operator_client, deployment):
    assert operator_client.get("/endpoints/ep-consume/keys/tertiary/").status_code == 404
    assert operator_client.get("/endpoints/ep-consume/keys/tertiary/regenerate/").status_code == 404
    assert operator_client.get("/endpoints/nope/keys/primary/").status_code == 404
    assert operator_client.get("/deployments/ep-consume/green/consume/").status_code == 404


def test_it_names_what_regenerating_a_key_loses(operator_client, deployment):
    before = _keys(deployment)
    response = operator_client.get(f"{REGENERATE_PRIMARY}?next={CONSUME}")
    assert response.status_code == 200
    assert response.templates[0].name == "endpoints/confirm.html"
    html = response.content.decode()
    assert "Regenerate the primary key of endpoint ep-consume?" in html
    assert "The current primary key: every client that sends it gets 401 Unauthorized within a second" in html
    assert f'<form method="post" action="{REGENERATE_PRIMARY}"' in html
    assert f'<input type="hidden" name="next" value="{CONSUME}">' in html
    assert '<button type="submit" class="danger">Regenerate primary key</button>' in html
    assert f'<a href="{CONSUME}" class="button">Cancel</a>' in html
    assert _keys(deployment) == before


def test_it_regenerates_the_key_and_notifies_the_user(operator_client, operator, deployment, redis_url):
    before = _keys(deployment)
    response = operator_client.post(REGENERATE_PRIMARY, {"next": CONSUME})
    assert response.status_code == 302
    assert response["Location"] == CONSUME
    after = _keys(deployment)
    assert after["primaryKey"] != before["primaryKey"]
    assert after["secondaryKey"] == before["secondaryKey"]

    note = Notification.objects.get(user=operator)
    assert note.title == "Keys regenerated"
    assert "primary key of endpoint ep-consume" in note.body
    assert note.link == CONSUME
    html = operator_client.get(CONSUME).content.decode()
    assert "The primary key of endpoint ep-consume was regenerated." in html
    assert after["primaryKey"] not in html


def test_it_returns_to_the_consume_tab_rather_than_another_site(operator_client, deployment, redis_url):
    before = _keys(deployment)["secondaryKey"]
    response = operator_client.post(
        "/endpoints/ep-consume/keys/secondary/regenerate/", {"next": "https://elsewhere.example/steal"}
    )
    assert response.status_code == 302
    assert response["Location"] == CONSUME
    assert _keys(deployment)["secondaryKey"] != before


def test_it_offers_a_token_on_a_token_based_endpoint(operator_client, token_deployment):
    html = operator_client.get("/deployments/ep-consume-token/blue/consume/").content.decode()
    assert "Token-based authentication" in html
    assert 'hx-post="/endpoints/ep-consume-token/token/"' in html
    assert ">Get token</button>" in html
    assert "Primary key" not in html
    assert "&lt;your-api-token&gt;" in html
    assert operator_client.get("/endpoints/ep-consume-token/keys/primary/").status_code == 404
    assert operator_client.post("/endpoints/ep-consume-token/keys/primary/regenerate/").status_code == 404


def test_it_issues_a_token_with_its_expiry(operator_client, token_deployment, settings):
    """The token is valid for this endpoint; it expires in an hour and should be refreshed after half that."""
    started = int(time.time())
    response = operator_client.post("/endpoints/ep-consume-token/token/", HTTP_HX_REQUEST="true")
    finished = int(time.time())
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    fragment = response.content.decode().strip()
    assert fragment.startswith('<div id="token">')
    token = re.search(r'id="token-value" hidden>([^<]+)<', fragment).group(1)
    signing_key = auth.signing_key(settings.FLOWDEPLOY_SECRET_KEY or settings.SECRET_KEY)
    assert auth.token_endpoint(token, signing_key) == "ep-consume-token"

    times = dict(re.findall(r'<time id="token-(expiry|refresh)" datetime="([^"]+)">', fragment))
    expiry = datetime.fromisoformat(times["expiry"]).timestamp()
    refresh = datetime.fromisoformat(times["refresh"]).timestamp()
    assert started + auth.TOKEN_LIFETIME <= expiry <= finished + auth.TOKEN_LIFETIME
    assert expiry - refresh == auth.TOKEN_LIFETIME - auth.TOKEN_REFRESH_AFTER
    shown = datetime.fromtimestamp(expiry, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert f">{shown}</time>" in fragment
    assert "Expires (UTC)" in fragment and "Refresh after (UTC)" in fragment


def test_it_shows_the_token_in_the_page_without_javascript(operator_client, token_deployment):
    response = operator_client.post("/endpoints/ep-consume-token/token/", {"deployment": "blue"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" in html
    assert 'href="/deployments/ep-consume-token/blue/consume/" class="active" aria-current="page"' in html
    assert 'id="token-value" hidden>' in html
    assert "Expires (UTC)" in html


def test_it_issues_no_token_for_a_key_based_endpoint(operator_client, deployment):
    assert operator_client.post("/endpoints/ep-consume/token/").status_code == 404
    assert operator_client.get("/endpoints/ep-consume/token/").status_code == 405
