import re
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone

from endpoints import sizes
from flows.models import FlowVersion
from workspace.crypto import decrypt_json, encrypt_json
from workspace.models import RoleAssignment, default_project_pk

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
    AZUREML = "azureml", "Azure Machine Learning"


class Endpoint(models.Model):
    name = models.CharField(max_length=32, unique=True, validators=[validate_endpoint_name])
    description = models.TextField(blank=True)
    project = models.ForeignKey(
        "workspace.Project", related_name="endpoints", on_delete=models.PROTECT, default=default_project_pk
    )
    auth_type = models.CharField(max_length=16, choices=AuthType.choices, default=AuthType.KEY)
    identity_type = models.CharField(max_length=20, choices=IdentityType.choices, default=IdentityType.SYSTEM)
    # The user-assigned identity the endpoint runs as (identity type User-assigned); one of its project's.
    user_assigned_identity = models.ForeignKey(
        "workspace.ManagedIdentity", null=True, blank=True, on_delete=models.PROTECT, related_name="endpoints"
    )
    # The principal of the endpoint's system-assigned identity; role assignments name it.
    principal_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    enforce_access_to_connection_secrets = models.BooleanField(default=True)
    tags = models.JSONField(default=dict, blank=True)
    traffic = models.JSONField(default=dict, blank=True)
    mirror_traffic = models.JSONField(default=dict, blank=True)
    provider = models.CharField(max_length=16, choices=Provider.choices, default=Provider.LOCAL)
    # Where Azure ML answers this endpoint (provider azureml), as Azure reported it once the endpoint existed.
    azure_scoring_uri = models.URLField(max_length=300, blank=True, editable=False)
    azure_swagger_uri = models.URLField(max_length=300, blank=True, editable=False)
    keys_encrypted = models.TextField(blank=True, editable=False)
    routing_version = models.PositiveBigIntegerField(default=0)
    deleting = models.BooleanField(default=False)
    # The "Delete endpoint" notification the deletion finishes, whoever runs it (a resumed deletion too).
    deletion_notification_id = models.BigIntegerField(null=True, blank=True, editable=False)
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

    @property
    def scoring_uri(self) -> str:
        """Where clients score: the studio's gateway, or Azure's scoring URI (empty until Azure made it)."""
        if self.provider == Provider.AZUREML:
            return self.azure_scoring_uri
        return settings.FLOWDEPLOY_GATEWAY_URL + self.scoring_path

    @property
    def swagger_uri(self) -> str:
        if self.provider == Provider.AZUREML:
            return self.azure_swagger_uri
        return settings.FLOWDEPLOY_GATEWAY_URL + self.swagger_path


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
JOB_STATES = (DeploymentState.CREATING, DeploymentState.UPDATING)
HEARTBEAT_STALE_AFTER = timedelta(minutes=10)
# Who may hold a deployment's claim (Deployment.claimed_by is "<kind>:<random>").
PROVISIONING, DELETION, REAPER = "provision", "delete", "reaper"


