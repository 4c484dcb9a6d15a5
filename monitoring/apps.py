from django.apps import AppConfig
from django.conf import settings

# The monitoring app's periodic tasks. config/settings.py lists the others; these are added here so the app that
# owns the tasks owns their schedule (beat reads CELERY_BEAT_SCHEDULE once Django is set up, after ready()).
BEAT_SCHEDULE = {
    "request-records-ingest": {"task": "monitoring.tasks.ingest_request_records", "schedule": 5.0},
    "instance-samples": {"task": "monitoring.tasks.sample_instances", "schedule": 15.0},
    "request-records-retention": {"task": "monitoring.tasks.remove_old_request_records", "schedule": 600.0},
}


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        schedule = getattr(settings, "CELERY_BEAT_SCHEDULE", None)
        if isinstance(schedule, dict):
            for name, entry in BEAT_SCHEDULE.items():
                schedule.setdefault(name, entry)
