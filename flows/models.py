import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from workspace.models import default_project_pk

FLOW_FILE = "flow.dag.yaml"


class Flow(models.Model):
    name = models.CharField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    project = models.ForeignKey(
        "workspace.Project", related_name="flows", on_delete=models.PROTECT, default=default_project_pk
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("flows:detail", args=[self.name])

    def latest_version(self) -> "FlowVersion | None":
        return self.versions.order_by("-version").first()


class FlowSource(models.TextChoices):
    UPLOAD = "upload", "Zip upload"
    SAMPLE = "sample", "Sample"
    FOLDER = "folder", "Server folder"


class FlowVersion(models.Model):
    """An immutable snapshot of a flow, and what promptflow said about it when it was imported."""

    flow = models.ForeignKey(Flow, related_name="versions", on_delete=models.CASCADE)
    version = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64, db_index=True)
    source = models.CharField(max_length=16, choices=FlowSource.choices)
    source_detail = models.CharField(max_length=500, blank=True)
    inputs = models.JSONField(default=dict)
    outputs = models.JSONField(default=dict)
    nodes = models.JSONField(default=list)
    connections = models.JSONField(default=list)
    chat_input = models.CharField(max_length=200, blank=True)
    chat_output = models.CharField(max_length=200, blank=True)
    chat_history = models.CharField(max_length=200, blank=True)
    requirements = models.TextField(blank=True)
    environment = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["flow__name", "-version"]
        constraints = [models.UniqueConstraint(fields=["flow", "version"], name="unique_flow_version")]

    def __str__(self) -> str:
        return f"{self.flow.name}:{self.version}"

    def get_absolute_url(self) -> str:
        return reverse("flows:version", args=[self.flow.name, self.version])

    @property
    def snapshot_dir(self) -> Path:
        return Path(settings.FLOWDEPLOY_FLOWS_DIR) / self.content_hash

    @property
    def is_chat(self) -> bool:
        return bool(self.chat_input)

    @property
    def short_hash(self) -> str:
        return self.content_hash[:12]

    def description(self) -> dict:
        return {"inputs": self.inputs, "outputs": self.outputs, "nodes": self.nodes}

    def connection_names(self) -> list[str]:
        return [entry["name"] for entry in self.connections]

    def form_inputs(self) -> dict:
        """The inputs a person types in; a chat flow's history is kept by the chat itself."""
        return {name: spec for name, spec in self.inputs.items() if name != self.chat_history}

    def has_data_file(self) -> bool:
        return (self.snapshot_dir / "data.jsonl").is_file()


class RunStatus(models.TextChoices):
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


FINAL_RUN_STATES = (RunStatus.COMPLETED, RunStatus.FAILED)
STALE_AFTER = timedelta(minutes=5)


class RunQuerySet(models.QuerySet):
    def stale(self) -> "RunQuerySet":
        return self.filter(status=RunStatus.RUNNING, heartbeat_at__lt=timezone.now() - STALE_AFTER)


class RunBase(models.Model):
    """What a single test run and a bulk test run share: a small state machine with a heartbeat."""

    flow_version = models.ForeignKey(FlowVersion, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    error = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_RUN_STATES

    def claim(self) -> bool:
        """Move Queued (or Running with a dead heartbeat) to Running; False if another worker has it."""
        now = timezone.now()
        claimable = models.Q(status=RunStatus.QUEUED) | models.Q(
            status=RunStatus.RUNNING, heartbeat_at__lt=now - STALE_AFTER
        )
        claimed = (
            type(self)
            .objects.filter(claimable, pk=self.pk)
            .update(status=RunStatus.RUNNING, started_at=now, heartbeat_at=now)
        )
        if claimed:
            self.refresh_from_db()
        return claimed == 1

    def beat(self) -> None:
        type(self).objects.filter(pk=self.pk).update(heartbeat_at=timezone.now())

    def finish(self, status: str, **fields) -> None:
        fields.update(status=status, finished_at=timezone.now(), heartbeat_at=timezone.now())
        type(self).objects.filter(pk=self.pk, status=RunStatus.RUNNING).update(**fields)
        self.refresh_from_db()

    @property
    def seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class TestRun(RunBase):
    """One line through a flow, from the flow's Test page or its chat box."""

    __test__ = False  # not a pytest class

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    chat_session = models.UUIDField(null=True, blank=True, db_index=True)
    inputs = models.JSONField(default=dict)
    outputs = models.JSONField(default=dict)
    node_runs = models.JSONField(default=list)
    duration = models.FloatField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Test run {self.id} of {self.flow_version}"

    def get_absolute_url(self) -> str:
        return reverse("flows:test_run", args=[self.id])

    def chat_answer(self) -> str:
        output = self.outputs.get(self.flow_version.chat_output) if self.outputs else None
        return output if isinstance(output, str) else ("" if output is None else str(output))


class BulkRun(RunBase):
    """A flow version over every line of a JSONL file; it remembers the exact version it ran."""

    name = models.CharField(max_length=200)
    data_file_name = models.CharField(max_length=255)
    total_lines = models.PositiveIntegerField(default=0)
    completed_lines = models.PositiveIntegerField(default=0)
    failed_lines = models.PositiveIntegerField(default=0)
    notification_id = models.BigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("flows:bulk_run", args=[self.pk])

    @property
    def data_path(self) -> Path:
        return Path(settings.FLOWDEPLOY_RUNS_DIR) / "bulk" / str(self.pk) / "data.jsonl"

    @property
    def done_lines(self) -> int:
        return self.completed_lines + self.failed_lines

    @property
    def progress_percent(self) -> int:
        return int(100 * self.done_lines / self.total_lines) if self.total_lines else 0


class BulkRunLine(models.Model):
    run = models.ForeignKey(BulkRun, related_name="lines", on_delete=models.CASCADE)
    index = models.PositiveIntegerField()
    inputs = models.JSONField(default=dict)
    outputs = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    error = models.JSONField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="unique_bulk_line")]

    def __str__(self) -> str:
        return f"{self.run} line {self.index + 1}"
