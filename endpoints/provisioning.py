"""The provisioning state machine, run by Celery: Validating → BuildingEnvironment → RegisteringModel →
CreatingDeployment → Probing → Succeeded, or Failed with a reason a user can act on.

Every step is safe to run again: the job claims the deployment with a conditional update, reuses
instances of its generation that are already running, and only then starts what is missing.

Every state write is conditional on the claim (Deployment.claimed_by): a provisioning job, a deletion and
the stale-job reaper never start or stop a deployment's processes at the same time, and none of them
overwrites another's final state. The job checks between phases, at each heartbeat and before going live;
when the deployment is being deleted it stops what it started and hands over to the deletion, which waits
for it. docs/reliability.md describes the protocol.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from config import local_services
from endpoints import capacity, publishing
from endpoints import models as endpoint_models
from endpoints.connections import connection_problems, provider_url
from endpoints.environment_variables import environment_variable_problems, name_problem
from endpoints.models import (
    DELETION,
    JOB_STATES,
    LIVE_INSTANCE_STATES,
    PROVISIONING,
    REAPER,
    Deployment,
    DeploymentState,
    Endpoint,
    Instance,
    InstanceState,
    Phase,
)
from flows.execution import EnvironmentBuildError, flow_environment, writable_copy
from serving import launcher
from workspace import identities, notifications
from workspace.models import Notification

logger = logging.getLogger(__name__)

CRASH_LOOP_RESTARTS = 5
HEARTBEAT_EVERY = 5.0
CHECK_EVERY = 1.0  # how often a waiting job looks whether it was cancelled
PORT_TAKEN = "Address already in use"
MAX_BACKOFF_SECONDS = 300
# How long a deletion waits in its worker for a provisioning job to hand over before it tries again later.
HANDOVER_WAIT = 30.0
# Deployments whose instances the reconciler restarts.
RESTARTABLE_STATES = (DeploymentState.SUCCEEDED, DeploymentState.FAILED, DeploymentState.UPDATING)


def stale_after() -> timedelta:
    return endpoint_models.HEARTBEAT_STALE_AFTER


class ProvisioningFailed(Exception):
    """A reason to show the user, as is."""


class Cancelled(Exception):
    """The job must stop: its deployment is being deleted (deleting=True), or another holder took its claim."""

    def __init__(self, deleting: bool):
        super().__init__("the deployment is being deleted" if deleting else "the job lost its claim")
        self.deleting = deleting


class Job:
    """A provisioning job's hold on its deployment: `check()` beats the heartbeat and raises Cancelled."""

    def __init__(self, deployment: Deployment, holder: str):
        self.deployment = deployment
        self.holder = holder
        self._checked = 0.0

    def check(self, every: float = 0.0) -> None:
        """Beat, and raise Cancelled if the deployment is being deleted or the claim is lost.

        With `every`, inside a polling loop, at most one check per that many seconds.
        """
        if every and time.monotonic() - self._checked < every:
            return
        self._checked = time.monotonic()
        state = self.deployment.keep_claim(self.holder)
        if state is None:
            raise Cancelled(deleting=False)
        if state == DeploymentState.DELETING:
            raise Cancelled(deleting=True)

    def beat(self) -> None:
        """Only the heartbeat, whatever the state: for work that must finish once begun (a drain)."""
        self.deployment.keep_claim(self.holder)

    def cancelled(self) -> Cancelled:
        """Why a conditional write of this job matched no row."""
        row = Deployment.objects.filter(pk=self.deployment.pk).values("state", "claimed_by").first()
        deleting = bool(row) and row["state"] == DeploymentState.DELETING and row["claimed_by"] == self.holder
        return Cancelled(deleting=deleting)


