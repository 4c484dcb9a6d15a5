"""A project's Azure Machine Learning workspace: the rules for its settings, saving them (audited, secrets
encrypted), the azure-identity credential and the MLClient built from them, and Test connection.

azure-identity and azure-ai-ml are imported inside the functions that use them: importing azure.ai.ml takes about
a second, which the studio should not pay at start-up nor on pages that never talk to Azure.

`client_options` is how tests (and nothing else) reach every client built here: its entries are passed to each
MLClient and AuthorizationManagementClient (e.g. `transport`), and a "credential" entry replaces the credential
built from the saved settings:

    monkeypatch.setattr(workspace.azure, "client_options", {"transport": fake, "credential": fake_credential})
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from workspace import audit
from workspace.crypto import SecretsUnreadable
from workspace.models import (
    AZURE_UUID_RE,
    AZURE_UUID_RULE,
    AZURE_WORKSPACE_NAME_RE,
    AZURE_WORKSPACE_NAME_RULE,
    RESOURCE_GROUP_RE,
    RESOURCE_GROUP_RULE,
    AzureCredentialType,
    AzureWorkspace,
    Project,
)

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.core.credentials import TokenCredential
    from azure.mgmt.authorization import AuthorizationManagementClient

# Keyword arguments for every client built here (MLClient, AuthorizationManagementClient); tests put a fake
# `transport` (and "credential") in it.
client_options: dict[str, Any] = {}

ARM_SCOPE = "https://management.azure.com/.default"

# Test connection answers a person waiting on the page: fail in seconds rather than retry for minutes.
CHECK_OPTIONS = {"retry_total": 1, "connection_timeout": 10, "read_timeout": 30}

LABELS = {
    "subscription_id": "Subscription ID",
    "resource_group": "Resource group",
    "workspace_name": "Workspace name",
    "credential_type": "Authentication",
    "tenant_id": "Tenant ID",
    "client_id": "Client ID",
    "client_secret": "Client secret",
    "certificate": "Certificate (PEM)",
    "certificate_password": "Certificate password",
}

SERVICE_PRINCIPAL = (AzureCredentialType.CLIENT_SECRET, AzureCredentialType.CERTIFICATE)
# Which of tenant_id / client_id each credential type uses; the others are not saved.
USES = {
    AzureCredentialType.MANAGED_IDENTITY: ("client_id",),
    AzureCredentialType.CLIENT_SECRET: ("tenant_id", "client_id"),
    AzureCredentialType.CERTIFICATE: ("tenant_id", "client_id"),
    AzureCredentialType.DEFAULT: (),
}
# Fields whose change makes the last successful Test connection say nothing about the new settings.
_TARGET = ("subscription_id", "resource_group", "workspace_name")
_IDENTITY = ("credential_type", "tenant_id", "client_id")

_TENANT_DOMAIN_RE = re.compile(r"^(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\Z")


@dataclass
class WorkspaceSettings:
    """What a user asked for (a form or the API). Blank secrets on an update keep the saved ones."""

    subscription_id: str = ""
    resource_group: str = ""
    workspace_name: str = ""
    credential_type: str = ""
    tenant_id: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    certificate: str = field(default="", repr=False)
    certificate_password: str = field(default="", repr=False)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> WorkspaceSettings:
        """Take the known keys of a form's cleaned data or a JSON body: values are stripped (a pasted PEM gets
        Unix line ends too); the certificate password is taken as it is."""
        values = {}
        for name in (f.name for f in fields(cls)):
            value = "" if data.get(name) is None else str(data[name])
            values[name] = value if name == "certificate_password" else value.replace("\r\n", "\n").strip()
        return cls(**values)


def project_workspace(project: Project) -> AzureWorkspace | None:
    """The Azure Machine Learning workspace the project is connected to, if any."""
    return AzureWorkspace.objects.filter(project=project).select_related("project").first()


# --- rules ---------------------------------------------------------------------------------------


def _certificate_error(pem: str, password: str) -> tuple[str, str] | None:
    """(field, message) when the PEM is not a certificate with an RSA private key this password opens."""
    data = pem.encode()
    try:
        x509.load_pem_x509_certificate(data)
    except ValueError:
        return "certificate", "Certificate (PEM): no certificate found. Paste the certificate and its private key."
    if b"PRIVATE KEY-----" not in data:
        return "certificate", "Certificate (PEM): no private key found. Paste the certificate and its private key."
    try:
        key = load_pem_private_key(data, password.encode() or None)
    except TypeError:
        if password:
            return "certificate_password", "Certificate password: the private key is not encrypted; leave it blank."
        return "certificate_password", "Certificate password: the private key is encrypted; enter its password."
    except ValueError:
        if password:
            return "certificate_password", "Certificate password: it does not decrypt the private key."
        return "certificate", "Certificate (PEM): the private key cannot be read."
    if not isinstance(key, rsa.RSAPrivateKey):
        return "certificate", "Certificate (PEM): the private key must be RSA (Microsoft Entra ID signs with RS256)."
    return None


def _saved_secrets(saved: AzureWorkspace | None, credential_type: str) -> dict[str, str]:
    """The secrets an update may keep: only those of the same credential type, and only if still readable."""
    if saved is None or saved.credential_type != credential_type:
        return {}
    try:
        return saved.get_secrets()
    except SecretsUnreadable:
        return {}


@sensitive_variables("settings", "saved_secrets", "secrets", "pem", "password")
def validate(settings: WorkspaceSettings, saved: AzureWorkspace | None = None) -> dict[str, str]:
    """The secrets to store for `settings`, or ValidationError mapping each bad field to a message naming it.
    `saved` is the workspace being changed: its secrets are kept where the new ones are blank."""
    errors: dict[str, list[str]] = {}

    def fail(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    def check(name: str, pattern: str, rule: str) -> None:
        value = getattr(settings, name)
        if not value:
            fail(name, f"{LABELS[name]}: enter a value ({rule})")
        elif not re.match(pattern, value):
            fail(name, f"{LABELS[name]} {value!r} is not valid: {rule}")

    check("subscription_id", AZURE_UUID_RE, AZURE_UUID_RULE)
    check("resource_group", RESOURCE_GROUP_RE, RESOURCE_GROUP_RULE)
    check("workspace_name", AZURE_WORKSPACE_NAME_RE, AZURE_WORKSPACE_NAME_RULE)
    kind = settings.credential_type
    if kind not in AzureCredentialType.values:
        fail("credential_type", "Authentication: choose how the studio signs in to Azure.")
        raise ValidationError(errors)

    uses = USES[AzureCredentialType(kind)]
    if "tenant_id" in uses:
        tenant = settings.tenant_id
        if not tenant:
            fail("tenant_id", "Tenant ID: enter the tenant of the service principal (a GUID or a domain name).")
        elif not (re.match(AZURE_UUID_RE, tenant) or _TENANT_DOMAIN_RE.match(tenant)):
            fail("tenant_id", f"Tenant ID {tenant!r} is not valid: a GUID or a domain such as contoso.onmicrosoft.com.")
    if "client_id" in uses:
        client = settings.client_id
        if not client and kind in SERVICE_PRINCIPAL:
            fail("client_id", "Client ID: enter the application (client) ID of the service principal.")
        elif client and not re.match(AZURE_UUID_RE, client):
            fail("client_id", f"Client ID {client!r} is not valid: {AZURE_UUID_RULE}")

    saved_secrets = _saved_secrets(saved, kind)
    secrets: dict[str, str] = {}
    if kind == AzureCredentialType.CLIENT_SECRET:
        secrets["client_secret"] = settings.client_secret or saved_secrets.get("client_secret", "")
        if not secrets["client_secret"]:
            fail("client_secret", "Client secret: enter the service principal's client secret.")
    elif kind == AzureCredentialType.CERTIFICATE:
        pem = settings.certificate
        # A new certificate comes with its own password (blank: none); a kept one keeps its password unless given.
        password = settings.certificate_password if pem else saved_secrets.get("certificate_password", "")
        if not pem:
            pem = saved_secrets.get("certificate", "")
            password = settings.certificate_password or password
        if not pem:
            fail("certificate", "Certificate (PEM): paste the certificate and its private key.")
        elif problem := _certificate_error(pem, password):
            fail(*problem)
        secrets = {"certificate": pem, **({"certificate_password": password} if password else {})}
    if errors:
        raise ValidationError(errors)
    return secrets


# --- changes -------------------------------------------------------------------------------------


def _public(workspace: AzureWorkspace) -> dict[str, str]:
    return {name: getattr(workspace, name) for name in (*_TARGET, *_IDENTITY)}


@sensitive_variables("settings", "secrets")
def connect(project: Project, settings: WorkspaceSettings, *, user: Any = None) -> tuple[AzureWorkspace, bool]:
    """Connect the project to a workspace, or change how it is connected: (workspace, created). Raises
    ValidationError naming the bad fields. The audit event names what changed, never a secret."""
    with transaction.atomic():
        workspace = AzureWorkspace.objects.select_for_update().filter(project=project).first()
        secrets = validate(settings, workspace)
        created = workspace is None
        if workspace is None:
            workspace = AzureWorkspace(project=project, created_by=user if user and user.is_authenticated else None)
        before = {} if created else _public(workspace)
        secrets_changed = created or _saved_secrets(workspace, settings.credential_type) != secrets
        uses = USES[AzureCredentialType(settings.credential_type)]
        for name in (*_TARGET, "credential_type"):
            setattr(workspace, name, getattr(settings, name))
        for name in ("tenant_id", "client_id"):
            setattr(workspace, name, getattr(settings, name) if name in uses else "")
        workspace.set_secrets(secrets)
        changed = [name for name, value in _public(workspace).items() if before.get(name) != value]
        if any(name in _TARGET for name in changed):
            workspace.region = ""
        if changed or secrets_changed:
            workspace.verified_at = None
        workspace.save()
        audit.record(
            user,
            "azure_workspace.connect" if created else "azure_workspace.update",
            workspace.arm_id,
            project=project,
            **_public(workspace),
            changed=changed,
            secrets_changed=secrets_changed,
        )
    return workspace, created


def endpoints_on_azure(project: Project) -> list[str]:
    """Names of the project's endpoints that run on Azure Machine Learning."""
    from endpoints.models import Provider  # endpoints depends on workspace, not the other way at import time

    azure_endpoints = project.endpoints.filter(provider=Provider.AZUREML).order_by("name")
    return list(azure_endpoints.values_list("name", flat=True))


