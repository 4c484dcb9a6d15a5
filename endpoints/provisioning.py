"""The provisioning state machine, run by Celery: Validating → BuildingEnvironment → RegisteringModel →
CreatingDeployment → Probing → Succeeded, or Failed with a reason a user can act on.

Every step is safe to run again: the job claims the deployment with a conditional update, reuses
instances of its generation that are already running, and only then starts what is missing.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from config import local_services
from endpoints import capacity, publishing
from endpoints.connections import connection_problems, provider_url
from endpoints.environment_variables import environment_variable_problems, name_problem
from endpoints.models import (
    HEARTBEAT_STALE_AFTER,
    LIVE_INSTANCE_STATES,
    Deployment,
    DeploymentState,
    Instance,
    InstanceState,
    Phase,
)
from flows.execution import EnvironmentBuildError, flow_environment, writable_copy
from serving import launcher
from workspace import notifications
from workspace.models import Notification

logger = logging.getLogger(__name__)

CRASH_LOOP_RESTARTS = 5
HEARTBEAT_EVERY = 5.0
PORT_TAKEN = "Address already in use"
MAX_BACKOFF_SECONDS = 300


class ProvisioningFailed(Exception):
    """A reason to show the user, as is."""


def claim(deployment_id: int) -> Deployment | None:
    """Take the job, unless another worker holds it with a fresh heartbeat."""
    now = timezone.now()
    claimable = Q(phase=Phase.QUEUED) | Q(heartbeat_at__lt=now - HEARTBEAT_STALE_AFTER)
    taken = (
        Deployment.objects.filter(pk=deployment_id, state__in=(DeploymentState.CREATING, DeploymentState.UPDATING))
        .filter(claimable)
        .update(phase=Phase.VALIDATING, heartbeat_at=now)
    )
    if not taken:
        return None
    return Deployment.objects.select_related("endpoint", "flow_version__flow", "created_by").get(pk=deployment_id)


def provision(deployment_id: int) -> None:
    deployment = claim(deployment_id)
    if deployment is None:
        return
    started = time.monotonic()
    try:
        _validate(deployment)
        environment = _build_environment(deployment)
        _register_model(deployment)
        instances = _create_instances(deployment, environment)
        _probe(deployment, instances, environment)
        _go_live(deployment, instances)
    except ProvisioningFailed as exc:
        _fail(deployment, str(exc))
        return
    except Exception as exc:  # an unexpected error still ends the job with a reason
        logger.exception("provisioning %s failed", deployment)
        _fail(deployment, f"Unexpected error while provisioning: {exc}")
        return
    seconds = time.monotonic() - started
    Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.SUCCEEDED)
    deployment.set_phase(Phase.SUCCEEDED, f"Deployment is ready, in {seconds:.1f} s.")
    _notify(deployment, f"{deployment} succeeded.", "success")


def _validate(deployment: Deployment) -> None:
    _phase(deployment, Phase.VALIDATING, "Checking the flow, its connections and this machine's capacity.")
    problems = connection_problems(deployment.flow_version, deployment.connection_overrides)
    # A deployment saved before the environment-variable rule is held to it before anything starts.
    problems += environment_variable_problems(deployment.environment_variables)
    if problems:
        raise ProvisioningFailed(" ".join(problems))
    shortfall = capacity.shortfall(deployment)
    if shortfall:
        raise ProvisioningFailed(shortfall)


def _build_environment(deployment: Deployment):
    requirements = deployment.flow_version.requirements
    detail = "the base runtime" if not requirements.strip() else "the base runtime plus the flow's requirements.txt"
    _phase(deployment, Phase.BUILDING_ENVIRONMENT, f"Preparing {detail} ({deployment.flow_version.environment}).")
    # pip can take minutes: keep the heartbeat fresh so the reconciler does not take the job for dead
    with ThreadPoolExecutor(max_workers=1) as pool:
        build = pool.submit(flow_environment, requirements)
        while True:
            try:
                return build.result(timeout=HEARTBEAT_EVERY)
            except FutureTimeout:
                deployment.beat()
            except EnvironmentBuildError as exc:
                raise ProvisioningFailed(f"The environment could not be built. {exc}") from exc


def _register_model(deployment: Deployment) -> None:
    version = deployment.flow_version
    if not version.snapshot_dir.is_dir():
        raise ProvisioningFailed(f"The snapshot of flow {version} is missing from {version.snapshot_dir}.")
    _phase(
        deployment,
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
    return env


def start_instance(deployment: Deployment, instance: Instance, environment) -> Instance:
    """Copy the flow for this instance and start its process on a fresh port."""
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
    Instance.objects.filter(pk=instance.pk).update(
        port=spec.port, pid=pid, state=InstanceState.STARTING, started_at=timezone.now(), ready_at=None
    )
    instance.refresh_from_db()
    return instance


def _create_instances(deployment: Deployment, environment) -> list[Instance]:
    count = deployment.instance_count
    _phase(
        deployment,
        Phase.CREATING_DEPLOYMENT,
        f"Starting {count} instance(s) of {deployment.vm_size} ({deployment.size.workers} worker(s) each).",
    )
    instances = []
    for ordinal in range(1, count + 1):
        instance, _ = Instance.objects.get_or_create(
            deployment=deployment, generation=deployment.generation, ordinal=ordinal
        )
        if instance.state == InstanceState.READY and launcher.is_running(instance.pid, str(instance.id)):
            instances.append(instance)  # a rerun of this job: it is already up
            continue
        instances.append(start_instance(deployment, instance, environment))
        deployment.beat()
    return instances


def _probe(deployment: Deployment, instances: list[Instance], environment) -> None:
    _phase(deployment, Phase.PROBING, "Waiting for every instance to answer its readiness probe.")
    port_retries = 0
    deadline = time.monotonic() + settings.FLOWDEPLOY_PROBE_TIMEOUT
    pending = {instance.pk: instance for instance in instances}
    while pending:
        for key, instance in list(pending.items()):
            if launcher.healthy(instance.url, timeout=0.5):
                Instance.objects.filter(pk=key).update(state=InstanceState.READY, ready_at=timezone.now())
                del pending[key]
            elif not launcher.is_running(instance.pid, str(instance.id)):
                tail = launcher.log_tail(instance.log_path, 15)
                if PORT_TAKEN in tail and port_retries < 3:
                    # another process took the port between our check and gunicorn's bind
                    port_retries += 1
                    pending[key] = start_instance(deployment, instance, environment)
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
        deployment.beat()
        time.sleep(0.1)


def _go_live(deployment: Deployment, instances: list[Instance]) -> None:
    """Send traffic to the new generation, then drain and stop the one it replaces."""
    previous = list(
        deployment.instances.filter(generation__lt=deployment.generation).exclude(state=InstanceState.STOPPED)
    )
    Deployment.objects.filter(pk=deployment.pk).update(live_generation=deployment.generation, failure_reason="")
    deployment.refresh_from_db()
    endpoint = deployment.endpoint
    if not endpoint.traffic:
        endpoint.traffic = {deployment.name: 100}
        endpoint.save(update_fields=["traffic", "updated_at"])
        deployment.event(f"Endpoint {endpoint.name} sends 100% of its traffic to {deployment.name}.")
    version = publishing.publish(endpoint)
    if previous:
        Instance.objects.filter(pk__in=[i.pk for i in previous]).update(state=InstanceState.DRAINING)
        deployment.event(
            f"Traffic moved to generation {deployment.generation}; draining {len(previous)} old instance(s)."
        )
        retire(deployment, previous, version)


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


def _fail(deployment: Deployment, reason: str) -> None:
    deployment.refresh_from_db()
    new = list(deployment.instances.filter(generation=deployment.generation).exclude(state=InstanceState.STOPPED))
    if deployment.live_generation != deployment.generation:
        for instance in new:
            launcher.stop(instance.pid, str(instance.id), grace=5)
        Instance.objects.filter(pk__in=[i.pk for i in new]).update(
            state=InstanceState.STOPPED, stopped_at=timezone.now()
        )
    serving_old = deployment.live_generation and deployment.live_generation != deployment.generation
    Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.FAILED, failure_reason=reason)
    note = " The previous version keeps serving." if serving_old else ""
    deployment.set_phase(Phase.FAILED, reason + note, level="error")
    _notify(deployment, f"{deployment} failed: {reason}{note}"[:1000], "error")


NOTIFICATION_TITLE = "Prompt flow deployment"


def _deployment_link(deployment: Deployment) -> str:
    return deployment.get_absolute_url()


def _progress(deployment: Deployment, body: str, level: str = "running") -> bool:
    """Update the notification the wizard raised for this deployment, so the bell shows the phase."""
    link = _deployment_link(deployment)
    note = (
        Notification.objects.filter(title=NOTIFICATION_TITLE, link=link).order_by("-created_at").first()
        if link
        else None
    )
    if note is None:
        return False
    notifications.update(note.pk, body=body, level=level)
    return True


def _phase(deployment: Deployment, phase: str, message: str) -> None:
    deployment.set_phase(phase, message)
    _progress(deployment, f"{deployment}: {message}")


def _notify(deployment: Deployment, body: str, level: str) -> None:
    if _progress(deployment, body, level):
        return
    if deployment.created_by_id:
        link = _deployment_link(deployment)
        notifications.notify(deployment.created_by, NOTIFICATION_TITLE, body, link=link, level=level)


# --- deletion ---------------------------------------------------------------------------------


def stop_all_instances(deployment: Deployment) -> None:
    for instance in deployment.instances.exclude(state=InstanceState.STOPPED):
        launcher.stop(instance.pid, str(instance.id), grace=max(5.0, deployment.request_timeout_ms / 1000))
    Instance.objects.filter(deployment=deployment).update(state=InstanceState.STOPPED, stopped_at=timezone.now())
    for instance in deployment.instances.all():
        shutil.rmtree(instance.folder, ignore_errors=True)


def _deletion_progress(notification_id: int | None, body: str, level: str = "running") -> None:
    if notification_id:
        notifications.update(notification_id, body=body, level=level)


def delete_deployment(deployment_id: int, notification_id: int | None = None) -> None:
    deployment = Deployment.objects.select_related("endpoint").filter(pk=deployment_id).first()
    if deployment is None or deployment.state != DeploymentState.DELETING:
        if deployment is None:
            _deletion_progress(notification_id, "The deployment was already deleted.", "success")
        return
    endpoint = deployment.endpoint
    deployment.set_phase(Phase.DELETING, "Removing the deployment from the endpoint's routing.")
    _deletion_progress(notification_id, f"Deleting {deployment}: draining requests in flight.")
    version = publishing.publish(endpoint)
    live = list(deployment.instances.filter(state__in=LIVE_INSTANCE_STATES))
    publishing.wait_until_drained(endpoint, version, live, deployment.request_timeout_ms / 1000 + 5)
    _deletion_progress(notification_id, f"Deleting {deployment}: stopping {len(live)} instance(s).")
    stop_all_instances(deployment)
    name, owner = str(deployment), deployment.created_by
    deployment.delete()
    body = f"{name} was deleted; its instances were stopped."
    if notification_id:
        _deletion_progress(notification_id, body, "success")
    elif owner:
        notifications.notify(owner, "Delete deployment", body, link=reverse("endpoints:list"), level="success")


def delete_endpoint(endpoint_id: int, notification_id: int | None = None) -> None:
    from endpoints.models import Endpoint

    endpoint = Endpoint.objects.filter(pk=endpoint_id, deleting=True).first()
    if endpoint is None:
        if not Endpoint.objects.filter(pk=endpoint_id).exists():
            _deletion_progress(notification_id, "The endpoint was already deleted.", "success")
        return
    _deletion_progress(notification_id, f"Deleting endpoint {endpoint.name}: revoking its keys and routing.")
    publishing.withdraw(endpoint.name)  # keys and routing gone from the gateway first
    deployments = list(endpoint.deployments.all())
    for deployment in deployments:
        _deletion_progress(notification_id, f"Deleting endpoint {endpoint.name}: stopping {deployment.name}.")
        stop_all_instances(deployment)
    name, owner = endpoint.name, endpoint.created_by
    endpoint.delete()
    body = f"Endpoint {name} was deleted with {len(deployments)} deployment(s); its keys no longer work."
    if notification_id:
        _deletion_progress(notification_id, body, "success")
    elif owner:
        notifications.notify(owner, "Delete endpoint", body, link=reverse("endpoints:list"), level="success")


# --- reconciling ------------------------------------------------------------------------------


def backoff(restarts: int) -> timedelta:
    return timedelta(seconds=min(2 ** max(restarts - 1, 0), MAX_BACKOFF_SECONDS))


def reconcile() -> None:
    """Beat: restart dead instances with backoff, promote restarted ones, fail stale jobs."""
    _fail_stale_jobs()
    changed_endpoints = set()
    live = Instance.objects.select_related("deployment__endpoint", "deployment__flow_version").filter(
        deployment__state__in=(DeploymentState.SUCCEEDED, DeploymentState.FAILED, DeploymentState.UPDATING),
        state__in=LIVE_INSTANCE_STATES,
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
        running = launcher.is_running(instance.pid, str(instance.id))
        if not running:
            _record_crash(deployment, instance)
            changed_endpoints.add(deployment.endpoint)
        elif instance.state == InstanceState.STARTING and launcher.healthy(instance.url, timeout=0.5):
            Instance.objects.filter(pk=instance.pk).update(state=InstanceState.READY, ready_at=now)
            deployment.event(f"Instance {instance.ordinal} is ready again after restart {instance.restarts}.")
            changed_endpoints.add(deployment.endpoint)
    for endpoint in changed_endpoints:
        publishing.publish(endpoint)


def _record_crash(deployment: Deployment, instance: Instance) -> None:
    restarts = instance.restarts + 1
    tail = launcher.log_tail(instance.log_path, 20)
    delay = backoff(restarts)
    Instance.objects.filter(pk=instance.pk).update(
        state=InstanceState.CRASHED, restarts=restarts, last_exit=tail, next_restart_at=timezone.now() + delay
    )
    deployment.event(
        f"Instance {instance.ordinal} exited; restarting in {delay.total_seconds():.0f} s (restart {restarts}).",
        level="warning",
    )
    if restarts >= CRASH_LOOP_RESTARTS:
        reason = (
            f"CrashLoopBackOff: instance {instance.ordinal} has exited {restarts} times. Last lines of its log:\n{tail}"
        )
        Deployment.objects.filter(pk=deployment.pk).update(failure_reason=reason)


def _restart(deployment: Deployment, instance: Instance) -> None:
    try:
        environment = flow_environment(deployment.flow_version.requirements)
    except EnvironmentBuildError as exc:
        deployment.event(f"Instance {instance.ordinal} cannot restart: {exc}", level="error")
        return
    start_instance(deployment, instance, environment)
    deployment.event(f"Restarted instance {instance.ordinal} (restart {instance.restarts}).")


def _fail_stale_jobs() -> None:
    stale = timezone.now() - HEARTBEAT_STALE_AFTER
    jobs = Deployment.objects.filter(
        state__in=(DeploymentState.CREATING, DeploymentState.UPDATING), heartbeat_at__lt=stale
    ).exclude(phase=Phase.QUEUED)
    for deployment in jobs.select_related("endpoint"):
        minutes = int(HEARTBEAT_STALE_AFTER.total_seconds() // 60)
        _fail(
            deployment,
            f"The provisioning job stopped responding (no heartbeat for {minutes} minutes). Run the update again.",
        )