def _beating(beat: Callable[[], None], function: Callable[..., Any], *args: Any) -> Any:
    """Run `function` in a thread and call `beat` every HEARTBEAT_EVERY seconds until it returns.

    If `beat` raises (the job was cancelled), the exception goes up at once; the thread finishes on its own
    (an environment build stays useful to the next job). The thread's database connection is closed.
    """

    def run() -> Any:
        try:
            return function(*args)
        finally:
            connections.close_all()

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(run)
    try:
        while True:
            try:
                return future.result(timeout=HEARTBEAT_EVERY)
            except FutureTimeout:
                beat()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def claim(deployment_id: int, holder: str | None = None) -> Deployment | None:
    """Take the job, unless another worker holds it with a fresh heartbeat.

    A queued deployment that the reaper still holds (it stops what a dead job left, for seconds) is waited for.
    """
    holder = holder or Deployment.new_holder(PROVISIONING)
    deadline = time.monotonic() + HANDOVER_WAIT
    while not Deployment.claim_for_provisioning(deployment_id, holder):
        held = Deployment.objects.filter(
            pk=deployment_id, state__in=JOB_STATES, phase=Phase.QUEUED, claimed_by__startswith=f"{REAPER}:"
        )
        if time.monotonic() > deadline or not held.exists():
            return None
        time.sleep(0.2)
    return Deployment.objects.select_related("endpoint", "flow_version__flow", "created_by").get(pk=deployment_id)


def provision(deployment_id: int) -> None:
    holder = Deployment.new_holder(PROVISIONING)
    deployment = claim(deployment_id, holder)
    if deployment is None:
        return
    job = Job(deployment, holder)
    started = time.monotonic()
    try:
        job.check()  # a job taken over from a dead worker may find its deployment being deleted
        _validate(job)
        environment = _build_environment(job)
        _register_model(job)
        instances = _create_instances(job, environment)
        _probe(job, instances, environment)
        _go_live(job, instances)
    except Cancelled as cancelled:
        _hand_over(job, cancelled)
        return
    except ProvisioningFailed as exc:
        _fail(job, str(exc))
        return
    except Exception as exc:  # an unexpected error still ends the job with a reason
        logger.exception("provisioning %s failed", deployment)
        _fail(job, f"Unexpected error while provisioning: {exc}")
        return
    seconds = time.monotonic() - started
    if deployment.finish(holder, DeploymentState.SUCCEEDED, f"Deployment is ready, in {seconds:.1f} s."):
        _notify(deployment, f"{deployment} succeeded.", "success")
    else:  # deleted after it went live (the deletion stops its instances), or the reaper failed it first
        _hand_over(job, job.cancelled())


def _phase(job: Job, phase: str, message: str) -> None:
    if not job.deployment.advance(job.holder, phase, message):
        raise job.cancelled()
    _progress(job.deployment, f"{job.deployment}: {message}")


def _validate(job: Job) -> None:
    deployment = job.deployment
    _phase(job, Phase.VALIDATING, "Checking the flow, its connections, the endpoint's identity and capacity.")
    problems = connection_problems(deployment.flow_version, deployment.connection_overrides)
    # A deployment saved before the environment-variable rule is held to it before anything starts.
    problems += environment_variable_problems(deployment.environment_variables)
    if problems:
        raise ProvisioningFailed(" ".join(problems))
    # The roles the endpoint's identity holds now: reading connection secrets, and for a user-assigned
    # identity also pulling the environment and reading the model (workspace/identities.py).
    endpoint = deployment.endpoint
    missing = identities.missing_roles(endpoint, deployment.flow_version)
    if missing:
        raise ProvisioningFailed(" ".join(identities.missing_role_message(endpoint, r, s) for r, s in missing))
    shortfall = capacity.shortfall(deployment)
    if shortfall:
        raise ProvisioningFailed(shortfall)


def _build_environment(job: Job):
    requirements = job.deployment.flow_version.requirements
    detail = "the base runtime" if not requirements.strip() else "the base runtime plus the flow's requirements.txt"
    _phase(job, Phase.BUILDING_ENVIRONMENT, f"Preparing {detail} ({job.deployment.flow_version.environment}).")
    # pip can take minutes: keep the heartbeat fresh, and stop waiting as soon as the deployment is deleted
    try:
        return _beating(job.check, flow_environment, requirements)
    except EnvironmentBuildError as exc:
        raise ProvisioningFailed(f"The environment could not be built. {exc}") from exc


