"""Provisioning, deletion, reconciling and the stale-job reaper racing each other: nothing lost, nothing left.

Every end state is checked the same way: the rows are gone, no instance process runs, the gateway's
routing no longer names the deployment, and no notification is left running (the bell would poll forever).
"""

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from support import wait_for

from django.conf import settings
from django.db import connections
from django.utils import timezone

from endpoints import models as endpoint_models
from endpoints import provisioning, publishing, services, tasks
from endpoints.models import (
    PROVISIONING,
    Deployment,
    DeploymentState,
    Endpoint,
    Instance,
    InstanceState,
    Phase,
)
from flows.models import Flow, FlowVersion
from serving import launcher, routing
from workspace import notifications
from workspace.models import Notification

ROOT = Path(__file__).resolve().parents[2]


# --- helpers ------------------------------------------------------------------------------------------------


def instance_processes() -> list[int]:
    """Pids of every instance process (sandbox or gunicorn) of this test session."""
    marker = f"--chdir\0{settings.FLOWDEPLOY_DEPLOYMENTS_DIR}/instances/".encode()
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except (OSError, ValueError):
            continue
    return pids


def started_processes(instance_id: str) -> int:
    """How many times this instance runs: processes naming it whose parent does not (one per start)."""

    def names_it(pid: str) -> bool:
        try:
            return instance_id.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    roots = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        pid = cmdline.parent.name
        if not names_it(pid):
            continue
        try:
            parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        if not names_it(parent):
            roots += 1
    return roots


def running_notifications(user) -> list[str]:
    return list(Notification.objects.filter(user=user, level=Notification.Level.RUNNING).values_list("body", flat=True))


def assert_nothing_left(endpoint_name: str, user, endpoint_deleted: bool) -> None:
    assert not Deployment.objects.filter(endpoint__name=endpoint_name).exists()
    assert not Instance.objects.exists()
    wait_for(lambda: not instance_processes(), timeout=20, message=f"instance processes left: {instance_processes()}")
    raw = publishing.client().get(routing.route_key(endpoint_name))
    if endpoint_deleted:
        assert raw is None
        assert not Endpoint.objects.filter(name=endpoint_name).exists()
    elif raw is not None:
        assert json.loads(raw)["deployments"] == {}
    assert running_notifications(user) == []


def start_deployment(import_flow, user, endpoint_name: str, flow: str = "chat-stream-offline") -> Deployment:
    """Create the deployment as the wizard does: rows, the provisioning task, a running notification."""
    version = import_flow(flow)
    endpoint = Endpoint.objects.filter(name=endpoint_name).first() or services.create_endpoint(endpoint_name, user=user)
    return services.create_or_update_deployment(endpoint, "blue", version, user=user, vm_size="Standard_DS1_v2")


def phase_of(deployment: Deployment) -> str | None:
    return Deployment.objects.filter(pk=deployment.pk).values_list("phase", flat=True).first()


def delete(what: str, deployment: Deployment, user) -> None:
    deployment.refresh_from_db()
    if what == "endpoint":
        services.delete_endpoint(deployment.endpoint, user=user)
    else:
        services.delete_deployment(deployment, user=user)


