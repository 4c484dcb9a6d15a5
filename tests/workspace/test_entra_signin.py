"""Sign in with Microsoft, end to end against an OpenID Connect provider on loopback over HTTPS."""

from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from oidc_provider import TENANT, OIDCProvider

from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.urls import reverse

from workspace import audit
from workspace.models import AuditEvent, EntraAccount, Membership, Project, ProjectRole
from workspace.signin_views import NO_PROJECT

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider(tmp_path, settings, monkeypatch):
    """The provider, and the studio configured to use it (trusting its test CA)."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    oidc = OIDCProvider(tmp_path).start()
    settings.FLOWDEPLOY_ENTRA_TENANT_ID = TENANT
    settings.FLOWDEPLOY_ENTRA_CLIENT_ID = oidc.client_id
    settings.FLOWDEPLOY_ENTRA_CLIENT_SECRET = oidc.client_secret
    settings.FLOWDEPLOY_ENTRA_AUTHORITY = oidc.authority
    settings.FLOWDEPLOY_ENTRA_CA_BUNDLE = str(oidc.ca_file)
    yield oidc
    oidc.stop()


def go_to_provider(client, provider, next_url=None):
    """Start the sign-in in the studio and let the provider sign the user in: where it sends the browser back."""
    start = client.get(reverse("workspace:entra_start"), {"next": next_url} if next_url else {})
    assert start.status_code == 302, start
    assert start["Location"].startswith(provider.base)
    authorize = requests.get(start["Location"], verify=str(provider.ca_file), allow_redirects=False, timeout=10)
    assert authorize.status_code == 302, authorize.text
    return urlsplit(authorize.headers["Location"])


def come_back(client, back, **changes):
    query = dict(parse_qsl(back.query))
    query.update(changes)
    return client.get(back.path, query)


def sign_in(client, provider, next_url=None):
    return come_back(client, go_to_provider(client, provider, next_url))


def signed_in_user(client):
    user_id = client.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=user_id) if user_id else None


def test_it_signs_in_and_creates_the_user_by_object_id(client, provider):
    """The first sign-in creates a local user named after preferred_username, linked by the oid claim,
    with no project membership, and says so on the page the user lands on."""
    response = sign_in(client, provider)
    assert response.status_code == 302 and response["Location"] == reverse("flows:list")
    user = signed_in_user(client)
    assert user is not None and user.username == "ada@contoso.example"
    assert not user.has_usable_password()
    account = EntraAccount.objects.get(user=user)
    assert (account.object_id, account.tenant_id) == ("oid-0001", TENANT)
    assert account.last_sign_in is not None
    assert not Membership.objects.filter(user=user).exists()
    assert NO_PROJECT in [str(m) for m in get_messages(response.wsgi_request)]
    event = AuditEvent.objects.get(action=audit.SIGN_IN)
    assert (event.actor, event.detail["method"], event.source) == (user, "entra", "127.0.0.1")
    # PKCE: the studio sent the verifier it made, and the provider checked it against the challenge.
    assert provider.token_requests[0]["code_verifier"]


def test_it_shows_the_no_project_message_on_the_landing_page(client, provider):
    """The page after the first sign-in tells the user to ask an Owner to add them."""
    response = sign_in(client, provider)
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "not a member of any project yet" in page.content.decode()


def test_it_matches_the_same_user_on_the_next_sign_in_by_object_id(client, provider):
    """A changed preferred_username does not make a second user: the object id decides."""
    sign_in(client, provider)
    first = signed_in_user(client)
    client.post(reverse("logout"))
    assert signed_in_user(client) is None
    provider.user = {**provider.user, "preferred_username": "ada.lovelace@contoso.example"}
    sign_in(client, provider)
    assert signed_in_user(client) == first
    assert get_user_model().objects.count() == 1 and EntraAccount.objects.count() == 1
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        audit.SIGN_IN,
        audit.SIGN_OUT,
        audit.SIGN_IN,
    ]


def test_it_does_not_sign_in_as_a_local_user_with_the_same_name(client, provider, django_user_model):
    """A local account named like the Entra user stays separate; the new user gets a unique name."""
    local = django_user_model.objects.create_user("ada@contoso.example", password="pw-local-123")
    sign_in(client, provider)
    user = signed_in_user(client)
    assert user != local and user.username == "ada@contoso.example-2"


def test_it_keeps_memberships_an_owner_gave(client, provider, django_user_model):
    """After an Owner adds the user to a project, the next sign-in shows no "not a member" message."""
    landing = sign_in(client, provider)
    client.get(landing["Location"])  # shows (and so uses up) the first sign-in's message
    user = signed_in_user(client)
    Membership.objects.create(user=user, project=Project.default(), role=ProjectRole.READER)
    client.post(reverse("logout"))
    response = sign_in(client, provider, next_url="/connections/")
    assert response["Location"] == "/connections/"
    assert NO_PROJECT not in [str(m) for m in get_messages(response.wsgi_request)]


def test_it_refuses_a_forged_state(client, provider):
    """An answer whose state is not the one this browser's sign-in made is refused before the code is used."""
    back = go_to_provider(client, provider)
    response = come_back(client, back, state="forged-state")
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert signed_in_user(client) is None
    assert not EntraAccount.objects.exists()
    assert provider.token_requests == []
    assert "(state)" in " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert AuditEvent.objects.filter(action=audit.SIGN_IN_FAILED, detail__method="entra").exists()


