from celery import shared_task

from monitoring import requests, services


@shared_task
def remove_expired_data() -> None:
    """Beat: remove collected hours past their deployment's retention."""
    services.remove_expired()


@shared_task
def publish_collection_policy() -> None:
    """Beat: publish the sampling rates again, so a Redis that lost them gets them back."""
    services.publish_policy()


@shared_task
def ingest_request_records() -> None:
    """Beat: store the request records the gateways shipped to Redis."""
    from endpoints.publishing import client

    requests.ingest(client())


@shared_task
def sample_instances() -> None:
    """Beat: one CPU and memory sample of every running instance."""
    requests.sample_instances()


@shared_task
def remove_old_request_records() -> None:
    """Beat: forget request records, instance samples and spans older than the Monitoring tab shows."""
    requests.remove_old()
