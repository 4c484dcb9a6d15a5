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
