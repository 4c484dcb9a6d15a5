"""Retention and rotation (endpoints/retention.py, runtime/retention.py): what the studio writes stays bounded."""

import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from support import wait_for

from django.utils import timezone

from endpoints import publishing, retention
from endpoints.models import Deployment, DeploymentState, Endpoint, Instance, InstanceState
from flows.models import BulkRun, Flow, FlowVersion, RunStatus
from runtime import retention as runtime_retention
from runtime.environments import environment_key
from serving import routing

DAY = 24 * 3600


@pytest.fixture
def deployment(db) -> Deployment:
    flow = Flow.objects.create(name="retained")
    version = FlowVersion.objects.create(flow=flow, version=1, content_hash="1" * 64, source="folder")
    endpoint = Endpoint.objects.create(name="ep-retained")
    return Deployment.objects.create(
        endpoint=endpoint, name="blue", flow_version=version, state=DeploymentState.SUCCEEDED, live_generation=1
    )


@pytest.fixture
def data_dirs(settings, tmp_path) -> Path:
    settings.DATA_DIR = tmp_path
    settings.FLOWDEPLOY_DEPLOYMENTS_DIR = tmp_path / "deployments"
    settings.FLOWDEPLOY_RUNS_DIR = tmp_path / "runs"
    settings.FLOWDEPLOY_RUNTIME_DIR = tmp_path / "runtime"
    return tmp_path


def _age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then))


# --- the gateway's in-flight hash ---------------------------------------------------------------------------


@pytest.mark.integration
def test_it_prunes_inflight_counts_of_instances_that_no_longer_exist(redis_url, deployment):
    """Counts of instances no published document names and no live row knows go; the others stay."""
    client = publishing.client()
    client.delete(routing.INFLIGHT_KEY)
    published = "published-instance"
    document = {
        "name": "ep-inflight",
        "version": 1,
        "auth_type": "key",
        "key_digests": [],
        "traffic": {"blue": 100},
        "mirror_traffic": {},
        "deployments": {"blue": {"instances": [{"id": published, "url": "http://127.0.0.1:1"}]}},
    }
    routing.publish(client, document, b"k" * 32)
    draining = Instance.objects.create(deployment=deployment, generation=1, ordinal=1, state=InstanceState.DRAINING)
    stopped = Instance.objects.create(deployment=deployment, generation=1, ordinal=2, state=InstanceState.STOPPED)
    counts = {published: 0, str(draining.id): 2, str(stopped.id): 0, "deleted-long-ago": 0, "crashed-gateway": 3}
    client.hset(routing.INFLIGHT_KEY, mapping=counts)
    try:
        assert retention.prune_inflight() == 3
        left = {key.decode() for key in client.hkeys(routing.INFLIGHT_KEY)}
        assert left == {published, str(draining.id)}
        assert retention.prune_inflight() == 0
    finally:
        routing.withdraw(client, "ep-inflight")
        client.delete(routing.INFLIGHT_KEY)


# --- logs ---------------------------------------------------------------------------------------------------


def _fill(path: Path, lines: int) -> None:
    with path.open("a") as handle:
        for number in range(lines):
            handle.write(f"line {number:07d} " + "x" * 90 + "\n")


def test_it_empties_a_log_in_place_and_keeps_its_tail(tmp_path):
    """Past the limit, the log's last lines (whole ones) go to instance.log.1 behind a note, and the log is emptied
    in place: the writer's O_APPEND descriptor goes on writing at its start, with no hole of zero bytes."""
    log = tmp_path / "instance.log"
    writer = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # as serving/launcher.py opens it
    try:
        _fill(log, 20_000)  # about 2 MB
        size = log.stat().st_size
        removed = retention.rotate_log(log, max_bytes=1024 * 1024, keep_bytes=64 * 1024)
        assert 0 < removed < size
        os.write(writer, b"written after the rotation\n")
    finally:
        os.close(writer)
    assert log.read_bytes() == b"written after the rotation\n"
    kept = (tmp_path / "instance.log.1").read_text().splitlines()
    assert kept[0] == (
        f"[flowdeploy] the end of instance.log when it was rotated ({removed} earlier bytes removed); it goes on there"
    )
    assert kept[1].startswith("line ") and len(kept[1]) == len(kept[2])  # a whole line
    assert kept[-1].startswith("line 0019999")
    assert size - removed <= 64 * 1024
    assert retention.rotate_log(log, max_bytes=1024 * 1024, keep_bytes=64 * 1024) == 0  # small: untouched


