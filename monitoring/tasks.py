from celery import shared_task

from monitoring import services


@shared_task
def remove_expired_data() -> None:
    """Beat: remove collected hours past their deployment's retention."""
    services.remove_expired()


@shared_task
def publish_collection_policy() -> None:
    """Beat: publish the sampling rates again, so a Redis that lost them gets them back."""
    services.publish_policy()