# --- deletion against provisioning, with the real worker ---------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("what", ["deployment", "endpoint"])
@pytest.mark.parametrize("moment", ["right-after-create", "probing", "succeeded"])
def test_it_deletes_whatever_the_moment(celery_worker, gateway_url, import_flow, django_user_model, what, moment):
    """Deleted right after Create, while Probing or after success: the row ends deleted, no instance process
    is left, routing no longer names it, and both notifications end (none stays running)."""
    user = django_user_model.objects.create_user("deleter", password="deleter-pass-1")
    deployment = start_deployment(import_flow, user, "ep-race")
    if moment == "probing":
        wait_for(lambda: phase_of(deployment) == Phase.PROBING, timeout=120, interval=0.02, message="no Probing")
    elif moment == "succeeded":
        wait_for(lambda: phase_of(deployment) == Phase.SUCCEEDED, timeout=120, message="never succeeded")
    delete(what, deployment, user)
    wait_for(
        lambda: not Deployment.objects.filter(pk=deployment.pk).exists(),
        timeout=120,
        message=f"the deployment stayed {phase_of(deployment)}",
    )
    if what == "endpoint":
        wait_for(lambda: not Endpoint.objects.filter(name="ep-race").exists(), timeout=30)
    assert_nothing_left("ep-race", user, endpoint_deleted=what == "endpoint")
    deletion = Notification.objects.get(user=user, title__startswith="Delete")
    assert deletion.level == Notification.Level.SUCCESS
    provisioning_note = Notification.objects.get(user=user, title=provisioning.NOTIFICATION_TITLE)
    assert provisioning_note.level != Notification.Level.RUNNING


def _worker_env(live_server_url: str) -> dict[str, str]:
    from django.db import connection

    db = connection.settings_dict
    assert db["ENGINE"].endswith("sqlite3"), "this test starts a worker on the SQLite test database"
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": f"sqlite:///{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "FLOWDEPLOY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "FLOWDEPLOY_STUDIO_URL": live_server_url,
    }


