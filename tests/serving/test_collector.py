"""Inference data collection through a real gateway process and fake promptflow instances: what lands in the
files, sampling, and a stuck writer that must not slow /score."""

import contextlib
import json
import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from gateway_support import GATEWAY_SECRET, call, deployment_spec, read_stream
from support import wait_for

from serving import collector as collection
from serving import routing
from serving.auth import key_digest, new_key, routing_key

pytestmark = pytest.mark.integration

KEY = routing_key(GATEWAY_SECRET)


@pytest.fixture
def client(redis_url):
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def collecting(start_gateway, redis_url, client, tmp_path):
    """A gateway of the test's own on the session's Redis, collecting into tmp_path/collected."""

    def starter(**env: str):
        folder = tmp_path / "collected"
        gateway = start_gateway(redis_url=redis_url, FLOWDEPLOY_DATA_COLLECTION_DIR=str(folder), **env)
        return gateway, folder

    return starter


def publish(client, gateway, deployments: dict, traffic: dict) -> tuple[str, str]:
    """Publish an endpoint with a fresh name and key; wait until this gateway routes it (a swagger request, which
    is never collected)."""
    name = f"dc-{uuid.uuid4().hex[:10]}"
    key = new_key()
    document = {
        "name": name,
        "version": int(time.time() * 1000),
        "auth_type": "key",
        "key_digests": [key_digest(key)],
        "traffic": traffic,
        "mirror_traffic": {},
        "deployments": deployments,
    }
    routing.publish(client, document, KEY)
    headers = {"Authorization": f"Bearer {key}"}
    wait_for(lambda: call(gateway.url, f"/endpoints/{name}/swagger.json", headers=headers).status == 200, timeout=10)
    return name, key


def lines(folder: Path, kind: str) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob(f"{kind}/*/*/*/*/*.jsonl")) for line in path.open()]


def wait_lines(folder: Path, kind: str, count: int, timeout: float = 10) -> list[dict]:
    wait_for(lambda: len(lines(folder, kind)) >= count, timeout=timeout, interval=0.05)
    found = lines(folder, kind)
    assert len(found) == count, found
    return found


def test_it_collects_inputs_and_outputs_only_where_collection_is_on(collecting, client, fake):
    """Each request to a collecting deployment is one inputs and one outputs line with its request id, the inputs
    and the answer the client got; a deployment with collection off gets no file at all."""
    gateway, folder = collecting()
    blue, green = fake("blue"), fake("green")
    name, key = publish(
        client,
        gateway,
        {"blue": deployment_spec(blue, data_collection=True), "green": deployment_spec(green, data_collection=False)},
        {"blue": 100},
    )
    answers = {}
    for number in range(3):
        request_id = f"req-on-{number}"
        body = {"question": f"question {number}", "n": number}
        answer = gateway.score(name, body, key, x_request_id=request_id)
        assert answer.status == 200
        answers[request_id] = (body, answer.json)
    for number in range(2):
        headers = {"x_request_id": f"req-off-{number}", "azureml_model_deployment": "green"}
        assert gateway.score(name, {"q": number}, key, **headers).status == 200

    inputs = wait_lines(folder / name / "blue", "model_inputs", 3)
    outputs = wait_lines(folder / name / "blue", "model_outputs", 3)
    assert {line["xrequestid"]: line["data"] for line in inputs} == {rid: body for rid, (body, _) in answers.items()}
    assert {line["xrequestid"]: line["data"] for line in outputs} == {rid: out for rid, (_, out) in answers.items()}
    by_request = {line["xrequestid"]: line for line in inputs}
    for line in outputs:
        assert line["correlationid"] == by_request[line["xrequestid"]]["correlationid"]
        assert (line["endpoint"], line["deployment"], line["status"], line["streamed"]) == (name, "blue", 200, False)
        hour = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").strftime("%Y/%m/%d/%H")
        assert (folder / name / "blue" / "model_outputs" / hour).is_dir()
    time.sleep(0.5)  # the writer is idle: a line for green would be there by now
    assert not (folder / name / "green").exists()
    assert len(lines(folder / name / "blue", "model_inputs")) == 3


def test_it_collects_the_assembled_stream_and_failures(collecting, client, fake):
    """A streamed answer is collected as one output; a flow failure with the 424 and error the client got."""
    gateway, folder = collecting()
    name, key = publish(client, gateway, {"blue": deployment_spec(fake("blue"), data_collection=True)}, {"blue": 100})
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream", "x-request-id": "req-stream"}
    stream = read_stream(gateway.url, f"/endpoints/{name}/score", headers, b'{"stream": 5}')
    assert stream.status == 200 and len(stream.events) == 5
    failed = gateway.score(name, {"fail": "boom"}, key, x_request_id="req-failed")
    assert failed.status == 424

    outputs = {line["xrequestid"]: line for line in wait_lines(folder / name / "blue", "model_outputs", 2)}
    assert outputs["req-stream"]["data"] == {"answer": "chunk 0chunk 1chunk 2chunk 3chunk 4"}
    assert (outputs["req-stream"]["streamed"], outputs["req-stream"]["truncated"]) == (True, False)
    assert outputs["req-failed"]["status"] == 424
    assert outputs["req-failed"]["data"] == failed.json
    inputs = {line["xrequestid"]: line["data"] for line in lines(folder / name / "blue", "model_inputs")}
    assert inputs == {"req-stream": {"stream": 5}, "req-failed": {"fail": "boom"}}