def _ticks(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines if re.fullmatch(r"tick \d{8} y{100}", line)]


def test_it_rotates_the_log_of_a_process_that_keeps_writing(tmp_path):
    """A process writing its log all along, unbuffered like an instance: the log stays bounded, without a hole,
    and what it writes after a rotation follows the kept tail."""
    log = tmp_path / "instance.log"
    script = "for n in range(10_000_000):\n    print(f'tick {n:08d} ' + 'y' * 100, flush=True)\n"
    handle = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # as instances run: a print is two writes
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=handle, stderr=handle, env=env)
    os.close(handle)

    def grown() -> bool:
        assert writer.poll() is None, f"the writer exited with {writer.returncode}: {log.read_text()[-500:]}"
        return log.stat().st_size > 300 * 1024

    try:
        for _ in range(5):
            wait_for(grown, timeout=60, interval=0.05, message=f"the log stayed at {log.stat().st_size} bytes")
            assert retention.rotate_log(log, max_bytes=256 * 1024, keep_bytes=32 * 1024) > 0
        wait_for(lambda: log.stat().st_size > 10 * 1024, timeout=60, interval=0.05)
    finally:
        writer.kill()
        writer.wait()
    data = log.read_bytes()
    assert b"\0" not in data, "no hole: the writer appends at the new start"
    kept = _ticks((tmp_path / "instance.log.1").read_text().splitlines())
    after = _ticks(data.decode().splitlines())
    assert kept == sorted(kept) and after == sorted(after)
    assert kept[-1] < after[0]
    assert len(kept) > 20 and (tmp_path / "instance.log.1").stat().st_size <= 32 * 1024 + 200


@pytest.mark.django_db
def test_it_rotates_instance_logs_and_make_runs_logs(settings, data_dirs):
    settings.FLOWDEPLOY_LOG_MAX_BYTES = 100 * 1024
    settings.FLOWDEPLOY_LOG_KEEP_BYTES = 10 * 1024
    instance_log = data_dirs / "deployments" / "instances" / "some-id" / "instance.log"
    worker_log = data_dirs / "logs" / "worker.log"
    small_log = data_dirs / "logs" / "beat.log"
    for path in (instance_log, worker_log, small_log):
        path.parent.mkdir(parents=True, exist_ok=True)
    _fill(instance_log, 2000)
    _fill(worker_log, 2000)
    _fill(small_log, 10)
    small = small_log.read_bytes()
    done = retention.run()
    assert done["instance_logs"] == 1 and done["run_logs"] == 1
    assert instance_log.stat().st_size < 11 * 1024
    assert worker_log.stat().st_size < 11 * 1024
    assert small_log.read_bytes() == small


# --- stopped instances --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_removes_instances_stopped_long_ago(settings, data_dirs, deployment):
    settings.FLOWDEPLOY_STOPPED_INSTANCE_RETENTION_DAYS = 7
    now = timezone.now()
    old = Instance.objects.create(
        deployment=deployment, generation=1, ordinal=1, state=InstanceState.STOPPED, stopped_at=now - timedelta(days=8)
    )
    recent = Instance.objects.create(
        deployment=deployment, generation=2, ordinal=1, state=InstanceState.STOPPED, stopped_at=now - timedelta(days=1)
    )
    live = Instance.objects.create(deployment=deployment, generation=3, ordinal=1, state=InstanceState.READY)
    for instance in (old, recent, live):
        instance.folder.mkdir(parents=True)
        instance.log_path.write_text("a log\n")
    orphan = data_dirs / "deployments" / "instances" / "no-such-row"
    orphan.mkdir()
    _age(orphan, 8)
    assert retention.prune_stopped_instances() == 2
    assert set(Instance.objects.values_list("pk", flat=True)) == {recent.pk, live.pk}
    assert not old.folder.exists() and not orphan.exists()
    assert recent.log_path.exists() and live.log_path.exists()