def disconnect(workspace: AzureWorkspace, *, user: Any = None) -> None:
    """Forget the workspace and its secrets; refused (ValidationError) while an endpoint of the project runs there."""
    project = workspace.project
    names = endpoints_on_azure(project)
    if names:
        raise ValidationError(
            {
                "endpoints": (
                    f"Disconnect: endpoint{'s' if len(names) > 1 else ''} {', '.join(names)} of project "
                    f"{project.name} run{'' if len(names) > 1 else 's'} on Azure Machine Learning. "
                    "Delete them first."
                )
            }
        )
    target, public = workspace.arm_id, _public(workspace)
    workspace.delete()
    audit.record(user, "azure_workspace.disconnect", target, project=project, **public)


# --- credentials and clients ---------------------------------------------------------------------


@sensitive_variables("secrets")
def credential_for(workspace: AzureWorkspace) -> TokenCredential:
    """The azure-identity credential the saved settings describe. Raises SecretsUnreadable when the saved secret
    cannot be decrypted (or is missing)."""
    from azure import identity

    kind = workspace.credential_type
    if kind == AzureCredentialType.MANAGED_IDENTITY:
        return identity.ManagedIdentityCredential(client_id=workspace.client_id or None)
    if kind == AzureCredentialType.DEFAULT:
        return identity.DefaultAzureCredential(exclude_interactive_browser_credential=True)
    secrets = workspace.get_secrets()
    if kind == AzureCredentialType.CLIENT_SECRET and secrets.get("client_secret"):
        return identity.ClientSecretCredential(workspace.tenant_id, workspace.client_id, secrets["client_secret"])
    if kind == AzureCredentialType.CERTIFICATE and secrets.get("certificate"):
        return identity.CertificateCredential(
            workspace.tenant_id,
            workspace.client_id,
            certificate_data=secrets["certificate"].encode(),
            password=secrets.get("certificate_password") or None,
        )
    raise SecretsUnreadable(f"No saved secret for {AzureCredentialType(kind).label}: enter it again.")


