import re
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils import timezone

from endpoints import sizes
from flows.models import FlowVersion
from workspace.crypto import decrypt_json, encrypt_json

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
NAME_RULE = (
    "{what} name must be 3 to 32 characters, start with a letter, end with a letter or digit, "
    "and use only letters, digits and '-'."
)


def check_name(value: str, what: str = "Endpoint") -> str:
    if not NAME_RE.match(value or ""):
        raise ValidationError(NAME_RULE.format(what=what), code="invalid_name")
    return value


def validate_endpoint_name(value: str) -> None:
    check_name(value, "Endpoint")


def validate_deployment_name(value: str) -> None:
    check_name(value, "Deployment")


class AuthType(models.TextChoices):
    KEY = "key", "Key-based authentication"
    TOKEN = "aml_token", "Token-based authentication"


class IdentityType(models.TextChoices):
    SYSTEM = "system_assigned", "System-assigned"
    USER = "user_assigned", "User-assigned"


class Provider(models.TextChoices):
    LOCAL = "local", "This machine"


class Endpoint(models.Model):
    name = models.CharField(max_length=32, unique=True, validators=[validate_endpoint_name])
    description = models.TextField(blank=True)
    auth_type = models.CharField(max_length=16, choices=AuthType.choices, default=AuthType.KEY)
    identity_type = models.CharField(max_length=20, choices=IdentityType.choices, default=IdentityType.SYSTEM)
    user_assigned_identity = models.CharField(max_length=200, blank=True)
    # The principal of the endpoint's system-assigned identity; role assignments name it.
    principal_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    enforce_access_to_connection_secrets = models.BooleanField(default=True)
    tags = models.JSONField(default=dict, blank=True)
    traffic = models.JSONField(default=dict, blank=True)
    mirror_traffic = models.JSONField(default=dict, blank=True)
    provider = models.CharField(max_length=16, choices=Provider.choices, default=Provider.LOCAL)
    keys_encrypted = models.TextField(blank=True, editable=False)
    routing_version = models.PositiveBigIntegerField(default=0)
    deleting = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:  # never the keys
        return f"<Endpoint {self.name} auth={self.auth_type}>"

    def get_keys(self) -> dict[str, str]:
        return decrypt_json(self.keys_encrypted) if self.keys_encrypted else {}

    def set_keys(self, keys: dict[str, str]) -> None:
        self.keys_encrypted = encrypt_json(keys)

    @property
    def scoring_path(self) -> str:
        return f"/endpoints/{self.name}/score"

    @property
    def swagger_path(self) -> str:
        return f"/endpoints/{self.name}/swagger.json"


class DeploymentState(models.TextChoices):
    CREATING = "Creating"
    UPDATING = "Updating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    DELETING = "Deleting"


class Phase(models.TextChoices):
    QUEUED = "Queued"
    VALIDATING = "Validating"
    BUILDING_ENVIRONMENT = "BuildingEnvironment"
    REGISTERING_MODEL = "RegisteringModel"
    CREATING_DEPLOYMENT = "CreatingDeployment"
    PROBING = "Probing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    DELETING = "Deleting"


ACTIVE_STATES = (DeploymentState.CREATING, DeploymentState.UPDATING, DeploymentState.DELETING)
HEARTBEAT_STALE_AFTER = timedelta(minutes=10)


class Deployment(models.Model):
    endpoint = models.ForeignKey(Endpoint, related_name="deployments", on_delete=models.CASCADE)
    name = models.CharField(max_length=32, validators=[validate_deployment_name])
    flow_version = models.ForeignKey(FlowVersion, related_name="deployments", on_delete=models.PROTECT)
    vm_size = models.CharField(max_length=32, default=sizes.DEFAULT_SIZE)
    instance_count = models.PositiveIntegerField(default=1)
    environment_variables = models.JSONField(default=dict, blank=True)
    selected_outputs = models.JSONField(default=list, blank=True)
    connection_overrides = models.JSONField(default=dict, blank=True)
    request_timeout_ms = models.PositiveIntegerField(default=90_000)
    max_concurrent_requests_per_instance = models.PositiveIntegerField(default=8)
    data_collection = models.BooleanField(default=False)
    app_insights_enabled = models.BooleanField(default=False)
    tags = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=DeploymentState.choices, default=DeploymentState.CREATING)
    phase = models.CharField(max_length=24, choices=Phase.choices, default=Phase.QUEUED)
    failure_reason = models.TextField(blank=True)
    generation = models.PositiveIntegerField(default=1)
    live_generation = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["endpoint__name", "name"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "name"], name="unique_deployment_name")]

    def __str__(self) -> str:
        return f"{self.endpoint.name}/{self.name}"

    def get_absolute_url(self) -> str:
        return reverse("endpoints:detail", args=[self.endpoint.name, self.name])

    @property
    def size(self) -> sizes.VMSize:
        return sizes.get(self.vm_size)

    @property
    def is_busy(self) -> bool:
        return self.state in ACTIVE_STATES

    def beat(self) -> None:
        Deployment.objects.filter(pk=self.pk).update(heartbeat_at=timezone.now())

    def set_phase(self, phase: str, message: str, level: str = "info") -> None:
        """Move to a phase and write the timestamped event the notifications and Logs tab show."""
        now = timezone.now()
        Deployment.objects.filter(pk=self.pk).update(phase=phase, heartbeat_at=now, updated_at=now)
        self.phase = phase
        DeploymentEvent.objects.create(deployment=self, phase=phase, message=message, level=level)

    def event(self, message: str, level: str = "info") -> None:
        DeploymentEvent.objects.create(deployment=self, phase=self.phase, message=message, level=level)

    def instances_dir(self) -> Path:
        return Path(settings.FLOWDEPLOY_DEPLOYMENTS_DIR) / self.endpoint.name / self.name


class InstanceState(models.TextChoices):
    STARTING = "Starting"
    READY = "Ready"
    DRAINING = "Draining"
    CRASHED = "Crashed"
    STOPPED = "Stopped"


LIVE_INSTANCE_STATES = (InstanceState.STARTING, InstanceState.READY, InstanceState.CRASHED)


class Instance(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    deployment = models.ForeignKey(Deployment, related_name="instances", on_delete=models.CASCADE)
    generation = models.PositiveIntegerField()
    ordinal = models.PositiveIntegerField()
    port = models.PositiveIntegerField(null=True, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=InstanceState.choices, default=InstanceState.STARTING)
    restarts = models.PositiveIntegerField(default=0)
    next_restart_at = models.DateTimeField(null=True, blank=True)
    last_exit = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["deployment", "generation", "ordinal"]

    def __str__(self) -> str:
        return f"{self.deployment}#{self.ordinal} (generation {self.generation})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def folder(self) -> Path:
        return Path(settings.FLOWDEPLOY_DEPLOYMENTS_DIR) / "instances" / str(self.id)

    @property
    def log_path(self) -> Path:
        return self.folder / "instance.log"


class DeploymentEvent(models.Model):
    """Append-only: what happened to a deployment, when."""

    deployment = models.ForeignKey(Deployment, related_name="events", on_delete=models.CASCADE)
    phase = models.CharField(max_length=24)
    level = models.CharField(max_length=8, default="info")
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.created_at:%H:%M:%S} {self.phase}: {self.message}"
