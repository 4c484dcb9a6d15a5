"""Retention and rotation: nothing the studio writes grows without bound.

Beat runs `run()` every FLOWDEPLOY_RETENTION_INTERVAL seconds (endpoints.tasks.retain). Each part has its
setting (.env.example lists them):

- the gateway's in-flight hash: entries of instances that no published document names and no instance row
  still running or draining knows (a drain reads them);
- instance logs and `make run`'s logs (<data>/logs): past FLOWDEPLOY_LOG_MAX_BYTES, emptied in place, their last
  FLOWDEPLOY_LOG_KEEP_BYTES kept in `<name>.1` (`rotate_log`);
- folders and rows of instances stopped more than FLOWDEPLOY_STOPPED_INSTANCE_RETENTION_DAYS ago;
- flow environment layers no flow version has used for FLOWDEPLOY_LAYER_RETENTION_DAYS, and logs and leftovers
  of failed builds older than FLOWDEPLOY_BUILD_LOG_RETENTION_DAYS (runtime/retention.py);
- bulk run data files (and scratch folders) of runs finished more than FLOWDEPLOY_RUN_DATA_RETENTION_DAYS ago;
- deployment events beyond the newest FLOWDEPLOY_EVENTS_PER_DEPLOYMENT of each deployment (a crash loop writes
  two or three every restart, for as long as it lasts).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from endpoints import publishing
from endpoints.models import DeploymentEvent, Instance, InstanceState
from flows.models import FINAL_RUN_STATES, BulkRun, FlowVersion
from runtime import retention as runtime_retention
from runtime.environments import environment_key
from serving import routing

logger = logging.getLogger(__name__)

DAY = 24 * 3600
ROTATED = "[flowdeploy] the end of {name} when it was rotated ({removed} earlier bytes removed); it goes on there\n"


def run() -> dict[str, int]:
    """Every retention step; one that fails is logged and the others still run. What each removed."""
    steps = {
        "inflight": prune_inflight,
        "instance_logs": rotate_instance_logs,
        "run_logs": rotate_run_logs,
        "stopped_instances": prune_stopped_instances,
        "layers": prune_layers,
        "build_logs": prune_failed_builds,
        "run_data": prune_run_data,
        "events": prune_events,
    }
    done = {}
    for name, step in steps.items():
        try:
            done[name] = step()
        except Exception:
            logger.exception("retention step %s failed", name)
    return done


# --- the gateway's in-flight hash ---------------------------------------------------------------------------


def prune_inflight() -> int:
    client = publishing.client()
    # Rows first, documents second: an instance published between the two reads is in the second.
    keep = {str(pk) for pk in Instance.objects.exclude(state=InstanceState.STOPPED).values_list("pk", flat=True)}
    keep |= routing.published_instance_ids(client)
    return routing.prune_inflight(client, keep)


# --- logs ---------------------------------------------------------------------------------------------------


def rotate_log(path: Path, max_bytes: int, keep_bytes: int) -> int:
    """Past `max_bytes`, keep the file's last `keep_bytes` (from a line start) in `<name>.1` and empty the file in
    place; returns the bytes removed.

    The writer (an instance's gunicorn, a `make run` process) holds the file open with O_APPEND, so the file
    is truncated in place, never renamed: its next line lands at the new start, with no hole before it. The
    tail goes to `<name>.1` rather than back into the file, where it could land in the middle of a line the
    writer is writing (an unbuffered print is two writes). Lines written between the last read and the
    truncation (microseconds) are lost.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return 0
    try:
        size = os.fstat(fd).st_size
        if size <= max_bytes:
            return 0
        start = max(0, size - keep_bytes)
        tail = os.pread(fd, size - start, start) if keep_bytes else b""
        for _ in range(3):  # what the writer added while we read; a fast writer is not chased for long
            end = os.fstat(fd).st_size
            if end <= size:
                break
            read_from = max(size, end - keep_bytes)
            more = os.pread(fd, end - read_from, read_from) if keep_bytes else b""
            tail = (tail if read_from == size else b"") + more
            size = end
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    tail = tail[-keep_bytes:] if keep_bytes else b""
    newline = tail.find(b"\n")  # the kept part starts at a line
    tail = tail[newline + 1 :] if newline >= 0 else b""
    removed = size - len(tail)
    kept = path.with_name(path.name + ".1")
    partial = kept.with_name(kept.name + ".partial")
    partial.write_bytes(ROTATED.format(name=path.name, removed=removed).encode() + tail)
    os.replace(partial, kept)
    return removed


def _rotate_all(paths) -> int:
    rotated = 0
    for path in paths:
        if rotate_log(path, settings.FLOWDEPLOY_LOG_MAX_BYTES, settings.FLOWDEPLOY_LOG_KEEP_BYTES):
            rotated += 1
    return rotated


def rotate_instance_logs() -> int:
    return _rotate_all((Path(settings.FLOWDEPLOY_DEPLOYMENTS_DIR) / "instances").glob("*/instance.log"))


def rotate_run_logs() -> int:
    """`make run` writes each process's output to <data>/logs/<name>.log (scripts/run.py)."""
    return _rotate_all((Path(settings.DATA_DIR) / "logs").glob("*.log"))


# --- stopped instances --------------------------------------------------------------------------------------


def prune_stopped_instances() -> int:
    """Folders (log, home) and rows of instances stopped long ago; folders no row knows, once as old."""
    age = timedelta(days=settings.FLOWDEPLOY_STOPPED_INSTANCE_RETENTION_DAYS)
    old = Instance.objects.filter(state=InstanceState.STOPPED, stopped_at__lt=timezone.now() - age)
    removed = 0
    for instance in old.select_related("deployment__endpoint"):
        shutil.rmtree(instance.folder, ignore_errors=True)
        removed += Instance.objects.filter(pk=instance.pk, state=InstanceState.STOPPED).delete()[0]
    folders = Path(settings.FLOWDEPLOY_DEPLOYMENTS_DIR) / "instances"
    if folders.is_dir():
        known = {str(pk) for pk in Instance.objects.values_list("pk", flat=True)}
        cutoff = time.time() - age.total_seconds()
        for folder in folders.iterdir():
            if folder.name not in known and _modified_before(folder, cutoff):
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed


def _modified_before(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except OSError:
        return False


# --- environment layers -------------------------------------------------------------------------------------


def wanted_layers() -> set[str]:
    requirements = FlowVersion.objects.values_list("requirements", flat=True).distinct()
    return {environment_key(text) for text in requirements}


def prune_layers() -> int:
    root = Path(settings.FLOWDEPLOY_RUNTIME_DIR)
    max_age = settings.FLOWDEPLOY_LAYER_RETENTION_DAYS * DAY
    removed = runtime_retention.prune_layers(root, wanted_layers(), max_age)
    if removed:
        logger.info("Removed %d unused environment layer(s): %s", len(removed), ", ".join(removed))
    return len(removed)


def prune_failed_builds() -> int:
    root = Path(settings.FLOWDEPLOY_RUNTIME_DIR)
    return len(runtime_retention.prune_failed_builds(root, settings.FLOWDEPLOY_BUILD_LOG_RETENTION_DAYS * DAY))


# --- bulk run data ------------------------------------------------------------------------------------------


def prune_run_data() -> int:
    """The uploaded data file of each bulk run finished long ago (its results stay in the database), data
    folders no run knows, and scratch folders (`run-*`) a killed worker left behind, once as old."""
    age = timedelta(days=settings.FLOWDEPLOY_RUN_DATA_RETENTION_DAYS)
    cutoff = timezone.now() - age
    removed = 0
    finished = BulkRun.objects.filter(status__in=FINAL_RUN_STATES, finished_at__lt=cutoff)
    for run in finished.only("pk"):
        folder = run.data_path.parent
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    runs = Path(settings.FLOWDEPLOY_RUNS_DIR)
    oldest = time.time() - age.total_seconds()
    bulk = runs / "bulk"
    if bulk.is_dir():
        known = {str(pk) for pk in BulkRun.objects.values_list("pk", flat=True)}
        for folder in bulk.iterdir():
            if folder.name not in known and _modified_before(folder, oldest):
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    if runs.is_dir():
        for scratch in runs.glob("run-*"):
            if _modified_before(scratch, oldest):
                shutil.rmtree(scratch, ignore_errors=True)
                removed += 1
    return removed


# --- deployment events --------------------------------------------------------------------------------------


def prune_events() -> int:
    """Keep the newest FLOWDEPLOY_EVENTS_PER_DEPLOYMENT events of each deployment."""
    keep = settings.FLOWDEPLOY_EVENTS_PER_DEPLOYMENT
    crowded = (
        DeploymentEvent.objects.values("deployment")
        .annotate(count=Count("id"))
        .filter(count__gt=keep)
        .values_list("deployment", flat=True)
    )
    removed = 0
    for deployment_id in crowded:
        events = DeploymentEvent.objects.filter(deployment_id=deployment_id)
        oldest_kept = events.order_by("-id").values_list("id", flat=True)[keep - 1]
        removed += events.filter(id__lt=oldest_kept).delete()[0]
    return removed
