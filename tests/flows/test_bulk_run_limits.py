"""A bulk run can never hold a worker: it has deadlines, its stderr is drained, and runs have a queue of their own."""

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from support import wait_for

from flows import services
from flows.models import BulkRun, RunStatus

pytestmark = pytest.mark.integration


def _processes_naming(path: Path) -> list[int]:
    """The pids of every process whose command line names `path` (the bulk run's bwrap and its runner)."""
    marker = str(path).encode()
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except (OSError, ValueError):
            continue
    return pids


def _bulk(version, rows: list[str], user) -> BulkRun:
    data = "".join(row + "\n" for row in rows).encode()
    return services.start_bulk_run(version, data, "misbehaving.jsonl", user)


def test_it_routes_test_and_bulk_runs_to_a_queue_of_their_own(settings):
    from config.celery import app

    default = settings.CELERY_TASK_DEFAULT_QUEUE
    for task in ("flows.tasks.execute_test_run", "flows.tasks.execute_bulk_run"):
        assert app.amqp.router.route({}, task)["queue"].name == f"{default}-runs"
    for task in ("endpoints.tasks.reconcile", "flows.tasks.fail_stale_runs"):
        assert app.amqp.router.route({}, task)["queue"].name == default


@pytest.mark.django_db
def test_it_stops_a_line_that_hangs_and_kills_its_sandbox(import_flow, admin_user, settings):
    settings.FLOWDEPLOY_BULK_LINE_TIMEOUT = 15
    settings.FLOWDEPLOY_BULK_RUN_TIMEOUT = 600
    version = import_flow("misbehaving")
    run = _bulk(version, ['{"seconds": 0}', '{"seconds": -1}', '{"seconds": 0}'], admin_user)
    started = time.monotonic()
    services.execute_bulk_run(str(run.pk))
    run.refresh_from_db()
    assert time.monotonic() - started < 60
    assert run.status == RunStatus.FAILED
    assert run.error["code"] == "RunnerTimeout"
    assert run.error["message"] == (
        "Line 2 did not finish within 15 seconds (FLOWDEPLOY_BULK_LINE_TIMEOUT); the run was stopped."
    )
    assert (run.completed_lines, run.failed_lines) == (1, 0)
    assert _processes_naming(run.data_path) == []


@pytest.mark.django_db
def test_it_stops_a_run_past_its_overall_deadline(import_flow, admin_user, settings):
    """Each line is within the line timeout, the run as a whole is not."""
    settings.FLOWDEPLOY_BULK_LINE_TIMEOUT = 60
    settings.FLOWDEPLOY_BULK_RUN_TIMEOUT = 20
    version = import_flow("misbehaving")
    run = _bulk(version, ['{"seconds": 4}'] * 20, admin_user)
    started = time.monotonic()
    services.execute_bulk_run(str(run.pk))
    run.refresh_from_db()
    assert 20 <= time.monotonic() - started < 60
    assert run.status == RunStatus.FAILED
    assert run.error["message"].startswith(
        "The bulk run did not finish within 20 seconds (FLOWDEPLOY_BULK_RUN_TIMEOUT); it was stopped after "
    )
    assert 0 < run.completed_lines < 20
    assert _processes_naming(run.data_path) == []


@pytest.mark.django_db
def test_it_completes_a_run_that_writes_a_mebibyte_to_stderr(import_flow, admin_user, settings):
    """Nobody drained stderr: a pipe holds 64 KiB, so the runner blocked on its write forever."""
    settings.FLOWDEPLOY_BULK_LINE_TIMEOUT = 60
    version = import_flow("misbehaving")
    run = _bulk(version, ['{"stderr_bytes": 1048576}', '{"stderr_bytes": 1048576}'], admin_user)
    services.execute_bulk_run(str(run.pk))
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED, run.error
    assert [line.outputs["result"] for line in run.lines.all()] == ["slept 0.0 s after 1048576 bytes on stderr"] * 2


@pytest.mark.django_db(transaction=True)
def test_it_provisions_while_runs_hang_on_the_runs_queue(celery_worker, deploy, import_flow, admin_user):
    """Two hung runs fill the runs worker (concurrency 2); a deployment still provisions at once."""
    version = import_flow("misbehaving")
    hung = [_bulk(version, ['{"seconds": -1}'], admin_user) for _ in range(2)]

    def both_running() -> bool:
        return all(BulkRun.objects.get(pk=run.pk).status == RunStatus.RUNNING for run in hung)

    wait_for(both_running, timeout=60, message="the hung runs did not start")
    try:
        deploy("chat-stream-offline", endpoint="ep-queues")  # fails unless it succeeds within 180 s
        assert all(BulkRun.objects.get(pk=run.pk).status == RunStatus.RUNNING for run in hung)
    finally:
        for run in hung:
            for pid in _processes_naming(run.data_path):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def all_failed() -> bool:
        return all(BulkRun.objects.get(pk=run.pk).status == RunStatus.FAILED for run in hung)

    wait_for(all_failed, timeout=60, message="the killed runs were not failed")
