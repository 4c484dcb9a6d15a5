import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from workspace.connection_types import (
    NAME_MAX_LENGTH,
    NAME_RE,
    NAME_RULE,
    PROMPTFLOW_CLASS,
    TARGET_FIELD,
    ConnectionType,
)
from workspace.crypto import SecretsUnreadable, decrypt_json, encrypt_json

SECRET_MASK = "••••••••"

DEFAULT_PROJECT = "default"
PROJECT_NAME_RE = r"^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$"
PROJECT_NAME_RULE = "3 to 32 lowercase letters, digits or hyphens, starting and ending with a letter or digit."


class ProjectRole(models.TextChoices):
    """A person's role in a project, as in Azure's RBAC: what they may do there (workspace/access.py)."""

    OWNER = "owner", "Owner"
    CONTRIBUTOR = "contributor", "Contributor"
    READER = "reader", "Reader"


class Project(models.Model):
    """A workspace: it owns flows, connections, endpoints and identities; people are its members."""

    name = models.CharField(
        max_length=32, unique=True, validators=[RegexValidator(PROJECT_NAME_RE, message=PROJECT_NAME_RULE)]
    )
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def default(cls) -> "Project":
        project, _ = cls.objects.get_or_create(name=DEFAULT_PROJECT)
        return project


def default_project_pk() -> int:
    """What a flow, connection or endpoint created without a project belongs to."""
    return Project.default().pk


class Membership(models.Model):
    project = models.ForeignKey(Project, related_name="memberships", on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="memberships", on_delete=models.CASCADE)
    role = models.CharField(max_length=16, choices=ProjectRole.choices, default=ProjectRole.READER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_project")]

    def __str__(self) -> str:
        return f"{self.user} is {self.get_role_display()} of {self.project}"


# Azure's naming rules, for the Azure Machine Learning workspace a project is connected to (workspace/azure.py).
AZURE_UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
AZURE_UUID_RULE = "a GUID such as 00000000-0000-0000-0000-000000000000."
RESOURCE_GROUP_RE = r"^[-\w.()]{0,89}[-\w()]\Z"
RESOURCE_GROUP_RULE = "1 to 90 letters, digits, '_', '-', '.', '(' or ')', not ending with '.'."
AZURE_WORKSPACE_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_-]{2,32}\Z"
AZURE_WORKSPACE_NAME_RULE = "3 to 33 letters, digits, '-' or '_', starting with a letter or digit."
# A user-assigned identity's ARM id (Azure's name rule: 3 to 128 letters, digits, '-' or '_').
IDENTITY_RESOURCE_ID_RE = (
    r"(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"/resourceGroups/[-\w.()]{0,89}[-\w()]"
    r"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/[A-Za-z0-9][A-Za-z0-9_-]{2,127}\Z"
)
IDENTITY_RESOURCE_ID_RULE = (
    "/subscriptions/<subscription id>/resourceGroups/<resource group>/providers/Microsoft.ManagedIdentity/"
    "userAssignedIdentities/<name>, as on the identity's Properties page in the Azure portal."
)


class ManagedIdentity(models.Model):
    """A user-assigned managed identity: created and named in a project, usable by any of its endpoints."""

    project = models.ForeignKey(Project, related_name="identities", on_delete=models.PROTECT)
    name = models.CharField(
        max_length=64,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$", message="3 to 64 letters, digits, - or _.")],
    )
    principal_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    client_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The same identity in Azure, for endpoints of a project connected to an Azure ML workspace (blank: unknown).
    azure_resource_id = models.CharField(
        "Azure resource ID",
        max_length=400,
        blank=True,
        validators=[RegexValidator(IDENTITY_RESOURCE_ID_RE, message=IDENTITY_RESOURCE_ID_RULE)],
    )
    azure_client_id = models.CharField(
        "Azure client ID",
        max_length=36,
        blank=True,
        validators=[RegexValidator(AZURE_UUID_RE, message=AZURE_UUID_RULE)],
    )
    azure_principal_id = models.CharField(
        "Azure principal ID",
        max_length=36,
        blank=True,
        validators=[RegexValidator(AZURE_UUID_RE, message=AZURE_UUID_RULE)],
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project__name", "name"]
        verbose_name_plural = "managed identities"
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="identity_name_per_project")]

    def __str__(self) -> str:
        return self.name


