import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from flows.models import FlowVersion

DRAFT_LIFETIME = timedelta(days=7)
STEPS = ("basic", "endpoint", "deployment", "outputs", "review")
PRESET = "preset"  # the key of a draft's initial values in `steps`, beside the steps' own data
STEP_TITLES = {
    "basic": "Basic settings",
    "endpoint": "Advanced settings: Endpoint",
    "deployment": "Advanced settings: Deployment",
    "outputs": "Advanced settings: Outputs & connections",
    "review": "Review + Create",
}


class DraftQuerySet(models.QuerySet):
    def active(self) -> "DraftQuerySet":
        return self.filter(updated_at__gte=timezone.now() - DRAFT_LIFETIME)

    def expired(self) -> "DraftQuerySet":
        return self.filter(updated_at__lt=timezone.now() - DRAFT_LIFETIME)


class DeploymentDraft(models.Model):
    """What a user typed in the wizard so far, per step: the raw form data, validated again at Create."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="deployment_drafts")
    flow_version = models.ForeignKey(FlowVersion, on_delete=models.CASCADE, related_name="+")
    steps = models.JSONField(default=dict, blank=True)
    deployment = models.ForeignKey(
        "endpoints.Deployment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = DraftQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return f"Draft {self.id} of {self.flow_version} by {self.owner}"

    def get_absolute_url(self) -> str:
        return self.step_url("basic")

    def step_url(self, step: str) -> str:
        return reverse(f"wizard:step_{step}", args=[self.id])

    @property
    def step_urls(self) -> dict[str, str]:
        return {step: self.step_url(step) for step in STEPS}

    def raw(self, step: str) -> dict | None:
        return self.steps.get(step)

    def preset(self, step: str) -> dict:
        """Initial values the draft was started with (e.g. an existing endpoint to deploy to)."""
        return dict((self.steps.get(PRESET) or {}).get(step) or {})

    def save_step(self, step: str, raw: dict) -> None:
        self.steps = {**self.steps, step: raw}
        self.save(update_fields=["steps", "updated_at"])

    @classmethod
    def start(cls, owner, flow_version: FlowVersion, preset: dict | None = None) -> "DeploymentDraft":
        """A new draft, with `preset` as initial values per step; abandoned ones (untouched for a week) are
        deleted on the way."""
        cls.objects.expired().delete()
        steps = {PRESET: preset} if preset else {}
        return cls.objects.create(owner=owner, flow_version=flow_version, steps=steps)
