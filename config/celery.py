import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("flowdeploy")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Tasks that run a flow for as long as it takes: they get a queue (and a worker) of their own.
RUNS_TASKS = frozenset({"flows.tasks.execute_test_run", "flows.tasks.execute_bulk_run"})


def runs_queue(default_queue: str | None = None) -> str:
    """The queue of test and bulk runs: "<FLOWDEPLOY_QUEUE>-runs"."""
    if default_queue is None:
        from django.conf import settings

        default_queue = settings.CELERY_TASK_DEFAULT_QUEUE
    return f"{default_queue}-runs"


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery's router (CELERY_TASK_ROUTES): runs to the runs queue, everything else to the default queue."""
    if name in RUNS_TASKS:
        return {"queue": runs_queue()}
    return None
