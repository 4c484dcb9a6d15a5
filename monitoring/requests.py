"""The studio's side of request metrics: take the records the gateways ship to Redis (serving/metrics.py) into
`RequestRecord` rows, sample the instances' CPU and memory, and forget them (and spans) after a week."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from endpoints.models import Instance, InstanceState
from monitoring import resources
from monitoring.models import REQUEST_RECORDS_RETENTION_DAYS, InstanceSample, RequestRecord, Span
from serving import metrics as request_metrics

logger = logging.getLogger(__name__)

INGEST_BATCH = 2000
INGEST_LOCK = "flowdeploy:requests:ingest-lock"
INGEST_LOCK_SECONDS = 60
SAMPLED_STATES = (InstanceState.STARTING, InstanceState.READY, InstanceState.DRAINING)


def ingest(client, batch: int = INGEST_BATCH, max_batches: int = 50) -> int:
    """Store the records waiting in Redis; returns how many were taken.

    Safe to run twice at once: one run holds a lock, the other does nothing. Each batch is read, stored
    (a record already stored is skipped: its id is unique) and only then removed from the list, so a run that
    dies between the two stores nothing twice and loses nothing."""
    if not client.set(INGEST_LOCK, "1", nx=True, ex=INGEST_LOCK_SECONDS):
        return 0
    taken = 0
    try:
        for _ in range(max_batches):
            lines = client.lrange(request_metrics.RECORDS_KEY, 0, batch - 1)
            if not lines:
                break
            rows = [row for row in map(_row, lines) if row is not None]
            with transaction.atomic():
                RequestRecord.objects.bulk_create(rows, ignore_conflicts=True)
            client.ltrim(request_metrics.RECORDS_KEY, len(lines), -1)
            taken += len(lines)
            if len(lines) < batch:
                break
    finally:
        client.delete(INGEST_LOCK)
    return taken


def _row(line: bytes) -> RequestRecord | None:
    try:
        record = json.loads(line)
        return RequestRecord(
            record_id=str(record["id"])[:80],
            time=datetime.fromtimestamp(float(record["time"]), UTC),
            endpoint_name=str(record["endpoint"])[:32],
            deployment_name=str(record["deployment"] or "")[:32],
            request_id=str(record.get("request_id") or "")[:128],
            status=int(record["status"]),
            model_status=record.get("model_status"),
            total_ms=float(record["total_ms"]),
            model_ms=record.get("model_ms"),
            request_bytes=int(record.get("request_bytes") or 0),
            response_bytes=int(record.get("response_bytes") or 0),
            throttled=bool(record.get("throttled")),
            timed_out=bool(record.get("timed_out")),
            streamed=bool(record.get("streamed")),
        )
    except (ValueError, KeyError, TypeError) as error:
        logger.warning("Skipping a malformed request record (%s): %.200r", error, line)
        return None


def sample_instances() -> int:
    """One CPU and memory sample of every instance that runs; returns how many were taken."""
    instances = list(
        Instance.objects.filter(state__in=SAMPLED_STATES, pid__isnull=False).select_related("deployment__endpoint")
    )
    found = resources.usage([instance.pid for instance in instances])
    now = timezone.now()
    samples = [
        InstanceSample(
            time=now,
            endpoint_name=instance.deployment.endpoint.name,
            deployment_name=instance.deployment.name,
            instance_name=str(instance.id),
            cpu_seconds=found[instance.pid][0],
            memory_bytes=found[instance.pid][1],
        )
        for instance in instances
        if instance.pid in found
    ]
    InstanceSample.objects.bulk_create(samples)
    return len(samples)


def remove_old(now: datetime | None = None) -> tuple[int, int, int]:
    """Remove request records, instance samples and spans past the retention; returns how many of each."""
    cutoff = (now or timezone.now()) - timedelta(days=REQUEST_RECORDS_RETENTION_DAYS)
    records, _ = RequestRecord.objects.filter(time__lt=cutoff).delete()
    samples, _ = InstanceSample.objects.filter(time__lt=cutoff).delete()
    spans, _ = Span.objects.filter(start__lt=cutoff).delete()
    return records, samples, spans
