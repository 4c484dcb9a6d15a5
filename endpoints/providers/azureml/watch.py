"""Beat: what Azure says of the Azure ML deployments the studio believes Succeeded.

A deployment changed outside the studio (deleted in Azure's portal, or failed after a platform event) would
otherwise look healthy here while its scoring URI answers errors. The watch asks Azure once a minute; a
deployment Azure no longer has, or reports Failed, becomes Failed here with Azure's words as the reason.
Every write is conditional on the state that was seen and on nobody holding the deployment, so the watch never
overwrites a provisioning job or a deletion.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from endpoints.models import Deployment, DeploymentState, Phase, Provider
from endpoints.providers import ProviderError
from endpoints.providers.azureml.provider import AzureMLProvider

logger = logging.getLogger(__name__)


def watch() -> int:
    """Check each Succeeded Azure ML deployment; returns how many were found failed or gone."""
    provider = AzureMLProvider()
    changed = 0
    watched = Deployment.objects.filter(
        endpoint__provider=Provider.AZUREML, state=DeploymentState.SUCCEEDED, claimed_by=""
    ).select_related("endpoint__project")
    for deployment in watched:
        try:
            remote = provider.remote_state(deployment)
        except ProviderError as exc:  # Azure unreachable or refusing: say nothing about the deployment
            logger.warning("watching %s: %s", deployment, exc)
            continue
        reason = _reason(deployment, remote)
        if reason and _fail(deployment, reason):
            changed += 1
    return changed


def _reason(deployment: Deployment, remote: str) -> str:
    if remote == "":
        return (
            f"Azure ML has no deployment {deployment.name} on endpoint {deployment.endpoint.name} any more: it was "
            "deleted outside the studio. Delete it here, or deploy it again."
        )
    if remote == "Failed":
        return f"Azure ML reports deployment {deployment.name} Failed (it was Succeeded): see its logs on the Logs tab."
    return ""


def _fail(deployment: Deployment, reason: str) -> bool:
    now = timezone.now()
    seen = Deployment.objects.filter(pk=deployment.pk, state=DeploymentState.SUCCEEDED, claimed_by="")
    if not seen.update(state=DeploymentState.FAILED, phase=Phase.FAILED, failure_reason=reason, updated_at=now):
        return False
    deployment.event(reason, level="error")
    return True