def _register_model(job: Job) -> None:
    version = job.deployment.flow_version
    if not version.snapshot_dir.is_dir():
        raise ProvisioningFailed(f"The snapshot of flow {version} is missing from {version.snapshot_dir}.")
    _phase(
        job,
        Phase.REGISTERING_MODEL,
        f"Using flow {version.flow.name}, version {version.version} ({version.short_hash}).",
    )


def instance_env_vars(deployment: Deployment, instance: Instance) -> dict[str, str]:
    # A restart of a deployment saved before the environment-variable rule leaves out what the rule refuses.
    env = {str(k): str(v) for k, v in deployment.environment_variables.items() if name_problem(str(k)) is None}
    outputs = list(deployment.flow_version.outputs)
    if deployment.selected_outputs and set(deployment.selected_outputs) != set(outputs):
        env["PROMPTFLOW_RESPONSE_INCLUDED_FIELDS"] = json.dumps(deployment.selected_outputs)
    if deployment.flow_version.connections:
        env["PF_HTTP_CONNECTION_PROVIDER_ENDPOINT"] = provider_url(instance)  # a fresh token for every start
    # "Application Insights diagnostics": spans to the studio over OTLP (getattr: a test passes a stand-in without it)
    if getattr(deployment, "app_insights_enabled", False):
        from monitoring import tracing

        for name in tracing.OVERRIDDEN:
            env.pop(name, None)
        env.update(tracing.instance_env(instance))
    return env


