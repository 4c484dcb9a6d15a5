"""Connecting a project to an Azure Machine Learning workspace (workspace/azure.py, workspace/azure_views.py): the
rules for each field, secrets kept encrypted and never shown, the credential built for each type, Test connection
against a tiny fake ARM (an azure-core transport), Disconnect, and who may do it (Owners)."""

import datetime
import io
import json
import time

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.transport import HttpTransport
from azure.core.pipeline.transport._requests_basic import RequestsTransportResponse
from azure.core.rest import HttpRequest as RestHttpRequest
from azure.core.rest._requests_basic import RestRequestsTransportResponse
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from roles import member

from django.core.exceptions import ValidationError

from endpoints import services as endpoint_services
from endpoints.models import Endpoint
from workspace import azure as azure_ws
from workspace.models import AuditEvent, AzureCredentialType, AzureWorkspace, Project, ProjectRole

pytestmark = [
    pytest.mark.django_db,
    # azure-ai-ml's schemas, on import, with marshmallow 4
    pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning"),
]

PAGE = "/projects/default/azure/"
TEST = "/projects/default/azure/test/"
DISCONNECT = "/projects/default/azure/disconnect/"
SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
CLIENT = "12345678-1234-1234-1234-123456789abc"
SECRET = "azure-5ecret-value-0042"
CERT_PASSWORD = "cert-pa55word-0043"
WORKSPACE_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-flows/providers/Microsoft.MachineLearningServices/workspaces/ws1"
)
DENIED = (
    "The client 'fd-sp' with object id '99999999-0000-0000-0000-000000000000' does not have authorization to perform "
    "action 'Microsoft.MachineLearningServices/workspaces/read' over scope "
    f"'{WORKSPACE_ID}' or the scope is invalid. If access was recently granted, please refresh your credentials."
)


# --- a tiny fake ARM: an azure-core transport that answers from a list ----------------------------


def _response(request, status: int, body: dict):
    raw = requests.Response()
    raw.status_code = status
    raw.reason = {200: "OK", 403: "Forbidden"}.get(status, "")
    raw.headers["Content-Type"] = "application/json; charset=utf-8"
    raw.raw = io.BytesIO(json.dumps(body).encode())
    raw.url = request.url
    # The generated ARM clients send azure.core.rest requests and read rest responses, as RequestsTransport does.
    if isinstance(request, RestHttpRequest):
        return RestRequestsTransportResponse(request=request, internal_response=raw)
    return RequestsTransportResponse(request, raw)


class FakeArm(HttpTransport):
    """Answers every request with the next (status, body); keeps the requests."""

    def __init__(self, *answers: tuple[int, dict]):
        self.answers = list(answers)
        self.requests = []

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()

    def open(self):
        return None

    def close(self):
        return None

    def send(self, request, **kwargs):
        self.requests.append(request)
        status, body = self.answers.pop(0)
        return _response(request, status, body)


class FakeCredential:
    def __init__(self, error: Exception | None = None):
        self.error = error
        self.scopes = []

    def get_token(self, *scopes, **kwargs):
        self.scopes.extend(scopes)
        if self.error:
            raise self.error
        return AccessToken("fake-arm-token", int(time.time()) + 3600)


WORKSPACE_BODY = {
    "id": WORKSPACE_ID,
    "name": "ws1",
    "type": "Microsoft.MachineLearningServices/workspaces",
    "location": "westeurope",
    "kind": "Default",
    "properties": {"friendlyName": "ws1", "provisioningState": "Succeeded", "hbiWorkspace": False},
}
FORBIDDEN_BODY = {"error": {"code": "AuthorizationFailed", "message": DENIED}}


@pytest.fixture
def fake_azure(monkeypatch):
    """Every MLClient built by workspace/azure.py talks to this fake ARM and signs in with a fake credential."""

    def install(*answers, credential=None):
        transport = FakeArm(*answers)
        credential = credential or FakeCredential()
        monkeypatch.setattr(azure_ws, "client_options", {"transport": transport, "credential": credential})
        return transport, credential

    return install


# --- helpers -------------------------------------------------------------------------------------


def _certificate(key=None, password: str = "") -> str:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flowdeploy-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    encryption = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return (cert.public_bytes(serialization.Encoding.PEM) + pem_key).decode()