def test_it_refuses_a_wrong_nonce(client, provider):
    """An ID token carrying another sign-in's nonce (a replay) is refused."""
    provider.nonce_override = "another-sign-ins-nonce"
    response = sign_in(client, provider)
    assert response["Location"] == reverse("login")
    assert signed_in_user(client) is None
    assert not get_user_model().objects.exists()
    assert "(nonce)" in " ".join(str(m) for m in get_messages(response.wsgi_request))


def test_it_refuses_an_id_token_signed_with_another_key(client, provider):
    """The ID token's signature is checked against the keys the provider publishes."""
    provider.forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = sign_in(client, provider)
    assert response["Location"] == reverse("login")
    assert signed_in_user(client) is None
    assert "does not check out" in " ".join(str(m) for m in get_messages(response.wsgi_request))


def test_it_refuses_a_callback_without_a_sign_in_started(client, provider):
    """A callback this browser did not start (or a second use of one) signs nobody in."""
    back = go_to_provider(client, provider)
    other = client.__class__()
    response = come_back(other, back)
    assert response["Location"] == reverse("login")
    assert signed_in_user(other) is None
    sign_in_done = come_back(client, back)
    assert signed_in_user(client) is not None
    again = come_back(client, back)  # the flow was used up: a replayed callback is refused
    assert again["Location"] == reverse("login")
    assert sign_in_done.status_code == 302


def test_it_refuses_a_deactivated_user(client, provider):
    """A user an administrator deactivated cannot sign in with Microsoft either."""
    sign_in(client, provider)
    user = signed_in_user(client)
    client.post(reverse("logout"))
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    response = sign_in(client, provider)
    assert response["Location"] == reverse("login")
    assert signed_in_user(client) is None


def test_it_trusts_the_configured_ca_whatever_requests_ca_bundle_says(client, provider, monkeypatch):
    """REQUESTS_CA_BUNDLE (here the system bundle, without the test CA) does not replace the configured CA."""
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    back = go_to_provider(client, provider)
    come_back(client, back)
    assert signed_in_user(client) is not None


def test_it_hides_the_button_when_not_configured(client, settings):
    """Without tenant, client id and secret the sign-in page offers local accounts only."""
    settings.FLOWDEPLOY_ENTRA_TENANT_ID = ""
    settings.FLOWDEPLOY_ENTRA_CLIENT_ID = ""
    settings.FLOWDEPLOY_ENTRA_CLIENT_SECRET = ""
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert "Sign in with Microsoft" not in page.content.decode()
    assert 'name="username"' in page.content.decode()
    assert client.get(reverse("workspace:entra_start")).status_code == 404
    assert client.get(reverse("workspace:entra_callback"), {"code": "x", "state": "y"}).status_code == 404


def test_it_shows_the_button_when_configured(client, provider):
    """Configured, the sign-in page offers both: the local form and Sign in with Microsoft."""
    html = client.get(reverse("login"), {"next": "/connections/"}).content.decode()
    assert "Sign in with Microsoft" in html and 'name="username"' in html
    assert reverse("workspace:entra_start") + "?next=/connections/" in html.replace("%2F", "/")


def test_it_gives_the_project_roles_its_app_roles_and_groups_map_to(client, provider, settings):
    """FLOWDEPLOY_ENTRA_ROLE_MAP: an app role or group in the token gives at least that role, never less than an
    Owner gave; unknown values are ignored."""
    lab = Project.objects.create(name="lab")
    settings.FLOWDEPLOY_ENTRA_ROLE_MAP = (
        "Flowdeploy.Admins=default:owner, grp-lab=lab:reader, grp-lab-dev=lab:contributor"
    )
    provider.user = {
        **provider.user,
        "roles": ["Flowdeploy.Admins", "Other.Role"],
        "groups": ["grp-lab", "grp-lab-dev"],
    }

    sign_in(client, provider)

    user = signed_in_user(client)
    roles = dict(Membership.objects.filter(user=user).values_list("project__name", "role"))
    assert roles == {"default": "owner", "lab": "contributor"}
    assert AuditEvent.objects.filter(action="member.from_entra").count() == 2
    Membership.objects.filter(user=user, project=lab).update(role=ProjectRole.OWNER)  # an Owner raised it
    client.post(reverse("logout"))
    sign_in(client, provider)
    assert Membership.objects.get(user=user, project=lab).role == ProjectRole.OWNER


def test_a_malformed_role_map_is_refused_at_start_naming_the_entry(settings):
    from workspace.checks import entra_role_map

    settings.FLOWDEPLOY_ENTRA_ROLE_MAP = "Flowdeploy.Admins=default:admin"
    (error,) = entra_role_map()
    assert "'Flowdeploy.Admins=default:admin' is not <app role or group id>=<project>:<role>" in error.msg
