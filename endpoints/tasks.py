from celery import shared_task

from endpoints import provisioning, retention
from endpoints.models import Endpoint
from endpoints.providers import provider_for

# A deletion that finds a provisioning job still holding the deployment tries again this much later.
DELETION_RETRY_SECONDS = 5


@shared_task(acks_late=True)
def provision(deployment_id: int) -> None:
    provisioning.provision(deployment_id)


@shared_task(acks_late=True)
def delete_deployment(deployment_id: int, notification_id: int | None = None) -> None:
    if not provisioning.delete_deployment(deployment_id, notification_id):
        delete_deployment.apply_async((deployment_id, notification_id), countdown=DELETION_RETRY_SECONDS)


@shared_task(acks_late=True)
def delete_endpoint(endpoint_id: int, notification_id: int | None = None) -> None:
    if not provisioning.delete_endpoint(endpoint_id, notification_id):
        delete_endpoint.apply_async((endpoint_id, notification_id), countdown=DELETION_RETRY_SECONDS)


@shared_task(acks_late=True)
def apply_routing(endpoint_id: int) -> None:
    """Send an endpoint's traffic to its provider, when that takes long (Azure ML)."""
    endpoint = Endpoint.objects.filter(pk=endpoint_id, deleting=False).first()
    if endpoint is not None:
        provider_for(endpoint).apply_routing_now(endpoint)


@shared_task
def watch_azure() -> None:
    """Beat: Azure ML deployments that failed or were deleted outside the studio become Failed here."""
    from endpoints.models import Provider

    if Endpoint.objects.filter(provider=Provider.AZUREML).exists():  # azure-ai-ml is imported only when needed
        from endpoints.providers.azureml import watch

        watch.watch()


@shared_task
def reconcile() -> None:
    provisioning.reconcile()


@shared_task
def retain() -> None:
    """Beat: rotate logs, prune the gateway's in-flight hash, old layers, build logs, run data and events."""
    retention.run()