def _form(**overrides) -> dict:
    data = {
        "subscription_id": SUBSCRIPTION,
        "resource_group": "rg-flows",
        "workspace_name": "ws1",
        "credential_type": AzureCredentialType.CLIENT_SECRET,
        "tenant_id": TENANT,
        "client_id": CLIENT,
        "client_secret": SECRET,
    }
    data.update(overrides)
    return data


def _errors(**overrides) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        azure_ws.validate(azure_ws.WorkspaceSettings.from_data(_form(**overrides)))
    return caught.value.message_dict


def _connect(**overrides) -> AzureWorkspace:
    workspace, _ = azure_ws.connect(Project.default(), azure_ws.WorkspaceSettings.from_data(_form(**overrides)))
    return workspace


@pytest.fixture
def owner_client(client, django_user_model):
    client.force_login(member(django_user_model.objects.create_user("az-owner", password="pw-az-1"), "owner"))
    return client


def _audit_text() -> str:
    return json.dumps([[e.action, e.target, e.detail] for e in AuditEvent.objects.all()])


# --- the rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("subscription_id", "", "Subscription ID: enter a value"),
        ("subscription_id", "not-a-guid", "Subscription ID 'not-a-guid' is not valid: a GUID"),
        ("resource_group", "", "Resource group: enter a value"),
        ("resource_group", "rg.", "Resource group 'rg.' is not valid"),
        ("resource_group", "rg with space", "not ending with '.'"),
        ("resource_group", "r" * 91, "1 to 90"),
        ("workspace_name", "ws", "Workspace name 'ws' is not valid: 3 to 33"),
        ("workspace_name", "-ws1", "starting with a letter or digit"),
        ("workspace_name", "w" * 34, "3 to 33"),
        ("workspace_name", "ws.1", "Workspace name 'ws.1' is not valid"),
        ("credential_type", "password", "Authentication: choose how the studio signs in"),
        ("tenant_id", "", "Tenant ID: enter the tenant"),
        ("tenant_id", "not a tenant", "Tenant ID 'not a tenant' is not valid"),
        ("client_id", "", "Client ID: enter the application (client) ID"),
        ("client_id", "app-1", "Client ID 'app-1' is not valid"),
        ("client_secret", "", "Client secret: enter"),
    ],
)
def test_it_names_the_field_of_each_rule(field, value, words):
    errors = _errors(**{field: value})
    assert list(errors) == [field]
    assert words in errors[field][0]


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"certificate": ""}, "certificate", "Certificate (PEM): paste"),
        (
            {"certificate": "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----"},
            "certificate",
            "no certificate",
        ),
        ({"certificate": "cert+ec"}, "certificate", "must be RSA"),
        ({"certificate": "cert+pw", "certificate_password": ""}, "certificate_password", "enter its password"),
        ({"certificate": "cert+pw", "certificate_password": "wrong"}, "certificate_password", "does not decrypt"),
        ({"certificate": "cert", "certificate_password": "extra"}, "certificate_password", "not encrypted"),
    ],
)
def test_it_checks_the_certificate_and_its_password(overrides, field, words):
    pems = {
        "cert": _certificate(),
        "cert+pw": _certificate(password=CERT_PASSWORD),
        "cert+ec": _certificate(ec.generate_private_key(ec.SECP256R1())),
    }
    overrides = {**overrides, "certificate": pems.get(overrides["certificate"], overrides["certificate"])}
    errors = _errors(credential_type=AzureCredentialType.CERTIFICATE, client_secret="", **overrides)
    assert list(errors) == [field]
    assert words in errors[field][0]


@pytest.mark.parametrize(
    "overrides",
    [
        {"resource_group": "My_RG-(test).1"},
        {"resource_group": "r" * 90},
        {"workspace_name": "ws_1-A"},
        {"workspace_name": "w" * 33},
        {"tenant_id": "contoso.onmicrosoft.com"},
        {"credential_type": "managed_identity", "tenant_id": "", "client_id": "", "client_secret": ""},
        {"credential_type": "default", "tenant_id": "", "client_id": "", "client_secret": ""},
    ],
)
def test_it_accepts_what_azure_accepts(overrides):
    azure_ws.validate(azure_ws.WorkspaceSettings.from_data(_form(**overrides)))


def test_it_saves_only_what_the_credential_type_uses():
    workspace = _connect(credential_type="managed_identity", tenant_id=TENANT, client_secret=SECRET)
    assert (workspace.tenant_id, workspace.client_id, workspace.secret_keys) == ("", CLIENT, [])
    workspace = _connect(credential_type="default")
    assert (workspace.tenant_id, workspace.client_id, workspace.secrets_encrypted) == ("", "", "")


