"""Retention: beat removes collected hours past each deployment's retention, and publishes the sampling rates."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis

from django.conf import settings as django_settings

from monitoring import services, tasks
from monitoring.models import DataCollectionPolicy
from serving import collector as collection

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 20, 12, 30, tzinfo=UTC)


def _hours(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.glob("model_*/*/*/*/*"))


def test_it_removes_hours_past_each_deployments_retention(collect, collection_dir):
    DataCollectionPolicy.objects.create(endpoint_name="ep-data", deployment_name="blue", retention_days=1)
    hours_ago = (40 * 24, 2 * 24, 25, 23, 2)
    for at in (NOW - timedelta(hours=h) for h in hours_ago):
        collect("ep-data", "blue", "r", {"q": 1}, {"a": 1}, at)
        collect("ep-data", "green", "r", {"q": 1}, {"a": 1}, at)  # no policy: 30 days

    removed = services.remove_expired(NOW)

    blue = collection_dir / "ep-data" / "blue"
    green = collection_dir / "ep-data" / "green"
    # blue keeps the hours that ended less than a day ago: 13:00-14:00 yesterday, not 11:00-12:00.
    kept = ["2026/12/19/13", "2026/12/20/10"]
    assert _hours(blue) == [f"model_inputs/{h}" for h in kept] + [f"model_outputs/{h}" for h in kept]
    assert len(_hours(green)) == 8 and "model_inputs/2026/11/10/12" not in _hours(green)
    assert removed == 3 * 2 + 1 * 2
    assert not (blue / "model_inputs" / "2026" / "11").exists()  # the emptied month folder went too


def test_it_leaves_what_is_not_collected_data_alone(collection_dir):
    stray = collection_dir / "ep-data" / "blue" / "model_inputs" / "notes"
    stray.mkdir(parents=True)
    (collection_dir / "README").write_text("mine")
    assert services.remove_expired(NOW) == 0
    assert stray.is_dir() and (collection_dir / "README").exists()


def test_it_runs_from_beat(collect, collection_dir):
    schedule = {entry["task"]: entry["schedule"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["monitoring.tasks.remove_expired_data"] == 600.0
    assert schedule["monitoring.tasks.publish_collection_policy"] == 60.0
    collect("ep-data", "blue", "r", {"q": 1}, {"a": 1}, datetime.now(UTC) - timedelta(days=31))
    tasks.remove_expired_data()
    assert _hours(collection_dir / "ep-data" / "blue") == []


def test_it_publishes_the_rates_that_are_not_the_default(redis_url, settings):
    settings.REDIS_URL = redis_url
    DataCollectionPolicy.objects.create(endpoint_name="ep-data", deployment_name="blue", sampling_percent=12.5)
    DataCollectionPolicy.objects.create(endpoint_name="ep-data", deployment_name="green", retention_days=3)
    tasks.publish_collection_policy()
    client = redis.Redis.from_url(redis_url)
    try:
        document = json.loads(client.get(collection.POLICY_KEY))
    finally:
        client.close()
    assert collection.policy_rates(document) == {"ep-data/blue": 0.125}
