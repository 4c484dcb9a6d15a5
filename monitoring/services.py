"""Inference data collection, the studio's side: data assets, the collection policy, retention, lost records.

The gateway collects (serving/collector.py); the studio never touches the request path. It

- publishes the sampling rates to Redis, signed like the routing documents (`publish_policy`: on each change,
  and every minute from beat, so a Redis that lost them gets them back);
- reads the files the gateway wrote (monitoring/collected.py) for the data asset pages;
- removes hours past each deployment's retention (`remove_expired`, beat);
- shows what the gateway could not collect (`losses`: counts the gateway adds to Redis).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.exceptions import RedisError

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from endpoints.models import NAME_RE, Deployment
from monitoring import collected
from monitoring.models import (
    DEFAULT_RETENTION_DAYS,
    MAX_RETENTION_DAYS,
    MIN_SAMPLING_PERCENT,
    DataCollectionPolicy,
)
from serving import collector as collection
from serving.auth import routing_key

logger = logging.getLogger(__name__)


@dataclass
class DataAsset:
    """One deployment's collected data, shown like Azure's as `<ep>-<deployment>-model_inputs` / `-model_outputs`."""

    endpoint: str
    deployment: str
    row: Deployment | None  # None once the deployment is deleted (its data stays until it expires)
    policy: DataCollectionPolicy

    @property
    def folder(self) -> Path:
        return data_root() / self.endpoint / self.deployment

    @property
    def collecting(self) -> bool:
        return self.row is not None and self.row.data_collection

    @property
    def state(self) -> str:
        if self.row is None:
            return "Deployment deleted"
        return "On" if self.row.data_collection else "Off"

    @property
    def names(self) -> tuple[str, str]:
        return tuple(f"{self.endpoint}-{self.deployment}-{kind}" for kind in collection.KINDS)

    def usage(self) -> tuple[int, int]:
        return collected.usage(self.folder)

    def newest_hour(self) -> datetime | None:
        return collected.newest_hour(self.folder)


def data_root() -> Path:
    return Path(settings.FLOWDEPLOY_DATA_COLLECTION_DIR)


def valid_name(name: str) -> bool:
    return bool(NAME_RE.match(name or ""))


# Data assets


def list_assets() -> list[DataAsset]:
    """Every deployment with collection on, and every deployment folder with data (deleted deployments too)."""
    rows = {(d.endpoint.name, d.name): d for d in Deployment.objects.select_related("endpoint")}
    names = {key for key, row in rows.items() if row.data_collection}
    root = data_root()
    if root.is_dir():
        for endpoint in root.iterdir():
            if endpoint.is_dir() and valid_name(endpoint.name):
                names.update((endpoint.name, d.name) for d in endpoint.iterdir() if d.is_dir() and valid_name(d.name))
    policies = {(p.endpoint_name, p.deployment_name): p for p in DataCollectionPolicy.objects.all()}
    return [
        DataAsset(
            endpoint,
            deployment,
            rows.get((endpoint, deployment)),
            policies.get((endpoint, deployment)) or default_policy(endpoint, deployment),
        )
        for endpoint, deployment in sorted(names)
    ]


def get_asset(endpoint: str, deployment: str) -> DataAsset | None:
    """The data asset of a deployment that exists or left data; None otherwise (or for a name that is not one)."""
    if not valid_name(endpoint) or not valid_name(deployment):
        return None
    row = Deployment.objects.select_related("endpoint").filter(endpoint__name=endpoint, name=deployment).first()
    asset = DataAsset(endpoint, deployment, row, policy_for(endpoint, deployment))
    if row is None and not asset.folder.is_dir():
        return None
    return asset


# The policy


def default_policy(endpoint: str, deployment: str) -> DataCollectionPolicy:
    return DataCollectionPolicy(endpoint_name=endpoint, deployment_name=deployment)


def policy_for(endpoint: str, deployment: str) -> DataCollectionPolicy:
    """The deployment's policy, or an unsaved one with the defaults (100%, 30 days)."""
    found = DataCollectionPolicy.objects.filter(endpoint_name=endpoint, deployment_name=deployment).first()
    return found or default_policy(endpoint, deployment)


