"""Request records in the studio: the records the gateways ship to Redis become rows (once each), instance CPU
and memory are sampled from /proc, and both are forgotten after the retention."""

import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from endpoints.models import Instance, InstanceState
from monitoring import requests as monitoring_requests
from monitoring import resources
from monitoring.models import REQUEST_RECORDS_RETENTION_DAYS, InstanceSample, RequestRecord, Span
from serving import metrics as request_metrics

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(redis_url):
    connection = redis.Redis.from_url(redis_url)
    connection.delete(request_metrics.RECORDS_KEY, monitoring_requests.INGEST_LOCK)
    yield connection
    connection.delete(request_metrics.RECORDS_KEY, monitoring_requests.INGEST_LOCK)
    connection.close()


def line(number: int, **fields) -> bytes:
    record = {
        "id": f"gw-test-{number}",
        "time": time.time(),
        "endpoint": "ep-data",
        "deployment": "blue",
        "request_id": f"req-{number}",
        "status": 200,
        "model_status": 200,
        "total_ms": 12.5,
        "model_ms": 10.0,
        "request_bytes": 20,
        "response_bytes": 40,
        "throttled": False,
        "timed_out": False,
        "streamed": False,
        **fields,
    }
    return json.dumps(record).encode()


def test_it_stores_the_shipped_records_and_empties_the_list(client):
    client.rpush(request_metrics.RECORDS_KEY, line(1), line(2, status=504, model_status=None, timed_out=True))
    assert monitoring_requests.ingest(client) == 2
    assert client.llen(request_metrics.RECORDS_KEY) == 0
    first, second = RequestRecord.objects.order_by("record_id")
    assert (first.endpoint_name, first.deployment_name, first.status, first.total_ms) == ("ep-data", "blue", 200, 12.5)
    assert second.timed_out and second.model_status is None
    assert abs(first.time.timestamp() - time.time()) < 60


def test_it_stores_a_record_once_when_it_is_shipped_again(client):
    """A run that stored a batch but died before removing it from Redis: the next run skips what is stored."""
    client.rpush(request_metrics.RECORDS_KEY, line(1))
    monitoring_requests.ingest(client)
    client.rpush(request_metrics.RECORDS_KEY, line(1), line(2))
    assert monitoring_requests.ingest(client) == 2
    assert RequestRecord.objects.count() == 2


def test_it_takes_the_list_in_batches_and_skips_malformed_lines(client):
    client.rpush(request_metrics.RECORDS_KEY, *[line(n) for n in range(7)], b"not json", line(8, status="x"))
    assert monitoring_requests.ingest(client, batch=3) == 9
    assert RequestRecord.objects.count() == 7
    assert client.llen(request_metrics.RECORDS_KEY) == 0


def test_it_does_nothing_while_another_run_holds_the_lock(client):
    client.rpush(request_metrics.RECORDS_KEY, line(1))
    client.set(monitoring_requests.INGEST_LOCK, "1", ex=60)
    assert monitoring_requests.ingest(client) == 0
    assert client.llen(request_metrics.RECORDS_KEY) == 1


def test_it_measures_a_process_and_its_children_from_proc():
    """This test process's CPU time and memory are found; a pid that does not run is left out."""
    ready, done = os.pipe()
    child = os.fork()
    if child == 0:  # a child that burns a little CPU, says so, then waits to be killed
        deadline = time.process_time() + 0.2
        spins = 0
        while time.process_time() < deadline:
            spins += 1
        os.write(done, b"x")
        time.sleep(30)
        os._exit(0)
    try:
        os.read(ready, 1)
        found = resources.usage([os.getpid(), 2**22 + 7])
        child_seconds = resources._stat(child)[1]
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
        os.close(ready)
        os.close(done)
    seconds, resident = found[os.getpid()]
    assert child_seconds >= 0.15
    assert seconds >= child_seconds + 0.01  # the child's CPU time counts, with the test process's own
    assert resident > 10 * 1024 * 1024
    assert list(found) == [os.getpid()]


def test_it_samples_running_instances(deployment_row):
    deployment = deployment_row()
    running = Instance.objects.create(
        deployment=deployment, generation=1, ordinal=0, state=InstanceState.READY, pid=os.getpid()
    )
    Instance.objects.create(deployment=deployment, generation=1, ordinal=1, state=InstanceState.STOPPED, pid=1)
    assert monitoring_requests.sample_instances() == 1
    sample = InstanceSample.objects.get()
    assert sample.instance_name == str(running.id)
    assert (sample.endpoint_name, sample.deployment_name) == ("ep-data", "blue")
    assert sample.cpu_seconds > 0 and sample.memory_bytes > 0


def test_it_forgets_records_samples_and_spans_after_the_retention():
    now = datetime.now(UTC)
    old = now - timedelta(days=REQUEST_RECORDS_RETENTION_DAYS, minutes=1)
    for n, at in enumerate((old, now)):
        RequestRecord.objects.create(
            record_id=f"r{n}", time=at, endpoint_name="e", deployment_name="d", status=200, total_ms=1
        )
        InstanceSample.objects.create(
            time=at, endpoint_name="e", deployment_name="d", instance_name="i", cpu_seconds=1, memory_bytes=1
        )
        Span.objects.create(
            trace_id=f"{n}" * 32, span_id="a" * 16, name="flow", start=at, duration_ms=1, endpoint_name="e",
            deployment_name="d",
        )  # fmt: skip
    assert monitoring_requests.remove_old(now) == (1, 1, 1)
    assert RequestRecord.objects.get().record_id == "r1"