def test_it_cuts_a_long_answer_at_the_output_limit(collecting, client, fake):
    """The client gets the whole stream; the collected output keeps what fits in the limit, marked truncated."""
    gateway, folder = collecting(FLOWDEPLOY_DATA_COLLECTION_MAX_OUTPUT_BYTES="300")
    name, key = publish(client, gateway, {"blue": deployment_spec(fake("blue"), data_collection=True)}, {"blue": 100})
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    stream = read_stream(gateway.url, f"/endpoints/{name}/score", headers, b'{"stream": 40}')
    assert len(stream.events) == 40
    (output,) = wait_lines(folder / name / "blue", "model_outputs", 1)
    assert output["truncated"] is True
    kept = output["data"]["answer"]
    assert kept.startswith("chunk 0chunk 1") and len(kept) < 300
    assert "chunk 39" not in kept


def test_it_samples_at_the_rate_of_the_policy(collecting, client, fake):
    """With a signed policy of 0.5, about half the requests are collected; one signed with another key is ignored."""
    gateway, folder = collecting()
    name, key = publish(client, gateway, {"blue": deployment_spec(fake("blue"), data_collection=True)}, {"blue": 100})
    gateway_id = f"{socket.gethostname()}-{gateway.process.pid}"
    policy = collection.publish_policy(client, {f"{name}/blue": 0.5}, KEY)
    wait_for(lambda: collection.policy_applied(client, gateway_id) == policy["version"], timeout=10, interval=0.05)
    forged = collection.publish_policy(client, {f"{name}/blue": 1.0}, routing_key("not-the-secret"))
    time.sleep(2 * collection.MAINTAIN_INTERVAL_S)
    assert collection.policy_applied(client, gateway_id) == policy["version"] != forged["version"]

    for number in range(200):
        assert gateway.score(name, {"n": number}, key).status == 200
    time.sleep(1)
    collected = len(lines(folder / name / "blue", "model_inputs"))
    assert 60 <= collected <= 140, collected  # 100 expected; this band is more than five standard deviations wide
    assert len(lines(folder / name / "blue", "model_outputs")) == collected
    client.delete(collection.POLICY_KEY)


def _fifos(folder: Path, name: str, gateway_id: str) -> list[Path]:
    """Named pipes where the writer's first file of this hour (and the next, should the hour turn) will be: opening
    one for writing blocks until someone reads, like a write to a hung disk."""
    made = []
    now = datetime.now(UTC)
    for hour in (now, now + timedelta(hours=1)):
        target = folder / name / "blue" / "model_inputs" / hour.strftime("%Y/%m/%d/%H")
        target.mkdir(parents=True)
        os.mkfifo(target / f"{gateway_id}.jsonl")
        made.append(target / f"{gateway_id}.jsonl")
    return made


def test_it_answers_while_the_writer_is_stuck_and_counts_what_it_drops(collecting, client, fake):
    """With the writer blocked on its file, every request is still answered at once; past the queue's bound of
    3 records the rest are dropped, counted in Redis; once the file opens, the queued records are written."""
    gateway, folder = collecting(FLOWDEPLOY_DATA_COLLECTION_QUEUE_RECORDS="3")
    name, key = publish(client, gateway, {"blue": deployment_spec(fake("blue"), data_collection=True)}, {"blue": 100})
    gateway_id = f"{socket.gethostname()}-{gateway.process.pid}"
    fifos = _fifos(folder, name, gateway_id)

    for number in range(20):
        answer = gateway.score(name, {"n": number}, key, x_request_id=f"req-{number}")
        assert answer.status == 200
        assert answer.json["inputs"] == {"n": number}
    # The writer is still stuck: nothing reached the outputs file, which it writes after the inputs one.
    assert lines(folder / name / "blue", "model_outputs") == []
    drops_key = collection.drops_key(name, "blue")
    wait_for(lambda: client.hget(drops_key, "dropped") == b"17", timeout=10, interval=0.05)
    drops = collection.read_drops(client, name, "blue")
    assert drops["dropped"] == 17 and drops["failed"] == 0
    assert drops["first"] <= drops["last"] <= time.time()

    readers = [os.open(fifo, os.O_RDONLY | os.O_NONBLOCK) for fifo in fifos]
    received = b""
    deadline = time.monotonic() + 10
    while received.count(b"\n") < 3 and time.monotonic() < deadline:
        for reader in readers:
            with contextlib.suppress(BlockingIOError):  # nothing written yet
                received += os.read(reader, 65536)
        time.sleep(0.02)
    for reader in readers:
        os.close(reader)
    written = [json.loads(line) for line in received.splitlines()]
    assert [line["xrequestid"] for line in written] == ["req-0", "req-1", "req-2"]
    outputs = wait_lines(folder / name / "blue", "model_outputs", 3)
    assert [line["xrequestid"] for line in outputs] == ["req-0", "req-1", "req-2"]