def clean_policy(sampling_percent, retention_days) -> tuple[float, int]:
    """The values as numbers, or ValidationError naming the field."""
    errors = {}
    try:
        sampling = float(sampling_percent)
    except (TypeError, ValueError):
        sampling = math.nan
    if not MIN_SAMPLING_PERCENT <= sampling <= 100:
        errors["sampling_percent"] = [f"Sampling rate must be a percentage from {MIN_SAMPLING_PERCENT:g} to 100."]
    try:
        retention = int(str(retention_days).strip())
    except (TypeError, ValueError):
        retention = 0
    if not 1 <= retention <= MAX_RETENTION_DAYS:
        errors["retention_days"] = [f"Retention must be a whole number of days from 1 to {MAX_RETENTION_DAYS}."]
    if errors:
        raise ValidationError(errors)
    return sampling, retention


def set_policy(endpoint: str, deployment: str, sampling_percent, retention_days, user=None) -> DataCollectionPolicy:
    """Save a deployment's sampling rate and retention; the gateway applies the rate within seconds."""
    if not valid_name(endpoint) or not valid_name(deployment):
        raise ValidationError({"deployment": "There is no such deployment."})
    sampling, retention = clean_policy(sampling_percent, retention_days)
    with transaction.atomic():
        policy, _ = DataCollectionPolicy.objects.update_or_create(
            endpoint_name=endpoint,
            deployment_name=deployment,
            defaults={"sampling_percent": sampling, "retention_days": retention, "updated_by": _user(user)},
        )
        publish_policy_on_commit()
    return policy


def publish_policy_on_commit() -> None:
    transaction.on_commit(_publish_quietly)


def _publish_quietly() -> None:
    try:
        publish_policy()
    except (RedisError, OSError) as error:  # beat publishes it again within a minute
        logger.warning("Could not publish the data collection policy to Redis: %s", error)


def publish_policy() -> dict:
    """Sign and store every deployment's sampling rate for the gateways (serving/collector.py)."""
    from endpoints.publishing import client

    rates = {
        f"{p.endpoint_name}/{p.deployment_name}": p.sampling_rate
        for p in DataCollectionPolicy.objects.exclude(sampling_percent__gte=100)
    }
    key = routing_key(settings.FLOWDEPLOY_SECRET_KEY or settings.SECRET_KEY)
    return collection.publish_policy(client(), rates, key)


def _user(user):
    return user if user is not None and user.is_authenticated else None


# Retention


def remove_expired(now: datetime | None = None) -> int:
    """Remove every deployment's hours older than its retention; returns the number of hour folders removed."""
    now = now or timezone.now()
    root = data_root()
    if not root.is_dir():
        return 0
    policies = {(p.endpoint_name, p.deployment_name): p.retention_days for p in DataCollectionPolicy.objects.all()}
    removed = 0
    for endpoint in sorted(root.iterdir()):
        if not endpoint.is_dir() or not valid_name(endpoint.name):
            continue
        for folder in sorted(endpoint.iterdir()):
            if not folder.is_dir() or not valid_name(folder.name):
                continue
            days = policies.get((endpoint.name, folder.name), DEFAULT_RETENTION_DAYS)
            removed += collected.remove_expired(folder, now - timedelta(days=days))
    if removed:
        logger.info("Data collection: removed %d hour folder(s) past their retention", removed)
    return removed


# What the gateway could not collect


def losses(endpoint: str, deployment: str) -> dict | None:
    """The gateway's counts of dropped and unwritten records (serving/collector.py); None when Redis does not answer."""
    from endpoints.publishing import client

    try:
        counts = collection.read_drops(client(), endpoint, deployment)
    except (RedisError, OSError):
        return None
    for field in ("first", "last"):
        stamp = counts[field]
        counts[field] = datetime.fromtimestamp(stamp, tz=UTC) if stamp is not None else None
    return counts
