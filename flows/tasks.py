from celery import shared_task

from flows import services


@shared_task(acks_late=True)
def execute_test_run(run_id: str) -> None:
    services.execute_test_run(run_id)


@shared_task(acks_late=True)
def execute_bulk_run(run_id: str) -> None:
    services.execute_bulk_run(run_id)


@shared_task
def fail_stale_runs() -> int:
    return services.fail_stale_runs()
