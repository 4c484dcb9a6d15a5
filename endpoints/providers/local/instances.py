"""Instance processes on this machine: start, probe, drain, stop, and restart the ones that died.

Every instance change is a conditional update on the state that was seen (and, for a job, on its claim), so a
provisioning job, a deletion, the reaper and two reconcile runs never start or stop the same process twice,
and no process outlives its row.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from config import local_services
from endpoints import models as endpoint_models
from endpoints import publishing
from endpoints.connections import provider_url
from endpoints.environment_variables import name_problem
from endpoints.jobs import CHECK_EVERY, Job, ProvisioningFailed
from endpoints.models import (
    JOB_STATES,
    LIVE_INSTANCE_STATES,
    Deployment,
    DeploymentState,
    Instance,
    InstanceState,
)
from flows.execution import EnvironmentBuildError, flow_environment, writable_copy
from serving import launcher

CRASH_LOOP_RESTARTS = 5
PORT_TAKEN = "Address already in use"
MAX_BACKOFF_SECONDS = 300
# Deployments whose instances the reconciler restarts.
RESTARTABLE_STATES = (DeploymentState.SUCCEEDED, DeploymentState.FAILED, DeploymentState.UPDATING)


def stale_after() -> timedelta:
    return endpoint_models.HEARTBEAT_STALE_AFTER


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


def create_instances(job: Job, environment) -> list[Instance]:
    """Start the instances of the deployment's generation that are not running yet (a rerun reuses the rest)."""
    deployment = job.deployment
    instances = []
    for ordinal in range(1, deployment.instance_count + 1):
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


def probe(job: Job, instances: list[Instance], environment) -> None:
    """Wait until every instance answers its readiness probe; ProvisioningFailed with its log when one exits."""
    deployment = job.deployment
    port_retries = 0
    deadline = time.monotonic() + settings.FLOWDEPLOY_PROBE_TIMEOUT
    pending = {instance.pk: instance for instance in instances}
    while pending:
        for key, instance in list(pending.items()):
            if launcher.healthy(instance.url, timeout=0.5):
                Instance.objects.filter(pk=key).update(state=InstanceState.READY, ready_at=timezone.now())
                del pending[key]
            elif not still_running(instance):
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


def still_running(instance: Instance, recheck_after: float = 0.5) -> bool:
    """Is the starting instance's process alive? Asked twice before saying no: a process caught between
    bubblewrap and the instance's exec can look gone for a moment, and a start must not fail on that."""
    if launcher.is_running(instance.pid, str(instance.id)):
        return True
    time.sleep(recheck_after)
    return launcher.is_running(instance.pid, str(instance.id))


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


def stop_all_instances(deployment: Deployment) -> None:
    stop_instances(deployment.instances.all(), grace=max(5.0, deployment.request_timeout_ms / 1000))
    for instance in deployment.instances.all():
        shutil.rmtree(instance.folder, ignore_errors=True)


# --- reconciling ------------------------------------------------------------------------------


def backoff(restarts: int) -> timedelta:
    return timedelta(seconds=min(2 ** max(restarts - 1, 0), MAX_BACKOFF_SECONDS))


def reconcile_instances() -> None:
    """Restart dead instances with backoff and promote restarted ones that answer their probe.

    Safe to run twice at once: every instance change is a conditional update on the state that was seen, so
    of two runs that see the same crashed instance, one restarts it and the other finds it taken.
    """
    changed_endpoints = set()
    live = Instance.objects.select_related("deployment__endpoint", "deployment__flow_version").filter(
        deployment__state__in=RESTARTABLE_STATES,
        state__in=LIVE_INSTANCE_STATES,
        deployment__endpoint__provider=endpoint_models.Provider.LOCAL,
    )
    now = timezone.now()
    for instance in live:
        deployment = instance.deployment
        if instance.generation != deployment.live_generation:
            continue  # a provisioning job owns instances of a generation that is not live yet
        if instance.state == InstanceState.CRASHED:
            if instance.next_restart_at and instance.next_restart_at <= now:
                restart(deployment, instance)
            continue
        starting = instance.state == InstanceState.STARTING and instance.pid is None and instance.started_at
        if starting and now - instance.started_at < stale_after():
            continue  # another reconcile run claimed it and is starting it now
        running = launcher.is_running(instance.pid, str(instance.id))
        if not running:
            if record_crash(deployment, instance):
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


def record_crash(deployment: Deployment, instance: Instance) -> bool:
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


def restart(deployment: Deployment, instance: Instance) -> bool:
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