# --- the page: connect, edit, secrets ------------------------------------------------------------


def test_it_connects_the_project_through_the_page(owner_client):
    response = owner_client.post(PAGE, _form())
    assert response.status_code == 302 and response["Location"] == PAGE
    workspace = Project.default().azure_workspace
    assert (workspace.subscription_id, workspace.resource_group, workspace.workspace_name) == (
        SUBSCRIPTION,
        "rg-flows",
        "ws1",
    )
    assert workspace.created_by.username == "az-owner"
    assert SECRET not in workspace.secrets_encrypted
    assert workspace.get_secrets() == {"client_secret": SECRET}
    event = AuditEvent.objects.get(action="azure_workspace.connect")
    assert event.project == Project.default() and event.target == WORKSPACE_ID
    assert event.detail["secrets_changed"] is True and event.detail["client_id"] == CLIENT

    page = owner_client.get(PAGE).content.decode()
    assert 'id="azure-workspace-name">ws1<' in page and "Test connection" in page and "Not tested" in page


def test_it_keeps_the_saved_secret_when_left_blank(owner_client):
    owner_client.post(PAGE, _form())
    AzureWorkspace.objects.update(verified_at=datetime.datetime.now(datetime.UTC), region="westeurope")
    response = owner_client.post(PAGE, _form(client_secret="", workspace_name="ws2"))
    assert response.status_code == 302
    workspace = AzureWorkspace.objects.get()
    assert workspace.workspace_name == "ws2" and workspace.get_secrets() == {"client_secret": SECRET}
    assert (workspace.verified_at, workspace.region) == (None, "")  # another workspace: test it again
    event = AuditEvent.objects.get(action="azure_workspace.update")
    assert event.detail["changed"] == ["workspace_name"] and event.detail["secrets_changed"] is False


def test_it_keeps_the_saved_certificate_and_its_password_when_left_blank(owner_client):
    pem = _certificate(password=CERT_PASSWORD)
    form = _form(credential_type="certificate", client_secret="", certificate=pem, certificate_password=CERT_PASSWORD)
    assert owner_client.post(PAGE, form).status_code == 302
    page = owner_client.get(PAGE).content.decode()
    assert "Leave blank to keep the saved one." in page
    form.update(certificate="", certificate_password="", resource_group="rg-other")
    assert owner_client.post(PAGE, form).status_code == 302
    saved = {"certificate": pem.strip(), "certificate_password": CERT_PASSWORD}
    assert AzureWorkspace.objects.get().get_secrets() == saved


def test_it_asks_for_the_secret_again_when_the_type_changes(owner_client):
    owner_client.post(PAGE, _form())
    pem = _certificate()
    response = owner_client.post(PAGE, _form(credential_type="certificate", client_secret="", certificate=""))
    assert response.status_code == 400
    assert "Certificate (PEM): paste the certificate" in response.content.decode()
    owner_client.post(PAGE, _form(credential_type="certificate", client_secret="", certificate=pem))
    assert AzureWorkspace.objects.get().get_secrets() == {"certificate": pem.strip()}


def test_it_shows_the_error_under_the_field_and_keeps_the_other_values(owner_client):
    response = owner_client.post(PAGE, _form(resource_group="rg.", workspace_name="my-ws"))
    page = response.content.decode()
    assert response.status_code == 400
    assert "Resource group &#x27;rg.&#x27; is not valid" in page
    assert 'value="my-ws"' in page
    assert not AzureWorkspace.objects.exists()


def test_it_never_shows_a_secret_in_the_page_nor_in_the_audit_log(owner_client):
    pem = _certificate(password=CERT_PASSWORD)
    owner_client.post(PAGE, _form())
    refused = owner_client.post(
        PAGE,
        _form(
            subscription_id="bad",
            credential_type="certificate",
            client_secret=SECRET,
            certificate=pem,
            certificate_password=CERT_PASSWORD,
        ),
    )
    assert refused.status_code == 400
    owner_client.post(PAGE, _form(client_secret="azure-5ecret-value-0099"))
    shown = owner_client.get(PAGE).content.decode() + refused.content.decode()
    for secret in (SECRET, "azure-5ecret-value-0099", CERT_PASSWORD, "PRIVATE KEY", "CERTIFICATE-----"):
        assert secret not in shown
        assert secret not in _audit_text()
    assert "••••••••" in shown