class BuiltInRole(models.TextChoices):
    """The roles an endpoint's identity needs, with Azure's names (and Azure's role definition ids in ROLE_IDS)."""

    CONNECTION_SECRETS_READER = (
        "connection-secrets-reader",
        "Azure Machine Learning Workspace Connection Secrets Reader",
    )
    ACR_PULL = "acr-pull", "AcrPull"
    STORAGE_BLOB_DATA_READER = "storage-blob-data-reader", "Storage Blob Data Reader"
    METRICS_WRITER = "metrics-writer", "Workspace metrics writer"


ROLE_IDS = {
    BuiltInRole.CONNECTION_SECRETS_READER: "ea01e6af-a1c1-4350-9563-ad00f8c72ec5",
    BuiltInRole.ACR_PULL: "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    BuiltInRole.STORAGE_BLOB_DATA_READER: "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    BuiltInRole.METRICS_WRITER: "635dd51f-9968-44d3-b7fb-6d9a6bd613ae",
}


class RoleScope(models.TextChoices):
    PROJECT = "project", "Project"
    REGISTRY = "registry", "Environment registry"
    STORAGE = "storage", "Storage"


class PrincipalType(models.TextChoices):
    SYSTEM_ASSIGNED = "system_assigned", "System-assigned identity"
    USER_ASSIGNED = "user_assigned", "User-assigned identity"


class RoleAssignment(models.Model):
    """(principal, role, scope) in a project. The principal is a managed identity: an endpoint's
    system-assigned one (Endpoint.principal_id) or a user-assigned one (ManagedIdentity.principal_id).
    People's rights come from their Membership role instead."""

    project = models.ForeignKey(Project, related_name="role_assignments", on_delete=models.CASCADE)
    principal_id = models.UUIDField(db_index=True)
    principal_type = models.CharField(max_length=20, choices=PrincipalType.choices)
    principal_name = models.CharField(max_length=200, help_text="For lists: the endpoint or identity name.")
    role = models.CharField(max_length=40, choices=BuiltInRole.choices)
    scope = models.CharField(max_length=16, choices=RoleScope.choices, default=RoleScope.PROJECT)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project__name", "principal_name", "role"]
        constraints = [
            models.UniqueConstraint(fields=["project", "principal_id", "role", "scope"], name="one_assignment")
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()} for {self.principal_name} on {self.project} ({self.get_scope_display()})"


class EntraAccount(models.Model):
    """A local user signed in with Microsoft Entra ID, matched by the token's object id (oid)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, related_name="entra_account", on_delete=models.CASCADE)
    object_id = models.CharField(max_length=64, unique=True)
    tenant_id = models.CharField(max_length=64, blank=True)
    last_sign_in = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.object_id})"


class EncryptedSecrets:
    """Secrets kept only encrypted (`secrets_encrypted`), with the names of the keys shown masked (`secret_keys`)."""

    @property
    def masked_secrets(self) -> str:
        return ", ".join(f"{key}: {SECRET_MASK}" for key in self.secret_keys) or "—"

    def get_secrets(self) -> dict[str, str]:
        """Decrypt the secrets. Raises SecretsUnreadable when the key changed."""
        return decrypt_json(self.secrets_encrypted)

    def set_secrets(self, secrets: dict[str, str]) -> None:
        self.secrets_encrypted = encrypt_json(secrets) if secrets else ""
        self.secret_keys = sorted(secrets)

    def secrets_readable(self) -> bool:
        try:
            self.get_secrets()
        except SecretsUnreadable:
            return False
        return True


class Connection(EncryptedSecrets, models.Model):
    """Credentials a flow uses to reach a provider. Secrets live only in `secrets_encrypted`."""

    Type = ConnectionType

    name = models.CharField(
        max_length=NAME_MAX_LENGTH,
        unique=True,
        validators=[RegexValidator(NAME_RE, message=NAME_RULE)],
    )
    project = models.ForeignKey(
        Project, related_name="connections", on_delete=models.PROTECT, default=default_project_pk
    )
    type = models.CharField(max_length=32, choices=ConnectionType.choices)
    configs = models.JSONField(default=dict, blank=True, help_text="Non-secret values, by promptflow name.")
    secrets_encrypted = models.TextField(blank=True, default="", editable=False)
    secret_keys = models.JSONField(default=list, blank=True, help_text="Names of the secret values.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Connection {self.name!r} type={self.type!r}>"

    @property
    def promptflow_class(self) -> str:
        return PROMPTFLOW_CLASS[self.type]

    @property
    def target(self) -> str:
        """The non-secret address the connection points at, for tables."""
        field = TARGET_FIELD.get(self.type)
        if field:
            return self.configs.get(field, "") or ("api.openai.com" if self.type == ConnectionType.OPEN_AI else "")
        if self.type == ConnectionType.CUSTOM:
            urls = [v for v in self.configs.values() if str(v).startswith(("http://", "https://"))]
            return urls[0] if urls else ""
        return ""


class AzureCredentialType(models.TextChoices):
    """How the studio signs in to Azure for a project's Azure Machine Learning workspace."""

    MANAGED_IDENTITY = "managed_identity", "Managed identity (when the studio runs in Azure)"
    CLIENT_SECRET = "client_secret", "Service principal with a client secret"
    CERTIFICATE = "certificate", "Service principal with a certificate"
    DEFAULT = "default", "DefaultAzureCredential (development only)"