def start_instance(deployment: Deployment, instance: Instance, environment, holder: str = "") -> Instance | None:
    """Copy the flow for this instance and start its process on a fresh port.

    The process is recorded only if whoever started it may still do so: the provisioning job `holder` still
    holds the deployment, or (a restart, no holder) the instance is still the Starting one it claimed. Else
    the process is stopped again at once and None comes back: nothing is left running that no row knows.
    """
    flow_dir = instance.folder / "flow"
    if flow_dir.exists():
        shutil.rmtree(flow_dir)
    writable_copy(deployment.flow_version.snapshot_dir, flow_dir)
    size = deployment.size
    spec = launcher.InstanceSpec(
        instance_id=str(instance.id),
        flow_dir=flow_dir,
        environment=environment,
        port=local_services.free_port(),
        workers=size.workers,
        threads=size.threads,
        log_path=instance.log_path,
        request_timeout_s=max(1, deployment.request_timeout_ms // 1000),
        env_vars=instance_env_vars(deployment, instance),
    )
    pid = launcher.start(spec)
    if holder:
        allowed = Q(deployment__claimed_by=holder, deployment__state__in=JOB_STATES)
    else:
        allowed = Q(state=InstanceState.STARTING, pid=None)
    recorded = Instance.objects.filter(allowed, pk=instance.pk).update(
        port=spec.port, pid=pid, state=InstanceState.STARTING, started_at=timezone.now(), ready_at=None
    )
    if not recorded:
        launcher.stop(pid, str(instance.id), grace=5)
        return None
    instance.refresh_from_db()
    return instance


def _create_instances(job: Job, environment) -> list[Instance]:
    deployment = job.deployment
    count = deployment.instance_count
    _phase(
        job,
        Phase.CREATING_DEPLOYMENT,
        f"Starting {count} instance(s) of {deployment.vm_size} ({deployment.size.workers} worker(s) each).",
    )
    instances = []
    for ordinal in range(1, count + 1):
        job.check()
        instance, _ = Instance.objects.get_or_create(
            deployment=deployment, generation=deployment.generation, ordinal=ordinal
        )
        if instance.state == InstanceState.READY and launcher.is_running(instance.pid, str(instance.id)):
            instances.append(instance)  # a rerun of this job: it is already up
            continue
        started = start_instance(deployment, instance, environment, job.holder)
        if started is None:
            raise job.cancelled()
        instances.append(started)
    return instances


def _probe(job: Job, instances: list[Instance], environment) -> None:
    deployment = job.deployment
    _phase(job, Phase.PROBING, "Waiting for every instance to answer its readiness probe.")
    port_retries = 0
    deadline = time.monotonic() + settings.FLOWDEPLOY_PROBE_TIMEOUT
    pending = {instance.pk: instance for instance in instances}
    while pending:
        for key, instance in list(pending.items()):
            if launcher.healthy(instance.url, timeout=0.5):
                Instance.objects.filter(pk=key).update(state=InstanceState.READY, ready_at=timezone.now())
                del pending[key]
            elif not _still_running(instance):
                tail = launcher.log_tail(instance.log_path, 15)
                if PORT_TAKEN in tail and port_retries < 3:
                    # another process took the port between our check and gunicorn's bind
                    port_retries += 1
                    restarted = start_instance(deployment, instance, environment, job.holder)
                    if restarted is None:
                        raise job.cancelled()
                    pending[key] = restarted
                    continue
                raise ProvisioningFailed(
                    f"Instance {instance.ordinal} exited while starting. Last lines of its log:\n{tail}"
                )
        if not pending:
            break
        if time.monotonic() > deadline:
            waiting = ", ".join(str(i.ordinal) for i in pending.values())
            raise ProvisioningFailed(
                f"Instance(s) {waiting} did not become ready within {settings.FLOWDEPLOY_PROBE_TIMEOUT} s."
            )
        job.check(every=CHECK_EVERY)
        time.sleep(0.1)


def _still_running(instance: Instance, recheck_after: float = 0.5) -> bool:
    """Is the starting instance's process alive? Asked twice before saying no: a process caught between
    bubblewrap and the instance's exec can look gone for a moment, and a start must not fail on that."""
    if launcher.is_running(instance.pid, str(instance.id)):
        return True
    time.sleep(recheck_after)
    return launcher.is_running(instance.pid, str(instance.id))


def _go_live(job: Job, instances: list[Instance]) -> None:
    """Send traffic to the new generation, then drain and stop the one it replaces.

    Going live is one conditional update: a deployment being deleted (or a job that lost its claim) never
    goes live, and the first deployment's 100% traffic is written in the same transaction.
    """
    deployment = job.deployment
    job.check()
    previous = list(
        deployment.instances.filter(generation__lt=deployment.generation).exclude(state=InstanceState.STOPPED)
    )
    with transaction.atomic():
        held = Deployment.objects.filter(pk=deployment.pk, claimed_by=job.holder, state__in=JOB_STATES)
        if not held.update(live_generation=deployment.generation, failure_reason=""):
            raise job.cancelled()
        endpoint = Endpoint.objects.select_for_update().get(pk=deployment.endpoint_id)
        first = not endpoint.traffic and not endpoint.deleting
        if first:
            Endpoint.objects.filter(pk=endpoint.pk).update(traffic={deployment.name: 100}, updated_at=timezone.now())
    deployment.refresh_from_db()
    if first:
        deployment.event(f"Endpoint {endpoint.name} sends 100% of its traffic to {deployment.name}.")
    version = publishing.publish(deployment.endpoint)
    if previous:
        Instance.objects.filter(pk__in=[i.pk for i in previous]).update(state=InstanceState.DRAINING)
        deployment.event(
            f"Traffic moved to generation {deployment.generation}; draining {len(previous)} old instance(s)."
        )
        # The drain waits for requests in flight (up to the request timeout): the heartbeat goes on meanwhile,
        # so the reaper does not take a draining job for dead. A drain once begun is finished.
        _beating(job.beat, retire, deployment, previous, version)


def retire(deployment: Deployment, instances: list[Instance], version: int) -> None:
    """Stop instances once the gateway no longer sends them requests and has none in flight."""
    timeout = deployment.request_timeout_ms / 1000 + 5
    drained = publishing.wait_until_drained(deployment.endpoint, version, instances, timeout)
    if not drained:
        deployment.event("The gateway did not confirm the drain in time; stopping the old instances anyway.", "warning")
    for instance in instances:
        launcher.stop(instance.pid, str(instance.id), grace=max(5.0, deployment.request_timeout_ms / 1000))
        shutil.rmtree(instance.folder / "flow", ignore_errors=True)
    Instance.objects.filter(pk__in=[i.pk for i in instances]).update(
        state=InstanceState.STOPPED, stopped_at=timezone.now()
    )


def stop_instances(instances: QuerySet, grace: float = 5.0) -> int:
    """Stop every instance of `instances` that is not stopped, and mark it Stopped.

    Each mark is conditional on the pid and state that were stopped: an instance that a restart started
    meanwhile is found again and stopped too, so no process outlives its row. Returns how many were stopped.
    """
    stopped = 0
    for _ in range(5):
        pending = list(instances.exclude(state=InstanceState.STOPPED))
        if not pending:
            break
        for instance in pending:
            launcher.stop(instance.pid, str(instance.id), grace=grace)
            stopped += Instance.objects.filter(pk=instance.pk, pid=instance.pid, state=instance.state).update(
                state=InstanceState.STOPPED, stopped_at=timezone.now()
            )
    return stopped


def _stop_unpublished(deployment: Deployment) -> None:
    """Stop the instances of the deployment's generation when that generation never went live."""
    if deployment.live_generation != deployment.generation:
        stop_instances(deployment.instances.filter(generation=deployment.generation))


def _fail(job: Job, reason: str) -> None:
    deployment = job.deployment
    deployment.refresh_from_db()
    if deployment.claimed_by != job.holder:
        return  # the reaper (or a worker that took the job over) decided already
    if deployment.state == DeploymentState.DELETING:
        _hand_over(job, Cancelled(deleting=True))
        return
    _stop_unpublished(deployment)  # while the claim is held: nobody else stops them
    serving_old = deployment.live_generation and deployment.live_generation != deployment.generation
    note = " The previous version keeps serving." if serving_old else ""
    if deployment.finish(job.holder, DeploymentState.FAILED, reason + note, level="error", failure_reason=reason):
        _notify(deployment, f"{deployment} failed: {reason}{note}"[:1000], "error")
    else:
        _hand_over(job, job.cancelled())


def _hand_over(job: Job, cancelled: Cancelled) -> None:
    """The job stops. Being deleted: stop what it started that never went live, end its notification, release
    the claim so the deletion (which waits for it) stops the rest. Lost claim: the new holder decides."""
    deployment = job.deployment
    if not cancelled.deleting:
        logger.warning("provisioning of %s stopped: another worker or the reaper holds the deployment", deployment)
        return
    deployment.refresh_from_db()
    _stop_unpublished(deployment)
    deployment.event("Provisioning stopped: the deployment is being deleted.", "warning")
    _progress(deployment, f"{deployment}: provisioning stopped, the deployment is being deleted.", "info")
    deployment.release(job.holder)


NOTIFICATION_TITLE = "Prompt flow deployment"


def _deployment_link(deployment: Deployment) -> str:
    return deployment.get_absolute_url()


def _provisioning_note(deployment: Deployment) -> Notification | None:
    link = _deployment_link(deployment)
    if not link:
        return None
    return Notification.objects.filter(title=NOTIFICATION_TITLE, link=link).order_by("-created_at").first()


def _progress(deployment: Deployment, body: str, level: str = "running") -> bool:
    """Update the notification the wizard raised for this deployment, so the bell shows the phase."""
    note = _provisioning_note(deployment)
    if note is None:
        return False
    notifications.update(note.pk, body=body, level=level)
    return True


def _notify(deployment: Deployment, body: str, level: str) -> None:
    if _progress(deployment, body, level):
        return
    if deployment.created_by_id:
        link = _deployment_link(deployment)
        notifications.notify(deployment.created_by, NOTIFICATION_TITLE, body, link=link, level=level)


# --- deletion ---------------------------------------------------------------------------------


def stop_all_instances(deployment: Deployment) -> None:
    stop_instances(deployment.instances.all(), grace=max(5.0, deployment.request_timeout_ms / 1000))
    for instance in deployment.instances.all():
        shutil.rmtree(instance.folder, ignore_errors=True)


def _deletion_progress(notification_id: int | None, body: str, level: str = "running") -> None:
    if notification_id:
        notifications.update(notification_id, body=body, level=level)


def _end_provisioning_note(deployment: Deployment) -> None:
    """A deployment deleted before its job began (or ended) still has a running notification: end it."""
    note = _provisioning_note(deployment)
    if note is not None and note.level == Notification.Level.RUNNING:
        notifications.update(note.pk, body=f"{deployment} was deleted.", level=Notification.Level.INFO)


def _take_over(deployments: list[Deployment], holder: str, notification_id: int | None, what: str) -> bool:
    """Claim every deployment for the deletion. A provisioning job that holds one hands over at its next check
    (within seconds): wait up to HANDOVER_WAIT; False (and nothing held) when it has not, to try again later."""
    deadline = time.monotonic() + HANDOVER_WAIT
    told = False
    while True:
        # Claiming again what this deletion already holds beats its heartbeat.
        pending = [
            d
            for d in deployments
            if not Deployment.claim_for_deletion(d.pk, holder) and Deployment.objects.filter(pk=d.pk).exists()
        ]
        if not pending:
            return True
        if not told:
            _deletion_progress(notification_id, f"Deleting {what}: waiting for the provisioning job to stop.")
            told = True
        if time.monotonic() > deadline:
            for deployment in deployments:
                deployment.release(holder)
            return False
        time.sleep(0.2)


def delete_deployment(deployment_id: int, notification_id: int | None = None) -> bool:
    """Delete a deployment marked Deleting. False: a provisioning job still holds it; the task tries again."""
    deployment = Deployment.objects.select_related("endpoint").filter(pk=deployment_id).first()
    if deployment is None:
        _deletion_progress(notification_id, "The deployment was already deleted.", "success")
        return True
    if deployment.state != DeploymentState.DELETING:
        return True
    notification_id = notification_id or deployment.deletion_notification_id
    holder = Deployment.new_holder(DELETION)
    if not _take_over([deployment], holder, notification_id, str(deployment)):
        return False
    endpoint = deployment.endpoint
    deployment.set_phase(Phase.DELETING, "Removing the deployment from the endpoint's routing.")
    _deletion_progress(notification_id, f"Deleting {deployment}: draining requests in flight.")
    version = publishing.publish(endpoint)
    live = list(deployment.instances.filter(state__in=LIVE_INSTANCE_STATES))

    def keep() -> None:
        deployment.keep_claim(holder)

    timeout = deployment.request_timeout_ms / 1000 + 5
    _beating(keep, publishing.wait_until_drained, endpoint, version, live, timeout)
    _deletion_progress(notification_id, f"Deleting {deployment}: stopping {len(live)} instance(s).")
    _beating(keep, stop_all_instances, deployment)
    _end_provisioning_note(deployment)
    name, owner = str(deployment), deployment.created_by
    deleted, _ = Deployment.objects.filter(pk=deployment.pk, claimed_by=holder).delete()
    if not deleted:
        return True  # this deletion lost its claim (it stopped beating): the one that took it over finishes
    body = f"{name} was deleted; its instances were stopped."
    if notification_id:
        _deletion_progress(notification_id, body, "success")
    elif owner:
        notifications.notify(owner, "Delete deployment", body, link=reverse("endpoints:list"), level="success")
    return True


def delete_endpoint(endpoint_id: int, notification_id: int | None = None) -> bool:
    """Delete an endpoint marked deleting, with its deployments. False: a provisioning job still holds one."""
    endpoint = Endpoint.objects.filter(pk=endpoint_id, deleting=True).first()
    if endpoint is None:
        if not Endpoint.objects.filter(pk=endpoint_id).exists():
            _deletion_progress(notification_id, "The endpoint was already deleted.", "success")
        return True
    notification_id = notification_id or endpoint.deletion_notification_id
    deployments = list(endpoint.deployments.select_related("endpoint"))
    holder = Deployment.new_holder(DELETION)
    if not _take_over(deployments, holder, notification_id, f"endpoint {endpoint.name}"):
        return False
    _deletion_progress(notification_id, f"Deleting endpoint {endpoint.name}: revoking its keys and routing.")
    publishing.withdraw(endpoint.name)  # keys and routing gone from the gateway first

    def keep() -> None:
        for deployment in deployments:
            deployment.keep_claim(holder)

    for deployment in deployments:
        _deletion_progress(notification_id, f"Deleting endpoint {endpoint.name}: stopping {deployment.name}.")
        _beating(keep, stop_all_instances, deployment)
        _end_provisioning_note(deployment)
    name, owner = endpoint.name, endpoint.created_by
    endpoint.delete()
    publishing.withdraw(name)  # again: a publish that raced the first withdraw leaves nothing behind
    body = f"Endpoint {name} was deleted with {len(deployments)} deployment(s); its keys no longer work."
    if notification_id:
        _deletion_progress(notification_id, body, "success")
    elif owner:
        notifications.notify(owner, "Delete endpoint", body, link=reverse("endpoints:list"), level="success")
    return True


# --- reconciling ------------------------------------------------------------------------------


def backoff(restarts: int) -> timedelta:
    return timedelta(seconds=min(2 ** max(restarts - 1, 0), MAX_BACKOFF_SECONDS))


def reconcile() -> None:
    """Beat: restart dead instances with backoff, promote restarted ones, fail stale jobs, resume lost deletions.

    Safe to run twice at once: every instance change is a conditional update on the state that was seen, so
    of two runs that see the same crashed instance, one restarts it and the other finds it taken.
    """
    _fail_stale_jobs()
    _resume_queued_jobs()
    _resume_deletions()
    changed_endpoints = set()
    live = Instance.objects.select_related("deployment__endpoint", "deployment__flow_version").filter(
        deployment__state__in=RESTARTABLE_STATES, state__in=LIVE_INSTANCE_STATES
    )
    now = timezone.now()
    for instance in live:
        deployment = instance.deployment
        if instance.generation != deployment.live_generation:
            continue  # a provisioning job owns instances of a generation that is not live yet
        if instance.state == InstanceState.CRASHED:
            if instance.next_restart_at and instance.next_restart_at <= now:
                _restart(deployment, instance)
            continue
        starting = instance.state == InstanceState.STARTING and instance.pid is None and instance.started_at
        if starting and now - instance.started_at < stale_after():
            continue  # another reconcile run claimed it and is starting it now
        running = launcher.is_running(instance.pid, str(instance.id))
        if not running:
            if _record_crash(deployment, instance):
                changed_endpoints.add(deployment.endpoint)
        elif instance.state == InstanceState.STARTING and launcher.healthy(instance.url, timeout=0.5):
            promoted = Instance.objects.filter(pk=instance.pk, state=InstanceState.STARTING, pid=instance.pid).update(
                state=InstanceState.READY, ready_at=now
            )
            if promoted:
                deployment.event(f"Instance {instance.ordinal} is ready again after restart {instance.restarts}.")
                changed_endpoints.add(deployment.endpoint)
    for endpoint in changed_endpoints:
        publishing.publish(endpoint)


def _record_crash(deployment: Deployment, instance: Instance) -> bool:
    restarts = instance.restarts + 1
    tail = launcher.log_tail(instance.log_path, 20)
    delay = backoff(restarts)
    recorded = Instance.objects.filter(pk=instance.pk, state=instance.state, pid=instance.pid).update(
        state=InstanceState.CRASHED, restarts=restarts, last_exit=tail, next_restart_at=timezone.now() + delay
    )
    if not recorded:
        return False  # another reconcile run recorded it, or it was stopped meanwhile
    deployment.event(
        f"Instance {instance.ordinal} exited; restarting in {delay.total_seconds():.0f} s (restart {restarts}).",
        level="warning",
    )
    if restarts >= CRASH_LOOP_RESTARTS:
        reason = (
            f"CrashLoopBackOff: instance {instance.ordinal} has exited {restarts} times. Last lines of its log:\n{tail}"
        )
        Deployment.objects.filter(pk=deployment.pk).update(failure_reason=reason)
    return True


def _restart(deployment: Deployment, instance: Instance) -> bool:
    """Restart a crashed instance, if this run wins the claim on it (Crashed with this restart count → Starting)."""
    now = timezone.now()
    claimed = Instance.objects.filter(
        pk=instance.pk,
        state=InstanceState.CRASHED,
        restarts=instance.restarts,
        deployment__state__in=RESTARTABLE_STATES,
    ).update(state=InstanceState.STARTING, pid=None, port=None, started_at=now, ready_at=None)
    if not claimed:
        return False
    try:
        environment = flow_environment(deployment.flow_version.requirements)
    except EnvironmentBuildError as exc:
        Instance.objects.filter(pk=instance.pk, state=InstanceState.STARTING, pid=None).update(
            state=InstanceState.CRASHED, next_restart_at=timezone.now() + backoff(instance.restarts + 1)
        )
        deployment.event(f"Instance {instance.ordinal} cannot restart: {exc}", level="error")
        return False
    if start_instance(deployment, instance, environment) is None:
        return False  # stopped while it started (the deployment is being deleted)
    deployment.event(f"Restarted instance {instance.ordinal} (restart {instance.restarts}).")
    return True


def _fail_stale_jobs() -> None:
    """Fail provisioning jobs whose heartbeat went stale (their worker died).

    The failure is a conditional update on the holder and the stale heartbeat that were seen: a job that beat
    meanwhile, or wrote Succeeded first, is left alone; once Failed is written, the job's own final write
    matches no row. Failed or Succeeded: the first one written wins.
    """
    stale = timezone.now() - stale_after()
    jobs = Deployment.objects.filter(state__in=JOB_STATES, heartbeat_at__lt=stale).exclude(phase=Phase.QUEUED)
    minutes = max(1, int(stale_after().total_seconds() // 60))
    reason = f"The provisioning job stopped responding (no heartbeat for {minutes} minutes). Run the update again."
    for deployment in jobs.select_related("endpoint"):
        holder = Deployment.new_holder(REAPER)
        if not Deployment.claim_stale_job(deployment.pk, deployment.claimed_by, holder, reason):
            continue
        deployment.refresh_from_db()
        if deployment.live_generation != deployment.generation:
            stop_instances(deployment.instances.filter(generation=deployment.generation))
            note = " The previous version keeps serving." if deployment.live_generation else ""
        else:  # it died while draining: the new generation serves, the old one is no longer routed
            stop_instances(deployment.instances.filter(generation__lt=deployment.generation))
            note = " The new version serves."
        deployment.event(reason + note, level="error")
        deployment.release(holder)
        _notify(deployment, f"{deployment} failed: {reason}{note}"[:1000], "error")


def _resume_queued_jobs() -> None:
    """Dispatch again provisioning jobs queued long ago that no worker ever took (their task was lost).

    The conditional update marks the resume (updated_at), so one is sent per stale period; the job's own claim
    makes a duplicate harmless.
    """
    from endpoints import tasks

    now = timezone.now()
    waiting = Deployment.objects.filter(state__in=JOB_STATES, phase=Phase.QUEUED, updated_at__lt=now - stale_after())
    for deployment in waiting.only("pk", "updated_at"):
        if Deployment.objects.filter(pk=deployment.pk, updated_at=deployment.updated_at).update(updated_at=now):
            tasks.provision.delay(deployment.pk)


def _resume_deletions() -> None:
    """Dispatch again deletions whose task was lost (its worker died): Deleting, and nobody beat for too long.

    The conditional update clears the dead holder and marks the resume, so one resume is sent per stale period.
    """
    from endpoints import tasks

    now = timezone.now()
    stale = Q(heartbeat_at__lt=now - stale_after()) | Q(heartbeat_at=None)
    resumed_endpoints = set()
    for deployment in Deployment.objects.filter(stale, state=DeploymentState.DELETING).select_related("endpoint"):
        seen = Q(heartbeat_at=deployment.heartbeat_at) if deployment.heartbeat_at else Q(heartbeat_at=None)
        taken = Deployment.objects.filter(seen, pk=deployment.pk, claimed_by=deployment.claimed_by)
        if not taken.update(claimed_by="", heartbeat_at=now):
            continue
        endpoint = deployment.endpoint
        if endpoint.deleting:
            if endpoint.pk not in resumed_endpoints:
                resumed_endpoints.add(endpoint.pk)
                tasks.delete_endpoint.delay(endpoint.pk, endpoint.deletion_notification_id)
        else:
            tasks.delete_deployment.delay(deployment.pk, deployment.deletion_notification_id)