def test_it_warns_when_the_saved_secret_cannot_be_decrypted(owner_client, settings):
    owner_client.post(PAGE, _form())
    settings.FLOWDEPLOY_SECRET_KEY = "another-key-than-before"
    assert "cannot be decrypted" in owner_client.get(PAGE).content.decode()


# --- credentials and clients ---------------------------------------------------------------------


def test_it_builds_a_client_secret_credential():
    from azure.identity import ClientSecretCredential

    credential = azure_ws.credential_for(_connect())
    assert isinstance(credential, ClientSecretCredential)
    assert (credential._tenant_id, credential._client_id) == (TENANT, CLIENT)


def test_it_builds_a_certificate_credential():
    from azure.identity import CertificateCredential

    pem = _certificate(password=CERT_PASSWORD)
    workspace = _connect(credential_type="certificate", certificate=pem, certificate_password=CERT_PASSWORD)
    credential = azure_ws.credential_for(workspace)
    assert isinstance(credential, CertificateCredential)
    assert (credential._tenant_id, credential._client_id) == (TENANT, CLIENT)


@pytest.mark.parametrize(
    ("credential_type", "client_id", "cls", "expected"),
    [
        ("managed_identity", CLIENT, "ManagedIdentityCredential", {"client_id": CLIENT}),
        ("managed_identity", "", "ManagedIdentityCredential", {"client_id": None}),
        ("default", "", "DefaultAzureCredential", {"exclude_interactive_browser_credential": True}),
    ],
)
def test_it_builds_the_credential_without_a_secret(monkeypatch, credential_type, client_id, cls, expected):
    import azure.identity

    calls = []
    monkeypatch.setattr(azure.identity, cls, lambda *args, **kwargs: calls.append((args, kwargs)) or "built")
    workspace = _connect(credential_type=credential_type, client_id=client_id)
    assert azure_ws.credential_for(workspace) == "built"
    assert calls == [((), expected)]


def test_it_builds_an_ml_client_for_the_workspace(fake_azure):
    from azure.ai.ml import MLClient

    _, credential = fake_azure()
    client = azure_ws.ml_client(_connect())
    assert isinstance(client, MLClient)
    assert (client.subscription_id, client.resource_group_name, client.workspace_name) == (
        SUBSCRIPTION,
        "rg-flows",
        "ws1",
    )
    assert client._credential is credential


def test_it_finds_the_project_workspace():
    assert azure_ws.project_workspace(Project.default()) is None
    workspace = _connect()
    assert azure_ws.project_workspace(Project.default()) == workspace


# --- Test connection -----------------------------------------------------------------------------


def test_it_gets_the_workspace_and_saves_its_region(fake_azure):
    transport, credential = fake_azure((200, WORKSPACE_BODY))
    workspace = _connect()
    assert azure_ws.check_connection(workspace) == ""
    workspace.refresh_from_db()
    assert workspace.region == "westeurope" and workspace.verified_at is not None
    [request] = transport.requests
    assert request.method == "GET"
    assert request.url.startswith(f"https://management.azure.com{WORKSPACE_ID}?api-version=")
    assert request.headers["Authorization"] == "Bearer fake-arm-token"
    assert credential.scopes[0] == "https://management.azure.com/.default"
    event = AuditEvent.objects.get(action="azure_workspace.test")
    assert event.detail == {"ok": True, "error": ""}


def test_it_surfaces_azures_error_verbatim(fake_azure):
    fake_azure((403, FORBIDDEN_BODY))
    workspace = _connect()
    AzureWorkspace.objects.update(verified_at=datetime.datetime.now(datetime.UTC))
    problem = azure_ws.check_connection(workspace)
    assert problem == f"Getting workspace ws1 failed: (AuthorizationFailed) {DENIED}"
    workspace.refresh_from_db()
    assert workspace.verified_at is None
    assert AuditEvent.objects.get(action="azure_workspace.test").detail["ok"] is False


def test_it_says_when_signing_in_fails(fake_azure):
    refused = ClientAuthenticationError("AADSTS7000215: Invalid client secret provided.")
    transport, _ = fake_azure(credential=FakeCredential(refused))
    problem = azure_ws.check_connection(_connect())
    assert problem == (
        "Signing in with Service principal with a client secret failed: AADSTS7000215: Invalid client secret provided."
    )
    assert transport.requests == []


def test_it_says_when_the_saved_secret_is_unreadable(settings):
    workspace = _connect()
    settings.FLOWDEPLOY_SECRET_KEY = "another-key-than-before"
    assert azure_ws.check_connection(workspace).startswith("Reading the saved secret failed: The saved secrets")


