from celery import shared_task

from endpoints import provisioning


@shared_task(acks_late=True)
def provision(deployment_id: int) -> None:
    provisioning.provision(deployment_id)


@shared_task(acks_late=True)
def delete_deployment(deployment_id: int, notification_id: int | None = None) -> None:
    provisioning.delete_deployment(deployment_id, notification_id)


@shared_task(acks_late=True)
def delete_endpoint(endpoint_id: int, notification_id: int | None = None) -> None:
    provisioning.delete_endpoint(endpoint_id, notification_id)


@shared_task
def reconcile() -> None:
    provisioning.reconcile()