def ml_client(workspace: AzureWorkspace, **kwargs: Any) -> MLClient:
    """An MLClient for the workspace, signed in with its credential. `client_options` and then `kwargs` are passed
    to MLClient; a "credential" among them replaces the one built from the settings."""
    from azure.ai.ml import MLClient

    options = {**client_options, **kwargs}
    credential = options.pop("credential", None) or credential_for(workspace)
    return MLClient(
        credential, workspace.subscription_id, workspace.resource_group, workspace.workspace_name, **options
    )


# MLClient's own keyword arguments, which the other Azure clients built here do not take.
_ML_CLIENT_ONLY = ("show_progress", "enable_telemetry", "cloud", "registry_name", "user_agent")


def authorization_client(workspace: AzureWorkspace, **kwargs: Any) -> AuthorizationManagementClient:
    """An azure-mgmt-authorization client on the workspace's subscription, signed in as `ml_client` is: with
    `client_options` (its MLClient-only entries left out) and then `kwargs`, a "credential" among them replacing
    the one built from the settings. For role assignments (endpoints/providers/azureml/roles.py)."""
    from azure.mgmt.authorization import AuthorizationManagementClient

    options = {k: v for k, v in {**client_options, **kwargs}.items() if k not in _ML_CLIENT_ONLY}
    credential = options.pop("credential", None) or credential_for(workspace)
    return AuthorizationManagementClient(credential, workspace.subscription_id, **options)


