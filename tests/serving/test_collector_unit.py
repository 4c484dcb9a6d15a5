"""Data collection's parts without a gateway process: the lines, the stream assembly, the queue's bound, the files."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from serving import collector as collection
from serving.auth import routing_key
from serving.collector import Capture, Collector, assemble_stream, record_lines
from serving.routing import sign

KEY = routing_key("collector-unit-secret")


def _run(coroutine):
    """asyncio.run in a thread of its own: a browser test earlier in the session may leave a loop running here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _capture(status=200, body=b'{"answer": "hi"}', content_type=b"application/json", limit=1 << 20) -> Capture:
    sent = []

    async def send(message):
        sent.append(message)

    capture = Capture(send, limit)
    messages = [
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]},
        {"type": "http.response.body", "body": body},
    ]
    for message in messages:
        _run(capture(message))
    assert sent == messages  # the client gets everything, whatever is kept
    return capture


def _record(capture: Capture, inputs=b'{"question": "hi"}', request_id=b"req-1") -> collection.Record:
    return collection.Record(
        "ep-a",
        "blue",
        request_id,
        capture.started,
        capture.status,
        inputs,
        capture.chunks,
        capture.content_type,
        capture.truncated,
        len(inputs) + capture.size,
    )


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_it_writes_matching_inputs_and_outputs_lines():
    """Both lines carry the request id, one correlation id, the time, the names and the status; data is parsed JSON."""
    inputs, outputs = (json.loads(line) for line in record_lines(_record(_capture())))
    assert inputs["type"] == "flowdeploy.inference.model_inputs"
    assert outputs["type"] == "flowdeploy.inference.model_outputs"
    assert inputs["data"] == {"question": "hi"}
    assert outputs["data"] == {"answer": "hi"}
    for line in (inputs, outputs):
        assert line["xrequestid"] == "req-1"
        assert (line["endpoint"], line["deployment"], line["status"]) == ("ep-a", "blue", 200)
        assert line["source"] == "/endpoints/ep-a/deployments/blue"
        assert line["time"].endswith("Z")
    assert inputs["correlationid"] == outputs["correlationid"] == inputs["id"]
    assert (outputs["streamed"], outputs["truncated"]) == (False, False)


def test_it_keeps_an_answer_that_is_not_json_as_text():
    capture = _capture(status=502, body=b"<html>bad gateway</html>", content_type=b"text/html")
    _, outputs = (json.loads(line) for line in record_lines(_record(capture)))
    assert outputs["data"] == "<html>bad gateway</html>"
    assert outputs["status"] == 502


def test_it_assembles_a_stream_into_one_output():
    """String pieces are concatenated per field, other values replaced; a stream of non-objects stays text."""
    body = b'data: {"answer": "Turn"}\n\ndata: {"answer": " 1", "n": 1}\n\ndata: {"answer": "!", "n": 2}\n\n'
    assert assemble_stream(body) == {"answer": "Turn 1!", "n": 2}
    assert assemble_stream(b"data: [1, 2]\n\n") == "data: [1, 2]\n\n"
    assert assemble_stream(b'data: {"answer": "a"}\r\n\r\ndata: {"answer": "b"}\r\n\r\n') == {"answer": "ab"}


def test_it_leaves_out_the_event_a_size_limit_cut():
    body = b'data: {"answer": "one "}\n\ndata: {"answer": "two"}\n\ndata: {"ans'
    assert assemble_stream(body, truncated=True) == {"answer": "one two"}


def test_it_keeps_at_most_the_limit_of_an_answer():
    capture = _capture(body=b"x" * 100, limit=64)
    assert capture.truncated and capture.chunks == [b"x" * 64]
    capture = _capture(body=b"x" * 64, limit=64)
    assert not capture.truncated and capture.size == 64


def test_it_writes_hourly_files_per_deployment(tmp_path):
    collector = Collector(tmp_path, gateway="host-1")
    capture = _capture()
    capture.started = datetime(2026, 12, 1, 10, 59, 59, tzinfo=UTC).timestamp()
    later = _capture()
    later.started = datetime(2026, 12, 1, 11, 0, 1, tzinfo=UTC).timestamp()
    collector.write([_record(capture, request_id=b"a"), _record(later, request_id=b"b")])
    for kind in ("model_inputs", "model_outputs"):
        first = tmp_path / "ep-a" / "blue" / kind / "2026" / "12" / "01" / "10" / "host-1.jsonl"
        second = tmp_path / "ep-a" / "blue" / kind / "2026" / "12" / "01" / "11" / "host-1.jsonl"
        assert [line["xrequestid"] for line in _lines(first)] == ["a"]
        assert [line["xrequestid"] for line in _lines(second)] == ["b"]


