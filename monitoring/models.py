"""How a deployment's inference data is collected and kept (the gateway collects it: serving/collector.py)."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

DEFAULT_SAMPLING_PERCENT = 100.0
DEFAULT_RETENTION_DAYS = 30
MIN_SAMPLING_PERCENT = 0.01
MAX_RETENTION_DAYS = 3650


class DataCollectionPolicy(models.Model):
    """The sampling rate and retention of one deployment's collected data.

    Keyed by the endpoint and deployment names, like the folder the data lives in: the data of a deleted
    deployment keeps its retention until it expires, and a deployment created again with the same name is the
    same data asset. A deployment without a row samples 100% and keeps 30 days. Whether it collects at all is
    the deployment's own switch (`Deployment.data_collection`, "Inference data collection").
    """

    endpoint_name = models.CharField(max_length=32)
    deployment_name = models.CharField(max_length=32)
    sampling_percent = models.FloatField(
        default=DEFAULT_SAMPLING_PERCENT,
        validators=[MinValueValidator(MIN_SAMPLING_PERCENT), MaxValueValidator(100.0)],
        help_text="The percentage of scored requests whose inputs and outputs are collected.",
    )
    retention_days = models.PositiveIntegerField(
        default=DEFAULT_RETENTION_DAYS,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RETENTION_DAYS)],
        help_text="Collected hours older than this are removed.",
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["endpoint_name", "deployment_name"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint_name", "deployment_name"], name="unique_collection_policy")
        ]
        verbose_name_plural = "data collection policies"

    def __str__(self) -> str:
        return f"{self.endpoint_name}/{self.deployment_name}: {self.sampling_percent:g}%, {self.retention_days} days"

    @property
    def sampling_rate(self) -> float:
        """As the gateway takes it: from 0 to 1."""
        return self.sampling_percent / 100


REQUEST_RECORDS_RETENTION_DAYS = 8  # the Monitoring tab looks back a week at most


class RequestRecord(models.Model):
    """One request scored by the gateway, as it measured it (serving/metrics.py), like a line of Azure's online
    endpoint traffic log. Keyed by endpoint and deployment names: a deleted deployment's history stays until it
    expires. `deployment_name` is "" for a request refused before a deployment was picked (401, 404 deployment)."""

    record_id = models.CharField(max_length=80, unique=True)  # "<gateway host>-<pid>-<sequence>"
    time = models.DateTimeField()  # when the gateway received the request
    endpoint_name = models.CharField(max_length=32)
    deployment_name = models.CharField(max_length=32, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    status = models.PositiveSmallIntegerField(help_text="The HTTP status the client got.")
    model_status = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The HTTP status the instance answered; empty when none answered."
    )
    total_ms = models.FloatField(help_text="Total latency in the gateway, in milliseconds.")
    model_ms = models.FloatField(null=True, blank=True, help_text="Time spent in the instance, in milliseconds.")
    request_bytes = models.PositiveBigIntegerField(default=0)
    response_bytes = models.PositiveBigIntegerField(default=0)
    throttled = models.BooleanField(default=False)
    timed_out = models.BooleanField(default=False)
    streamed = models.BooleanField(default=False)

    class Meta:
        ordering = ["-time"]
        indexes = [models.Index(fields=["endpoint_name", "deployment_name", "time"], name="request_record_by_time")]

    def __str__(self) -> str:
        return f"{self.endpoint_name}/{self.deployment_name} {self.status} at {self.time:%Y-%m-%d %H:%M:%S}"

    @property
    def is_error(self) -> bool:
        return self.status >= 400


class InstanceSample(models.Model):
    """An instance's CPU time and memory at one moment, read from /proc by beat (monitoring.resources); the CPU
    usage of an interval is the difference of two samples' `cpu_seconds`."""

    time = models.DateTimeField()
    endpoint_name = models.CharField(max_length=32)
    deployment_name = models.CharField(max_length=32)
    instance_name = models.CharField(max_length=64)
    cpu_seconds = models.FloatField(help_text="User and system CPU time of the instance's processes so far.")
    memory_bytes = models.PositiveBigIntegerField(help_text="Resident memory of the instance's processes.")

    class Meta:
        ordering = ["-time"]
        indexes = [models.Index(fields=["endpoint_name", "deployment_name", "time"], name="instance_sample_by_time")]

    def __str__(self) -> str:
        return f"{self.instance_name} at {self.time:%Y-%m-%d %H:%M:%S}"


class Span(models.Model):
    """One OpenTelemetry span an instance exported (promptflow's flow span, a span per node, the LLM calls under
    them), stored as monitoring.tracing decoded it. A trace is the spans of one `trace_id`; promptflow puts the
    request id the gateway sent (`x-request-id`) on its spans as `request_id`."""

    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True)
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, blank=True)
    start = models.DateTimeField()
    duration_ms = models.FloatField()
    status = models.CharField(max_length=8, default="Unset")  # Unset, Ok, Error
    status_message = models.TextField(blank=True)
    attributes = models.JSONField(default=dict)
    events = models.JSONField(default=list)
    endpoint_name = models.CharField(max_length=32)
    deployment_name = models.CharField(max_length=32)
    instance_name = models.CharField(max_length=64, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    # Tokens of an LLM call (the span that carries `llm.usage.*`), for the token consumption chart.
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["start"]
        constraints = [models.UniqueConstraint(fields=["trace_id", "span_id"], name="unique_span")]
        indexes = [
            models.Index(fields=["endpoint_name", "deployment_name", "start"], name="span_by_time"),
            models.Index(fields=["request_id"], name="span_by_request"),
            models.Index(fields=["trace_id"], name="span_by_trace"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.trace_id}/{self.span_id})"

    @property
    def is_root(self) -> bool:
        return not self.parent_span_id