class Recorder:
    def __init__(self):
        self.calls = []

    def delay(self, *args):
        self.calls.append(args)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_job_whose_worker_died_is_taken_over_and_hands_over_to_the_deletion(
    celery_worker, gateway_url, live_server, import_flow, django_user_model, monkeypatch, tmp_path
):
    """The worker provisioning a deployment is killed while Probing; the deployment is deleted. Once the job's
    heartbeat is stale, the job runs again, sees Deleting, stops the instance it had started and hands over;
    the deletion then removes the rest."""
    from config.celery import app

    user = django_user_model.objects.create_user("deleter", password="deleter-pass-1")
    queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-killable"
    hostname = f"killable-{os.getpid()}"
    log = (tmp_path / "worker.log").open("w+")
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "--concurrency", "1"]
    command += ["--loglevel", "INFO", "--hostname", f"{hostname}@%h"]
    worker = subprocess.Popen(
        command,
        cwd=ROOT,
        env=_worker_env(live_server.url),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        name = f"{hostname}@{os.uname().nodename}"
        wait_for(lambda: app.control.ping(destination=[name], timeout=0.5), timeout=60, message="no killable worker")
        version = import_flow("chat-stream-offline")
        endpoint = services.create_endpoint("ep-killed", user=user)
        deployment = Deployment.objects.create(
            endpoint=endpoint, name="blue", flow_version=version, vm_size="Standard_DS1_v2", created_by=user
        )
        note = notifications.notify(
            user, provisioning.NOTIFICATION_TITLE, "Creating…", link=deployment.get_absolute_url(), level="running"
        )
        Deployment.objects.filter(pk=deployment.pk).update(notification_id=note.pk)
        tasks.provision.apply_async((deployment.pk,), queue=queue)
        wait_for(lambda: phase_of(deployment) == Phase.PROBING, timeout=120, interval=0.02, message="no Probing")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # mid-phase: the job, its worker and nothing else
        worker.wait(timeout=10)
        log.close()
    (started,) = Instance.objects.filter(deployment=deployment)
    assert launcher.is_running(started.pid, str(started.id)), "the killed job's instance runs on, detached"

    deletions = Recorder()
    real_deletion = tasks.delete_deployment
    monkeypatch.setattr(tasks, "delete_deployment", deletions)
    services.delete_deployment(deployment, user=user)
    deployment.refresh_from_db()
    assert deployment.state == DeploymentState.DELETING
    assert deployment.claimed_by.startswith(f"{PROVISIONING}:"), "the dead job still holds it"
    # A deletion cannot take the deployment from a holder whose heartbeat is fresh.
    assert not Deployment.claim_for_deletion(deployment.pk, Deployment.new_holder("delete"))

    stale = timezone.now() - endpoint_models.HEARTBEAT_STALE_AFTER - timedelta(seconds=1)
    Deployment.objects.filter(pk=deployment.pk).update(heartbeat_at=stale)
    tasks.provision.delay(deployment.pk)  # what the broker does with the dead worker's unacknowledged task

    def handed_over() -> bool:
        deployment.refresh_from_db()
        return deployment.claimed_by == ""

    wait_for(handed_over, timeout=60, message=f"the job did not hand over: {deployment.claimed_by}")
    started.refresh_from_db()
    assert started.state == InstanceState.STOPPED
    assert not launcher.is_running(started.pid, str(started.id))
    assert deployment.state == DeploymentState.DELETING, "the job never writes over Deleting"
    assert deployment.live_generation == 0, "it never went live"
    messages = list(deployment.events.values_list("message", flat=True))
    assert "Provisioning stopped: the deployment is being deleted." in messages

    (call,) = deletions.calls
    real_deletion.delay(*call)
    wait_for(lambda: not Deployment.objects.filter(pk=deployment.pk).exists(), timeout=60, message="not deleted")
    assert_nothing_left("ep-killed", user, endpoint_deleted=False)
    assert Notification.objects.get(user=user, title="Delete deployment").level == Notification.Level.SUCCESS


# --- two reconcile runs on one crashed instance ---------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_two_reconcile_runs_restart_a_crashed_instance_once(celery_worker, import_flow):
    """Two reconcile runs at once on a crashed instance: one claims it (Crashed → Starting) and starts exactly one
    new process; the other finds it taken."""
    version = import_flow("chat-stream-offline")
    endpoint = services.create_endpoint("ep-crash")
    deployment = services.create_or_update_deployment(endpoint, "blue", version, vm_size="Standard_DS1_v2")
    wait_for(lambda: phase_of(deployment) == Phase.SUCCEEDED, timeout=120, message="never succeeded")
    (instance,) = Instance.objects.filter(deployment=deployment, state=InstanceState.READY)
    os.killpg(instance.pid, signal.SIGKILL)
    wait_for(lambda: not launcher.is_running(instance.pid, str(instance.id)), timeout=10)
    wait_for(lambda: started_processes(str(instance.id)) == 0, timeout=10)
    provisioning.reconcile()
    instance.refresh_from_db()
    assert instance.state == InstanceState.CRASHED and instance.restarts == 1
    Instance.objects.filter(pk=instance.pk).update(next_restart_at=timezone.now() - timedelta(seconds=1))

    barrier = threading.Barrier(2)
    errors = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            provisioning.reconcile()
        except Exception as exc:  # reported below, with the thread's traceback lost but its message kept
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert started_processes(str(instance.id)) == 1
    instance.refresh_from_db()
    assert instance.state == InstanceState.STARTING and launcher.is_running(instance.pid, str(instance.id))
    restarted = deployment.events.filter(message__startswith=f"Restarted instance {instance.ordinal}").count()
    assert restarted == 1

    def ready() -> bool:
        provisioning.reconcile()
        instance.refresh_from_db()
        return instance.state == InstanceState.READY

    wait_for(ready, timeout=60, interval=0.5, message="the restarted instance never became ready")
    assert started_processes(str(instance.id)) == 1


# --- the stale-job reaper and a job that drains -------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_reaper_leaves_a_draining_job_alone(celery_worker, gateway_url, import_flow, monkeypatch):
    """An update waits ~20 s for a request in flight to its old instance; the reaper (here with an 8 s stale
    limit) runs all along. The job beats while it drains, so it is never failed, and ends Succeeded."""
    version = import_flow("chat-stream-offline")
    endpoint = services.create_endpoint("ep-drain")
    deployment = services.create_or_update_deployment(
        endpoint, "blue", version, vm_size="Standard_DS1_v2", request_timeout_ms=15000
    )
    wait_for(lambda: phase_of(deployment) == Phase.SUCCEEDED, timeout=120, message="never succeeded")
    (old,) = Instance.objects.filter(deployment=deployment, state=InstanceState.READY)
    client = publishing.client()
    client.hset(routing.INFLIGHT_KEY, str(old.id), 1)  # a request the gateway still has in flight to it
    monkeypatch.setattr(endpoint_models, "HEARTBEAT_STALE_AFTER", timedelta(seconds=8))

    services.create_or_update_deployment(endpoint, "blue", version, instance_count=1)
    seen = set()

    def finished() -> bool:
        provisioning._fail_stale_jobs()
        state = Deployment.objects.values_list("state", flat=True).get(pk=deployment.pk)
        seen.add(state)
        if Instance.objects.filter(pk=old.pk, state=InstanceState.DRAINING).exists():
            seen.add("draining")
        return state not in (DeploymentState.CREATING, DeploymentState.UPDATING)

    wait_for(finished, timeout=120, interval=0.5, message="the update did not finish")
    deployment.refresh_from_db()
    assert "draining" in seen, "the old instance was drained"
    assert DeploymentState.FAILED not in seen
    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    assert deployment.failure_reason == ""
    old.refresh_from_db()
    assert old.state == InstanceState.STOPPED
    assert not deployment.events.filter(message__contains="stopped responding").exists()
    client.hdel(routing.INFLIGHT_KEY, str(old.id))


# --- the claim itself, without processes ----------------------------------------------------------------------


@pytest.fixture
def queued(db) -> Deployment:
    flow = Flow.objects.create(name="claims")
    version = FlowVersion.objects.create(flow=flow, version=1, content_hash="0" * 64, source="folder")
    endpoint = Endpoint.objects.create(name="ep-claims")
    return Deployment.objects.create(endpoint=endpoint, name="blue", flow_version=version)


def _stale(deployment: Deployment) -> None:
    stale = timezone.now() - endpoint_models.HEARTBEAT_STALE_AFTER - timedelta(seconds=1)
    Deployment.objects.filter(pk=deployment.pk).update(heartbeat_at=stale)


def _job(deployment: Deployment) -> str:
    holder = Deployment.new_holder(PROVISIONING)
    assert Deployment.claim_for_provisioning(deployment.pk, holder)
    assert deployment.advance(holder, Phase.VALIDATING, "Checking.")
    return holder


def test_the_reaper_wins_when_it_writes_failed_first(queued):
    """The reaper fails a job whose heartbeat went stale; the job's Succeeded, written afterwards, matches no row."""
    holder = _job(queued)
    _stale(queued)
    provisioning._fail_stale_jobs()
    queued.refresh_from_db()
    assert queued.state == DeploymentState.FAILED and "stopped responding" in queued.failure_reason
    assert not queued.finish(holder, DeploymentState.SUCCEEDED, "Deployment is ready.")
    queued.refresh_from_db()
    assert queued.state == DeploymentState.FAILED
    assert queued.keep_claim(holder) is None, "the job learns that it lost the deployment"


def test_the_job_wins_when_it_writes_succeeded_first(queued):
    """A job that wrote Succeeded is never failed by the reaper, however old its heartbeat."""
    holder = _job(queued)
    assert queued.finish(holder, DeploymentState.SUCCEEDED, "Deployment is ready.")
    _stale(queued)
    provisioning._fail_stale_jobs()
    queued.refresh_from_db()
    assert queued.state == DeploymentState.SUCCEEDED and queued.failure_reason == ""


def test_the_reaper_spares_a_job_that_beats(queued):
    holder = _job(queued)
    _stale(queued)
    assert queued.keep_claim(holder) == DeploymentState.CREATING
    provisioning._fail_stale_jobs()
    queued.refresh_from_db()
    assert queued.state == DeploymentState.CREATING and queued.claimed_by == holder


def test_a_job_writes_nothing_over_deleting(queued):
    """Once the deployment is Deleting, the job's phases, final states and going live all match no row."""
    holder = _job(queued)
    Deployment.objects.filter(pk=queued.pk).update(state=DeploymentState.DELETING, phase=Phase.DELETING)
    assert not queued.advance(holder, Phase.PROBING, "Probing.")
    assert not queued.finish(holder, DeploymentState.SUCCEEDED, "Deployment is ready.")
    assert not queued.finish(holder, DeploymentState.FAILED, "Broken.")
    job = provisioning.Job(queued, holder)
    with pytest.raises(provisioning.Cancelled) as cancelled:
        job.check()
    assert cancelled.value.deleting
    with pytest.raises(provisioning.Cancelled):
        provisioning._go_live(job)
    queued.refresh_from_db()
    assert (queued.state, queued.phase, queued.live_generation) == (DeploymentState.DELETING, Phase.DELETING, 0)
    assert queued.endpoint.traffic == {}


def test_a_deletion_waits_for_the_provisioning_job(queued):
    """A deletion takes the deployment only from a job that released it, or whose heartbeat went stale."""
    holder = _job(queued)
    Deployment.objects.filter(pk=queued.pk).update(state=DeploymentState.DELETING, phase=Phase.DELETING)
    deleter = Deployment.new_holder("delete")
    assert not Deployment.claim_for_deletion(queued.pk, deleter)
    assert queued.release(holder)
    assert Deployment.claim_for_deletion(queued.pk, deleter)
    assert not Deployment.claim_for_provisioning(queued.pk, Deployment.new_holder(PROVISIONING))


def test_a_dead_jobs_claim_is_taken_over(queued):
    holder = _job(queued)
    Deployment.objects.filter(pk=queued.pk).update(state=DeploymentState.DELETING, phase=Phase.DELETING)
    assert not Deployment.claim_for_provisioning(queued.pk, Deployment.new_holder(PROVISIONING)), "fresh: no"
    _stale(queued)
    again = Deployment.new_holder(PROVISIONING)
    assert Deployment.claim_for_provisioning(queued.pk, again), "stale: the job runs again, to hand over"
    assert queued.keep_claim(holder) is None


def test_a_lost_deletion_is_resumed_by_the_reconciler(queued, monkeypatch):
    """A Deleting deployment whose deletion task was lost (nobody beat for too long) is dispatched again, once."""
    sent = Recorder()
    monkeypatch.setattr(tasks, "delete_deployment", sent)
    Deployment.objects.filter(pk=queued.pk).update(
        state=DeploymentState.DELETING, phase=Phase.DELETING, deletion_notification_id=42
    )
    _stale(queued)
    provisioning._resume_deletions()
    provisioning._resume_deletions()
    assert sent.calls == [(queued.pk, 42)]


def test_a_lost_provisioning_task_is_dispatched_again(queued, monkeypatch):
    """A deployment queued long ago that no worker took (its task was lost) is dispatched again, once."""
    sent = Recorder()
    monkeypatch.setattr(tasks, "provision", sent)
    long_ago = timezone.now() - endpoint_models.HEARTBEAT_STALE_AFTER - timedelta(seconds=1)
    Deployment.objects.filter(pk=queued.pk).update(updated_at=long_ago)
    provisioning._resume_queued_jobs()
    provisioning._resume_queued_jobs()
    assert sent.calls == [(queued.pk,)]
    holder = Deployment.new_holder(PROVISIONING)
    assert Deployment.claim_for_provisioning(queued.pk, holder), "the dispatched job claims it as usual"


def test_a_queued_update_is_claimed_from_a_stale_holder(queued):
    """An update queued while a dead holder's claim is left on the row is still taken."""
    Deployment.objects.filter(pk=queued.pk).update(claimed_by="provision:dead")
    assert not Deployment.claim_for_provisioning(queued.pk, Deployment.new_holder(PROVISIONING)), "fresh: no"
    _stale(queued)
    assert Deployment.claim_for_provisioning(queued.pk, Deployment.new_holder(PROVISIONING))