def test_it_tests_the_connection_from_the_page(owner_client, fake_azure):
    fake_azure((200, WORKSPACE_BODY))
    owner_client.post(PAGE, _form())
    page = owner_client.post(TEST, follow=True).content.decode()
    assert "reached workspace ws1 in region westeurope" in page
    assert 'id="azure-region">westeurope<' in page and "Connected" in page


def test_it_shows_azures_error_on_the_page(owner_client, fake_azure):
    fake_azure((403, FORBIDDEN_BODY))
    owner_client.post(PAGE, _form())
    page = owner_client.post(TEST, follow=True).content.decode()
    assert "Getting workspace ws1 failed: (AuthorizationFailed) The client &#x27;fd-sp&#x27;" in page


def test_it_asks_to_connect_before_testing(owner_client):
    page = owner_client.post(TEST, follow=True).content.decode()
    assert "is not connected to an Azure Machine Learning workspace" in page


# --- Disconnect ----------------------------------------------------------------------------------


def test_it_disconnects_after_a_confirmation(owner_client):
    owner_client.post(PAGE, _form())
    confirm = owner_client.get(DISCONNECT).content.decode()
    assert "Disconnect project default from workspace ws1?" in confirm and 'id="azure-disconnect-confirm"' in confirm
    assert owner_client.post(DISCONNECT).status_code == 302
    assert not AzureWorkspace.objects.exists()
    event = AuditEvent.objects.get(action="azure_workspace.disconnect")
    assert event.target == WORKSPACE_ID and event.project == Project.default()


def test_it_refuses_to_disconnect_while_an_endpoint_runs_on_azure(owner_client):
    owner_client.post(PAGE, _form())
    endpoint = endpoint_services.create_endpoint("ep-cloud")
    Endpoint.objects.filter(pk=endpoint.pk).update(provider="azureml")
    confirm = owner_client.get(DISCONNECT).content.decode()
    assert 'id="azure-in-use"' in confirm and "ep-cloud" in confirm and "azure-disconnect-confirm" not in confirm
    page = owner_client.post(DISCONNECT, follow=True).content.decode()
    assert "Disconnect: endpoint ep-cloud of project default runs on Azure Machine Learning" in page
    assert AzureWorkspace.objects.exists()
    assert not AuditEvent.objects.filter(action="azure_workspace.disconnect").exists()


# --- who may ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [ProjectRole.READER, ProjectRole.CONTRIBUTOR])
def test_it_is_for_owners_only(client, django_user_model, role):
    _connect()
    client.force_login(member(django_user_model.objects.create_user("az-member", password="pw-az-2"), role))
    for method, url in (("get", PAGE), ("post", PAGE), ("post", TEST), ("get", DISCONNECT), ("post", DISCONNECT)):
        response = getattr(client, method)(url, _form(workspace_name="ws9") if url == PAGE else {})
        assert response.status_code == 403, (method, url)
        assert "needs Owner" in response.content.decode()
    assert AzureWorkspace.objects.get().workspace_name == "ws1"
    assert 'id="nav-azure"' not in client.get("/connections/").content.decode()


def test_it_answers_404_to_a_member_of_another_project(client, django_user_model):
    elsewhere = Project.objects.create(name="elsewhere")
    user = member(django_user_model.objects.create_user("az-outsider", password="pw-az-3"), "owner", elsewhere)
    client.force_login(user)
    assert client.get(PAGE).status_code == 404
    assert client.get("/projects/elsewhere/azure/").status_code == 200


def test_it_links_the_page_for_owners(owner_client):
    page = owner_client.get("/connections/").content.decode()
    assert f'href="{PAGE}" id="nav-azure"' in page and "Azure Machine Learning" in page


def test_it_shows_the_workspace_read_only_in_the_admin(client, django_user_model):
    _connect()
    admin = django_user_model.objects.create_superuser("az-admin", password="pw-az-4")
    client.force_login(admin)
    workspace = AzureWorkspace.objects.get()
    listing = client.get("/admin/workspace/azureworkspace/")
    detail = client.get(f"/admin/workspace/azureworkspace/{workspace.pk}/change/")
    assert listing.status_code == 200 and detail.status_code == 200
    assert "ws1" in listing.content.decode() and "client_secret: ••••••••" in detail.content.decode()
    assert SECRET not in detail.content.decode() and workspace.secrets_encrypted not in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()
