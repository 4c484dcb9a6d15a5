"""The provisioning state machine, run by Celery: Validating → BuildingEnvironment → RegisteringModel →
CreatingDeployment → Probing → Succeeded, or Failed with a reason a user can act on.

The phases are the same for every provider; the endpoint's provider (endpoints/providers/) does the work of
each one: the local provider starts instance processes, the Azure ML provider creates managed online
deployments. Every step is safe to run again: the job claims the deployment with a conditional update, and
the provider reuses what a previous run of the same generation already made.

Every state write is conditional on the claim (Deployment.claimed_by): a provisioning job, a deletion and
the stale-job reaper never start or stop a deployment's capacity at the same time, and none of them
overwrites another's final state. The job checks between phases, at each heartbeat and before going live;
when the deployment is being deleted it stops what it started and hands over to the deletion, which waits
for it. docs/reliability.md describes the protocol.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from endpoints import models as endpoint_models
from endpoints.environment_variables import environment_variable_problems
from endpoints.jobs import Cancelled, Job, ProvisioningFailed
from endpoints.models import (
    DELETION,
    JOB_STATES,
    PROVISIONING,
    REAPER,
    Deployment,
    DeploymentState,
    Endpoint,
    Phase,
)
from endpoints.providers import provider_for
from endpoints.providers.local import instances as local_instances
from endpoints.services import NOTIFICATION_TITLE
from workspace import notifications
from workspace.models import Notification

__all__ = ["Cancelled", "Job", "ProvisioningFailed", "delete_deployment", "delete_endpoint", "provision", "reconcile"]

logger = logging.getLogger(__name__)

# How long a deletion waits in its worker for a provisioning job to hand over before it tries again later.
HANDOVER_WAIT = 30.0


def stale_after() -> timedelta:
    return endpoint_models.HEARTBEAT_STALE_AFTER


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
    job = Job(deployment, holder, on_advance=lambda message: _progress(deployment, f"{deployment}: {message}"))
    started = time.monotonic()
    try:
        job.check()  # a job taken over from a dead worker may find its deployment being deleted
        provider = provider_for(deployment.endpoint)
        _validate(job, provider)
        environment = provider.build_environment(job)
        model = provider.register_model(job)
        created = provider.create_deployment(job, environment, model)
        provider.wait_until_ready(job, created, environment)
        _go_live(job)
        provider.go_live(job, created)
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
    else:  # deleted after it went live (the deletion stops its capacity), or the reaper failed it first
        _hand_over(job, job.cancelled())


def _validate(job: Job, provider) -> None:
    deployment = job.deployment
    job.advance(Phase.VALIDATING, "Checking the flow, its connections, the endpoint's identity and capacity.")
    # A deployment saved before the environment-variable rule is held to it before anything starts.
    problems = environment_variable_problems(deployment.environment_variables)
    problems += provider.validate(job)
    if problems:
        raise ProvisioningFailed(" ".join(problems))


def _go_live(job: Job) -> None:
    """Mark the new generation live; the provider then routes traffic to it and retires what it replaces.

    Going live is one conditional update: a deployment being deleted (or a job that lost its claim) never
    goes live, and the first deployment's 100% traffic is written in the same transaction.
    """
    deployment = job.deployment
    job.check()
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


def _fail(job: Job, reason: str) -> None:
    deployment = job.deployment
    deployment.refresh_from_db()
    if deployment.claimed_by != job.holder:
        return  # the reaper (or a worker that took the job over) decided already
    if deployment.state == DeploymentState.DELETING:
        _hand_over(job, Cancelled(deleting=True))
        return
    provider_for(deployment.endpoint).stop_unpublished(deployment)  # while the claim is held: nobody else stops it
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
    provider_for(deployment.endpoint).stop_unpublished(deployment)
    deployment.event("Provisioning stopped: the deployment is being deleted.", "warning")
    _progress(deployment, f"{deployment}: provisioning stopped, the deployment is being deleted.", "info")
    deployment.release(job.holder)


# --- notifications ----------------------------------------------------------------------------


def _provisioning_note(deployment: Deployment) -> Notification | None:
    """The notification the service raised when this job was asked for (Deployment.notification_id)."""
    if not deployment.notification_id:
        return None
    return Notification.objects.filter(pk=deployment.notification_id).first()


def _progress(deployment: Deployment, body: str, level: str = "running") -> bool:
    """Update the job's notification, so the bell shows the phase."""
    note = _provisioning_note(deployment)
    if note is None:
        return False
    notifications.update(note.pk, body=body, level=level)
    return True


def _notify(deployment: Deployment, body: str, level: str) -> None:
    if _progress(deployment, body, level):
        return
    if deployment.created_by_id:
        link = deployment.get_absolute_url()
        notifications.notify(deployment.created_by, NOTIFICATION_TITLE, body, link=link, level=level)


# --- deletion ---------------------------------------------------------------------------------


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
    deployment.set_phase(Phase.DELETING, "Removing the deployment from the endpoint's routing.")

    def keep() -> None:
        deployment.keep_claim(holder)

    def progress(body: str) -> None:
        _deletion_progress(notification_id, body)

    provider_for(deployment.endpoint).remove_deployment(deployment, keep, progress)
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
    provider = provider_for(endpoint)
    provider.withdraw(endpoint.name)  # keys and routing gone first

    def keep() -> None:
        for deployment in deployments:
            deployment.keep_claim(holder)

    def progress(body: str) -> None:
        _deletion_progress(notification_id, body)

    provider.remove_endpoint(endpoint, deployments, keep, progress)
    for deployment in deployments:
        _end_provisioning_note(deployment)
    name, owner = endpoint.name, endpoint.created_by
    endpoint.delete()
    provider.withdraw(name)  # again: a publish that raced the first withdraw leaves nothing behind
    body = f"Endpoint {name} was deleted with {len(deployments)} deployment(s); its keys no longer work."
    if notification_id:
        _deletion_progress(notification_id, body, "success")
    elif owner:
        notifications.notify(owner, "Delete endpoint", body, link=reverse("endpoints:list"), level="success")
    return True


# --- reconciling ------------------------------------------------------------------------------


def reconcile() -> None:
    """Beat: fail stale jobs, resume lost ones and lost deletions; restart dead local instances with backoff."""
    _fail_stale_jobs()
    _resume_queued_jobs()
    _resume_deletions()
    local_instances.reconcile_instances()


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
        provider_for(deployment.endpoint).stop_unserving(deployment)
        if deployment.live_generation != deployment.generation:
            note = " The previous version keeps serving." if deployment.live_generation else ""
        else:
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