# --- environment layers and failed builds -------------------------------------------------------------------


def _layer(layers: Path, name: str) -> Path:
    folder = layers / name
    (folder / "bin").mkdir(parents=True)
    (folder / ".complete").write_text("requirements")
    (layers / f"{name}.log").write_text("pip output\n")
    return folder


def test_it_removes_layers_unused_for_long_enough(tmp_path):
    """A layer no flow version wants is marked, and removed once unused for the whole period; never one that a
    process runs from, nor one a build holds."""
    layers = tmp_path / "layers"
    wanted = _layer(layers, "base-x-wanted")
    unused = _layer(layers, "base-x-unused")
    in_use = _layer(layers, "base-x-in-use")
    building = _layer(layers, "base-x-building-now")
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(in_use / "bin" / "python")],
    )
    try:
        now = time.time()
        assert runtime_retention.prune_layers(tmp_path, {wanted.name}, max_age=30 * DAY, now=now) == []
        assert runtime_retention.unused_mark(layers, unused.name).exists()
        assert not runtime_retention.unused_mark(layers, wanted.name).exists()
        later = now + 29 * DAY
        assert runtime_retention.prune_layers(tmp_path, {wanted.name}, max_age=30 * DAY, now=later) == []
        with runtime_retention._unlocked(layers, building.name) as free:  # a build holds it
            assert free
            later = now + 31 * DAY
            removed = runtime_retention.prune_layers(tmp_path, {wanted.name}, max_age=30 * DAY, now=later)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert removed == [unused.name]
    assert not unused.exists() and not (layers / f"{unused.name}.log").exists()
    assert not runtime_retention.unused_mark(layers, unused.name).exists()
    assert wanted.exists() and in_use.exists() and building.exists()


def test_a_layer_wanted_again_loses_its_mark(tmp_path):
    layers = tmp_path / "layers"
    layer = _layer(layers, "base-x-again")
    runtime_retention.prune_layers(tmp_path, set(), max_age=DAY)
    assert runtime_retention.unused_mark(layers, layer.name).exists()
    runtime_retention.prune_layers(tmp_path, {layer.name}, max_age=DAY)
    assert not runtime_retention.unused_mark(layers, layer.name).exists()
    assert runtime_retention.prune_layers(tmp_path, set(), max_age=DAY, now=time.time() + 2 * DAY) == []


@pytest.mark.django_db
def test_it_keeps_the_layers_of_flow_versions(settings, data_dirs):
    """The layers flow versions need (by their requirements) stay; the others go after the retention period."""
    settings.FLOWDEPLOY_LAYER_RETENTION_DAYS = 0
    flow = Flow.objects.create(name="layered")
    FlowVersion.objects.create(flow=flow, version=1, content_hash="2" * 64, source="folder", requirements="slugify\n")
    layers = data_dirs / "runtime" / "layers"
    kept = _layer(layers, environment_key("slugify\n"))
    gone = _layer(layers, environment_key("some-old-package==1.0\n"))
    assert retention.prune_layers() == 0  # marked
    assert retention.prune_layers() == 1
    assert kept.exists() and not gone.exists()