class Deployment(models.Model):
    endpoint = models.ForeignKey(Endpoint, related_name="deployments", on_delete=models.CASCADE)
    name = models.CharField(max_length=32, validators=[validate_deployment_name])
    flow_version = models.ForeignKey(FlowVersion, related_name="deployments", on_delete=models.PROTECT)
    vm_size = models.CharField(max_length=32, default=sizes.DEFAULT_SIZE)
    instance_count = models.PositiveIntegerField(default=1)
    environment_variables = models.JSONField(default=dict, blank=True)
    # A custom Azure ML environment used as is ("azureml:<name>:<version>"), or "" for the one built from the
    # pinned runtime and the flow's requirements. Azure ML deployments only.
    environment = models.CharField(max_length=300, blank=True)
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
    # Who starts and stops this deployment's processes now: a provisioning job, a deletion or the reaper
    # ("<kind>:<random>"), or nobody (""). The holder keeps heartbeat_at fresh; a stale claim may be taken over.
    claimed_by = models.CharField(max_length=64, blank=True, editable=False)
    # The "Delete deployment" notification the deletion finishes, whoever runs it (a resumed deletion too).
    deletion_notification_id = models.BigIntegerField(null=True, blank=True, editable=False)
    # The "Prompt flow deployment" notification of the latest create, update or scale: the job shows its phases
    # there, whoever asked (the wizard, the API, the CLI).
    notification_id = models.BigIntegerField(null=True, blank=True, editable=False)
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

    # --- the claim: who starts and stops this deployment's processes now ---------------------------
    # Every write of a job's state is a conditional update on its claim, so a provisioning job, a deletion
    # and the reaper never act on the same deployment at once, and none overwrites another's final state.
    # docs/reliability.md tells the whole protocol.

    @staticmethod
    def new_holder(kind: str) -> str:
        return f"{kind}:{uuid.uuid4().hex}"

    @classmethod
    def claim_for_provisioning(cls, pk: int, holder: str) -> bool:
        """A provisioning job takes the deployment: a queued one, or one whose holder stopped beating.

        A deployment being deleted is taken only from a provisioning job that died: the job runs again,
        sees Deleting at once, stops what it started and hands over to the deletion.
        """
        now = timezone.now()
        stale = Q(heartbeat_at__lt=now - HEARTBEAT_STALE_AFTER)
        queued = Q(phase=Phase.QUEUED, claimed_by="")
        ours = Q(state__in=JOB_STATES) & (queued | stale)
        dead_job = Q(state=DeploymentState.DELETING, claimed_by__startswith=f"{PROVISIONING}:") & stale
        claimable = cls.objects.filter(ours | dead_job, pk=pk)
        return claimable.update(claimed_by=holder, heartbeat_at=now) == 1

    @classmethod
    def claim_for_deletion(cls, pk: int, holder: str) -> bool:
        """A deletion takes a deployment being deleted once nobody else holds it, or its holder stopped beating."""
        now = timezone.now()
        free = Q(claimed_by="") | Q(claimed_by=holder) | Q(heartbeat_at__lt=now - HEARTBEAT_STALE_AFTER)
        taken = cls.objects.filter(free, pk=pk, state=DeploymentState.DELETING)
        return taken.update(claimed_by=holder, heartbeat_at=now) == 1

    @classmethod
    def claim_stale_job(cls, pk: int, seen_holder: str, holder: str, reason: str) -> bool:
        """The reaper fails a job whose heartbeat went stale, unless the job beat or ended meanwhile."""
        now = timezone.now()
        stale = cls.objects.filter(
            pk=pk, state__in=JOB_STATES, claimed_by=seen_holder, heartbeat_at__lt=now - HEARTBEAT_STALE_AFTER
        ).exclude(phase=Phase.QUEUED)
        fields = {"state": DeploymentState.FAILED, "phase": Phase.FAILED, "failure_reason": reason}
        return stale.update(**fields, claimed_by=holder, heartbeat_at=now, updated_at=now) == 1

    def keep_claim(self, holder: str) -> str | None:
        """Beat the holder's heartbeat: the deployment's state, or None when the holder lost the claim."""
        if not Deployment.objects.filter(pk=self.pk, claimed_by=holder).update(heartbeat_at=timezone.now()):
            return None
        return Deployment.objects.filter(pk=self.pk).values_list("state", flat=True).first()

    def advance(self, holder: str, phase: str, message: str) -> bool:
        """A job's next phase, written only while it holds the claim and the deployment is not being deleted."""
        now = timezone.now()
        held = Deployment.objects.filter(pk=self.pk, claimed_by=holder, state__in=JOB_STATES)
        if not held.update(phase=phase, heartbeat_at=now, updated_at=now):
            return False
        self.phase = phase
        DeploymentEvent.objects.create(deployment=self, phase=phase, message=message)
        return True

    def finish(self, holder: str, state: str, message: str, level: str = "info", **fields) -> bool:
        """A job's final state (Succeeded or Failed), written only by the holder of a job not being deleted.

        Whichever of the job and the reaper writes a final state first wins; the other's write matches no row.
        """
        now = timezone.now()
        held = Deployment.objects.filter(pk=self.pk, claimed_by=holder, state__in=JOB_STATES)
        if not held.update(state=state, phase=state, claimed_by="", heartbeat_at=now, updated_at=now, **fields):
            return False
        self.state = self.phase = state
        DeploymentEvent.objects.create(deployment=self, phase=state, message=message, level=level)
        return True

    def release(self, holder: str) -> bool:
        return Deployment.objects.filter(pk=self.pk, claimed_by=holder).update(claimed_by="") == 1

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


@receiver(post_delete, sender=Endpoint, dispatch_uid="endpoints.system_identity_deleted")
def _system_identity_deleted(sender, instance: Endpoint, **kwargs) -> None:
    """The system-assigned identity is deleted with its endpoint, and with it every role it held. A signal, not
    Endpoint.delete(): the deletion job, the admin and queryset deletes all pass here."""
    RoleAssignment.objects.filter(principal_id=instance.principal_id).delete()