def test_it_drops_and_counts_past_the_queue_bound(tmp_path):
    """Records beyond max_records (the batch being written included) are dropped and counted per deployment."""
    collector = Collector(tmp_path, max_records=2)
    for number in range(5):
        collector.offer("ep-a", "blue", f"r{number}".encode(), b"{}", _capture())
    collector.offer("ep-a", "green", b"g", b"{}", _capture())
    assert collector.pending == 2
    dropped = {key: count for key, (count, _, _) in collector._dropped.items()}
    assert dropped == {("ep-a", "blue"): 3, ("ep-a", "green"): 1}
    collector.drain()
    assert collector.pending == 0
    collector.offer("ep-a", "blue", b"again", b"{}", _capture())
    assert collector.pending == 1


def test_it_drops_past_the_byte_bound(tmp_path):
    collector = Collector(tmp_path, max_bytes=2 * (collection.RECORD_OVERHEAD + 200))
    for _ in range(3):
        collector.offer("ep-a", "blue", b"r", b"{}", _capture(body=b'"' + b"x" * 150 + b'"'))
    assert collector.pending == 2
    assert collector._dropped[("ep-a", "blue")][0] == 1


def test_it_counts_records_it_cannot_write(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be")
    collector = Collector(blocked)
    collector.offer("ep-a", "blue", b"r", b"{}", _capture())
    collector.drain()
    assert collector._failed[("ep-a", "blue")][0] == 1
    assert collector.pending == 0


def test_it_collects_only_deployments_whose_document_says_so(tmp_path):
    collector = Collector(tmp_path)
    table = collection.CollectingRouteTable(collector)
    spec = {"instances": [{"id": "i1", "url": "http://127.0.0.1:1"}]}
    document = {
        "name": "ep-a",
        "deployments": {"blue": {**spec, "data_collection": True}, "green": {**spec, "data_collection": False}},
        "traffic": {"blue": 100},
    }
    endpoint = table.apply(document)
    assert collector.sampling == {endpoint.deployments["blue"]: 1.0}
    collector.apply_rates({"ep-a/blue": 0.25})
    assert collector.sampling == {endpoint.deployments["blue"]: 0.25}
    table.apply({**document, "deployments": {**document["deployments"], "blue": spec}})
    assert collector.sampling == {}
    table.apply(document)
    table.drop("ep-a")
    assert collector.sampling == {}


class _FakeRedis:
    def __init__(self, value=None):
        self.value = value
        self.hashes: dict[str, dict] = {}

    async def get(self, key):
        return self.value

    async def hset(self, key, field, value):
        self.hashes.setdefault(key, {})[field] = value


def test_it_applies_only_a_signed_policy_not_older_than_its_own(tmp_path):
    collector = Collector(tmp_path, gateway="gw")
    table = collection.CollectingRouteTable(collector)
    endpoint = table.apply(
        {"name": "ep-a", "deployments": {"blue": {"data_collection": True}}, "traffic": {"blue": 100}}
    )
    blue = endpoint.deployments["blue"]

    def policy(rate, version, key=KEY):
        document = sign({"version": version, "deployments": {"ep-a/blue": {"sampling_rate": rate}}}, key)
        return json.dumps(document).encode()

    redis = _FakeRedis(policy(0.5, 10))
    _run(collector.refresh_policy(redis, KEY))
    assert collector.sampling[blue] == 0.5
    assert redis.hashes[collection.POLICY_APPLIED_KEY] == {"gw": 10}
    redis.value = policy(0.1, 11, key=routing_key("someone-else"))
    _run(collector.refresh_policy(redis, KEY))
    redis.value = policy(0.1, 9)
    _run(collector.refresh_policy(redis, KEY))
    assert collector.sampling[blue] == 0.5
    redis.value = None
    _run(collector.refresh_policy(redis, KEY))
    assert collector.sampling[blue] == 1.0


def test_it_refuses_a_malformed_rate():
    with pytest.raises(ValueError, match=r"deployments\.ep-a/blue\.sampling_rate"):
        collection.policy_rates({"deployments": {"ep-a/blue": {"sampling_rate": 2}}})


def test_it_finds_its_folder_like_the_studio():
    assert collection.collection_dir({"FLOWDEPLOY_DATA_COLLECTION_DIR": "/srv/dc"}) == Path("/srv/dc")
    assert collection.collection_dir({"FLOWDEPLOY_DATA_DIR": "/srv/data"}) == Path("/srv/data/data-collection")


def test_it_writes_what_is_queued_before_it_stops(tmp_path):
    collector = Collector(tmp_path, gateway="gw")
    collector.start()
    collector.offer("ep-a", "blue", b"last", b"{}", _capture())
    collector.stop(timeout=5)
    files = list((tmp_path / "ep-a" / "blue" / "model_outputs").rglob("gw.jsonl"))
    assert len(files) == 1
    assert [line["xrequestid"] for line in _lines(files[0])] == ["last"]