def test_it_removes_logs_and_leftovers_of_failed_builds(tmp_path):
    layers = tmp_path / "layers"
    complete = _layer(layers, "base-x-complete")
    _age(layers / f"{complete.name}.log", 30)
    failed = layers / "base-x-failed.log"
    failed.write_text("ERROR: No matching distribution\n")
    _age(failed, 8)
    recent = layers / "base-x-failed-today.log"
    recent.write_text("ERROR: still being read\n")
    leftover = layers / "base-x-killed.building"
    (leftover / "lib").mkdir(parents=True)
    _age(leftover, 8)
    removed = runtime_retention.prune_failed_builds(tmp_path, max_age=7 * DAY)
    assert sorted(removed) == ["base-x-failed.log", "base-x-killed.building"]
    assert (layers / f"{complete.name}.log").exists() and recent.exists()


# --- bulk run data ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_removes_the_data_files_of_old_bulk_runs(settings, data_dirs):
    settings.FLOWDEPLOY_RUN_DATA_RETENTION_DAYS = 30
    flow = Flow.objects.create(name="bulky")
    version = FlowVersion.objects.create(flow=flow, version=1, content_hash="3" * 64, source="folder")
    now = timezone.now()

    def run(status, finished_days_ago):
        finished = now - timedelta(days=finished_days_ago) if finished_days_ago is not None else None
        bulk = BulkRun.objects.create(
            flow_version=version, name="run", data_file_name="data.jsonl", status=status, finished_at=finished
        )
        bulk.data_path.parent.mkdir(parents=True)
        bulk.data_path.write_text('{"x": 1}\n')
        return bulk

    old = run(RunStatus.COMPLETED, 31)
    old_failed = run(RunStatus.FAILED, 40)
    recent = run(RunStatus.COMPLETED, 2)
    running = run(RunStatus.RUNNING, None)
    orphan = data_dirs / "runs" / "bulk" / "999999"
    orphan.mkdir(parents=True)
    _age(orphan, 31)
    scratch = data_dirs / "runs" / "run-abc123"
    scratch.mkdir()
    _age(scratch, 31)
    fresh_scratch = data_dirs / "runs" / "run-def456"
    fresh_scratch.mkdir()
    assert retention.prune_run_data() == 4
    assert not old.data_path.exists() and not old_failed.data_path.exists()
    assert recent.data_path.exists() and running.data_path.exists()
    assert not orphan.exists() and not scratch.exists() and fresh_scratch.exists()
    assert BulkRun.objects.count() == 4, "the runs and their results stay"


# --- events of a crash loop ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_keeps_the_newest_events_of_a_crash_loop(settings, deployment):
    settings.FLOWDEPLOY_EVENTS_PER_DEPLOYMENT = 50
    other = Deployment.objects.create(endpoint=deployment.endpoint, name="green", flow_version=deployment.flow_version)
    deployment.event("Deployment created.")
    for restart in range(1, 201):
        deployment.event(f"Instance 1 exited; restarting in 300 s (restart {restart}).", level="warning")
    for n in range(10):
        other.event(f"Quiet event {n}.")
    assert retention.prune_events() == 151
    kept = list(deployment.events.order_by("id").values_list("message", flat=True))
    assert len(kept) == 50
    assert kept[0] == "Instance 1 exited; restarting in 300 s (restart 151)."
    assert kept[-1] == "Instance 1 exited; restarting in 300 s (restart 200)."
    assert other.events.count() == 10
    assert retention.prune_events() == 0


# --- beat -----------------------------------------------------------------------------------------------------


def test_beat_runs_retention_every_interval(settings):
    from config.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["retention"]
    assert entry["task"] == "endpoints.tasks.retain"
    assert entry["schedule"] == float(settings.FLOWDEPLOY_RETENTION_INTERVAL)
    app.loader.import_default_modules()
    assert "endpoints.tasks.retain" in app.tasks


@pytest.mark.django_db
def test_a_failing_step_does_not_stop_the_others(monkeypatch, settings, data_dirs, deployment):
    settings.FLOWDEPLOY_EVENTS_PER_DEPLOYMENT = 10
    for n in range(20):
        deployment.event(f"Event {n}.")

    def broken():
        raise OSError("disk on fire")

    monkeypatch.setattr(retention, "prune_inflight", broken)
    done = retention.run()
    assert "inflight" not in done
    assert done["events"] == 10