def azure_message(exc: Exception) -> str:
    """Azure's own words for an error: "(Code) message" for an ARM error, else the exception's message."""
    error = getattr(exc, "error", None)
    if getattr(error, "code", None):
        return f"({error.code}) {error.message}"
    return str(getattr(exc, "message", None) or exc)


def check_connection(workspace: AzureWorkspace, *, user: Any = None) -> str:
    """Sign in and get the workspace: "" when it worked (its region and verified_at are saved), else which step
    failed with Azure's error verbatim. Audited either way."""
    from azure.core.exceptions import AzureError

    kind = AzureCredentialType(workspace.credential_type)
    step = f"Signing in with {kind.label}"
    found = None
    try:
        credential = client_options.get("credential") or credential_for(workspace)
        credential.get_token(ARM_SCOPE)
        step = f"Getting workspace {workspace.workspace_name}"
        client = ml_client(workspace, credential=credential, **CHECK_OPTIONS)
        found = client.workspaces.get(workspace.workspace_name)
    except SecretsUnreadable as exc:
        problem = f"Reading the saved secret failed: {exc}"
    except (AzureError, ValueError) as exc:
        problem = f"{step} failed: {azure_message(exc)}"
    else:
        problem = ""
    if found is not None:
        workspace.region = found.location or workspace.region
        workspace.verified_at = timezone.now()
    else:
        workspace.verified_at = None
    AzureWorkspace.objects.filter(pk=workspace.pk).update(region=workspace.region, verified_at=workspace.verified_at)
    audit.record(
        user, "azure_workspace.test", workspace.arm_id, project=workspace.project_id, ok=not problem, error=problem
    )
    return problem