class AzureWorkspace(EncryptedSecrets, models.Model):
    """The Azure Machine Learning workspace a project's Azure endpoints run in, and how to sign in to it.
    The client secret or certificate lives only in `secrets_encrypted`; rules and clients are in workspace/azure.py."""

    CredentialType = AzureCredentialType

    project = models.OneToOneField(Project, related_name="azure_workspace", on_delete=models.CASCADE)
    subscription_id = models.CharField(
        "Subscription ID", max_length=36, validators=[RegexValidator(AZURE_UUID_RE, message=AZURE_UUID_RULE)]
    )
    resource_group = models.CharField(
        max_length=90, validators=[RegexValidator(RESOURCE_GROUP_RE, message=RESOURCE_GROUP_RULE)]
    )
    workspace_name = models.CharField(
        max_length=33, validators=[RegexValidator(AZURE_WORKSPACE_NAME_RE, message=AZURE_WORKSPACE_NAME_RULE)]
    )
    region = models.CharField(max_length=64, blank=True, help_text="The workspace's location, e.g. westeurope.")
    credential_type = models.CharField(max_length=20, choices=AzureCredentialType.choices)
    tenant_id = models.CharField("Tenant ID", max_length=253, blank=True)
    client_id = models.CharField("Client ID", max_length=36, blank=True)
    secrets_encrypted = models.TextField(blank=True, default="", editable=False)
    secret_keys = models.JSONField(default=list, blank=True, help_text="Names of the saved secret values.")
    verified_at = models.DateTimeField(null=True, blank=True, help_text="When Test connection last succeeded.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Azure Machine Learning workspace"

    def __str__(self) -> str:
        return f"{self.workspace_name} ({self.resource_group}) for {self.project}"

    def __repr__(self) -> str:
        return f"<AzureWorkspace {self.workspace_name!r} project={self.project_id} {self.credential_type}>"

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )


class Notification(models.Model):
    """A line in a user's top-bar bell; long jobs update theirs as they progress."""

    class Level(models.TextChoices):
        INFO = "info", "Info"
        SUCCESS = "success", "Success"
        ERROR = "error", "Error"
        RUNNING = "running", "Running"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    link = models.CharField(max_length=500, blank=True, default="")
    level = models.CharField(max_length=16, choices=Level.choices, default=Level.INFO)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"])]

    def __str__(self) -> str:
        return self.title

    @property
    def unread(self) -> bool:
        return self.read_at is None

    @property
    def badge(self) -> str:
        """The CSS badge class for the level."""
        return {"success": "ok", "error": "bad", "running": "running"}.get(self.level, "info")

    def mark_read(self) -> bool:
        """Mark read once; True if this call did it (conditional update)."""
        now = timezone.now()
        done = Notification.objects.filter(pk=self.pk, read_at=None).update(read_at=now) == 1
        if done:
            self.read_at = now
        return done


class AuditEvent(models.Model):
    """Who did what to which object. `detail` never holds secrets."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=100, db_index=True)
    target = models.CharField(max_length=300, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source = models.GenericIPAddressField(null=True, blank=True, help_text="The caller's address.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.target}"
