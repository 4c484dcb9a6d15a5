"""Inference data collection in the gateway: the inputs and outputs of scored requests, written off the request path.

Plain Python, no Django: the gateway imports it, the studio (monitoring/) reads what it writes.

What is collected: for a deployment whose routing document says `"data_collection": true`, a sample of its
scored requests (each one with the probability of its sampling rate, default 1.0): the request body (the
flow inputs) and the response body the client got (after the output selection; for a streamed answer the
events assembled into one object, see `assemble_stream`), with the request id, the time, the endpoint, the
deployment and the status. Requests refused before they reach an instance (401, 400, 413, 429, 503) are
not scored and not collected. Nothing is collected for a deployment with collection off.

Layout, like Azure ML's model data collector, one file per gateway process and hour (UTC):

    <FLOWDEPLOY_DATA_COLLECTION_DIR>/<endpoint>/<deployment>/model_inputs/YYYY/MM/DD/HH/<host>-<pid>.jsonl
    <FLOWDEPLOY_DATA_COLLECTION_DIR>/<endpoint>/<deployment>/model_outputs/YYYY/MM/DD/HH/<host>-<pid>.jsonl

Each line is a CloudEvents-style JSON object (`specversion`, `id`, `source`, `type`
`flowdeploy.inference.model_inputs` or `...model_outputs`, `datacontenttype`, `time`, `data`) plus
`endpoint`, `deployment`, `xrequestid` (the request id the client saw), `correlationid` (the same in the
inputs and outputs line of one request: the key to join them), `status`, and in outputs `streamed` and
`truncated`.

Off the request path: the request hands a record to a bounded in-memory queue (`Collector.offer`, a few
appends, no I/O) and a writer thread turns records into lines and appends them to the files, in batches (it
waits WRITE_LINGER_S after a record arrives, so one open per file serves many records). When the
queue is full (FLOWDEPLOY_DATA_COLLECTION_QUEUE_RECORDS records or FLOWDEPLOY_DATA_COLLECTION_QUEUE_BYTES
bytes, counting the batch being written) the record is dropped and counted: a slow or stuck disk never
slows or fails a request. Records the writer could not write (an OSError) are counted as failed.

Redis (the gateway's own connection, never on the request path; `Collector.maintain`, every second):

- `flowdeploy:collection:policy`: the sampling rates the studio sets, a signed document like the routing
  documents (serving/routing.py signs and verifies both): {"version": ..., "deployments": {"<endpoint>/<deployment>":
  {"sampling_rate": 0.25}}, "signed_at": ..., "signature": ...}. Deployments it does not name sample 1.0. Each
  gateway writes the version it applied to the hash `flowdeploy:collection:policy-applied`, field `<host>-<pid>`.
- `flowdeploy:collection:drops:<endpoint>/<deployment>`: a hash the gateway adds its counts to: `dropped`
  (queue full), `failed` (not written), and `first` / `last`, the times (epoch seconds) of the first and the
  latest loss. The studio shows it on the data asset page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from serving.gateway_routes import RouteTable
from serving.routing import sign, verified

logger = logging.getLogger("flowdeploy.gateway")

KINDS = ("model_inputs", "model_outputs")
POLICY_KEY = "flowdeploy:collection:policy"
POLICY_APPLIED_KEY = "flowdeploy:collection:policy-applied"
DROPS_KEY = "flowdeploy:collection:drops:{endpoint}/{deployment}"

DEFAULT_QUEUE_RECORDS = 10_000
DEFAULT_QUEUE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
BATCH_RECORDS = 500
RECORD_OVERHEAD = 256  # bytes counted per record beyond its bodies (ids, names, the tuple)
MAINTAIN_INTERVAL_S = 1.0
WRITE_LINGER_S = 0.05  # the writer waits this long after a record arrives, to write a batch at once
WARN_EVERY_S = 60.0

REDIS_ERRORS: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)
with contextlib.suppress(ImportError):
    from redis.exceptions import RedisError

    REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


def collection_dir(environ: Mapping[str, str] | None = None) -> Path:
    """FLOWDEPLOY_DATA_COLLECTION_DIR, else `<FLOWDEPLOY_DATA_DIR or ./var>/data-collection`, as the studio finds it."""
    env = os.environ if environ is None else environ
    explicit = env.get("FLOWDEPLOY_DATA_COLLECTION_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser().resolve()
    data_dir = env.get("FLOWDEPLOY_DATA_DIR", "").strip()
    root = Path(data_dir).expanduser().resolve() if data_dir else Path(__file__).resolve().parent.parent / "var"
    return root / "data-collection"


def gateway_id() -> str:
    """This gateway process, `<host>-<pid>`: its file in each hour folder is `<gateway id>.jsonl`, so processes never
    write to the same file."""
    return f"{socket.gethostname()}-{os.getpid()}"


def drops_key(endpoint: str, deployment: str) -> str:
    return DROPS_KEY.format(endpoint=endpoint, deployment=deployment)


# The studio's side (a plain redis.Redis client)


def publish_policy(client: Any, rates: Mapping[str, float], key: bytes, version: int | None = None) -> dict:
    """Sign and store the sampling rates, {"<endpoint>/<deployment>": rate in (0, 1]}; returns the document."""
    document = {
        "version": int(time.time() * 1000) if version is None else version,
        "deployments": {name: {"sampling_rate": float(rate)} for name, rate in sorted(rates.items())},
    }
    signed = sign(document, key)
    client.set(POLICY_KEY, json.dumps(signed, separators=(",", ":")))
    return signed


def policy_applied(client: Any, gateway: str) -> int | None:
    """The policy version a gateway (its `gateway_id()`) applies now."""
    value = client.hget(POLICY_APPLIED_KEY, gateway)
    return int(value) if value is not None else None


def read_drops(client: Any, endpoint: str, deployment: str) -> dict:
    """{"dropped": n, "failed": n, "first": epoch seconds or None, "last": ...} for one deployment."""
    stored = client.hgetall(drops_key(endpoint, deployment))
    raw = {k.decode() if isinstance(k, bytes) else k: v for k, v in stored.items()}
    return {
        "dropped": int(raw.get("dropped", 0)),
        "failed": int(raw.get("failed", 0)),
        "first": float(raw["first"]) if "first" in raw else None,
        "last": float(raw["last"]) if "last" in raw else None,
    }


def policy_rates(document: Any) -> dict[str, float]:
    """The sampling rates of a verified policy document; ValueError naming the field when it is malformed."""
    if not isinstance(document, dict):
        raise ValueError("the document is not a JSON object")
    deployments = document.get("deployments") or {}
    if not isinstance(deployments, dict):
        raise ValueError("deployments must be an object")
    rates = {}
    for name, spec in deployments.items():
        rate = spec.get("sampling_rate") if isinstance(spec, dict) else None
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError(f"deployments.{name}.sampling_rate must be a number from 0 to 1, not {rate!r}")
        rates[name] = float(rate)
    return rates


# The request path


class Capture:
    """The `send` of a collected request: passes every message on, keeping the status and up to `limit` body bytes."""

    __slots__ = ("chunks", "content_type", "limit", "send", "size", "started", "status", "truncated")

    def __init__(self, send: Send, limit: int) -> None:
        self.send = send
        self.limit = limit
        self.started = time.time()
        self.status: int | None = None
        self.content_type = b""
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body and not self.truncated:
                room = self.limit - self.size
                if len(body) <= room:
                    self.chunks.append(body)
                    self.size += len(body)
                else:  # keep what fits: the start of the answer
                    if room > 0:
                        self.chunks.append(body[:room])
                        self.size = self.limit
                    self.truncated = True
        elif message["type"] == "http.response.start":
            self.status = message["status"]
            for name, value in message.get("headers", ()):
                if name == b"content-type":
                    self.content_type = value
        await self.send(message)


class Record:
    """One collected request, as the request path hands it over (formatting happens in the writer)."""

    __slots__ = (
        "chunks",
        "content_type",
        "deployment",
        "endpoint",
        "inputs",
        "request_id",
        "size",
        "status",
        "time",
        "truncated",
    )

    def __init__(
        self,
        endpoint: str,
        deployment: str,
        request_id: bytes,
        at: float,
        status: int,
        inputs: bytes,
        chunks: list[bytes],
        content_type: bytes,
        truncated: bool,
        size: int,
    ) -> None:
        self.endpoint = endpoint
        self.deployment = deployment
        self.request_id = request_id
        self.time = at
        self.status = status
        self.inputs = inputs
        self.chunks = chunks
        self.content_type = content_type
        self.truncated = truncated
        self.size = size


class Collector:
    """The gateway's data collection: which deployments collect, the queue, the writer thread, the counts."""

    def __init__(
        self,
        root: Path,
        max_records: int = DEFAULT_QUEUE_RECORDS,
        max_bytes: int = DEFAULT_QUEUE_BYTES,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        gateway: str | None = None,
        linger: float = WRITE_LINGER_S,
    ) -> None:
        self.root = root
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_output_bytes = max_output_bytes
        self.linger = linger
        self._made: set[Path] = set()  # hour folders this writer made (or found)
        self.gateway = gateway or gateway_id()
        self.file_name = f"{self.gateway}.jsonl"
        # The request path reads this one dict: deployment (the routing table's object) -> its sampling rate,
        # for the deployments that collect. Empty when none does.
        self.sampling: dict[Any, float] = {}
        self._collecting: dict[str, dict[str, Any]] = {}  # endpoint -> {deployment name: Deployment} collecting
        self._rates: dict[str, float] = {}  # "<endpoint>/<deployment>" -> rate, from the policy document
        self._policy_raw: bytes | None = None
        self._policy_version: int | None = None
        self._policy_refused: bytes | None = None
        # The queue: appended by the event loop, emptied by the writer thread. Each side only adds to its own
        # counters, so what is pending (added - written) needs no lock.
        self._pending: deque[Record] = deque()
        self._added = self._added_bytes = 0
        self._written = self._written_bytes = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._dropped: dict[tuple[str, str], list] = {}  # not yet reported: (endpoint, deployment) -> [n, first, last]
        self._failed: dict[tuple[str, str], list] = {}  # the same for records not written (writer thread, locked)
        self._failed_lock = threading.Lock()
        self._warned: dict[str, float] = {}

    # Which deployments collect (called by the routing table as documents are applied; no I/O)

    def routing_applied(self, endpoint: Any, document: Mapping[str, Any]) -> None:
        """An endpoint's routing document was applied: its deployments with `data_collection: true` collect."""
        specs = document.get("deployments") or {}
        collecting = {
            name: deployment
            for name, deployment in endpoint.deployments.items()
            if isinstance(specs.get(name), dict) and specs[name].get("data_collection") is True
        }
        for old in self._collecting.pop(endpoint.name, {}).values():
            self.sampling.pop(old, None)
        if collecting:
            self._collecting[endpoint.name] = collecting
            for name, deployment in collecting.items():
                self.sampling[deployment] = self._rates.get(f"{endpoint.name}/{name}", 1.0)

    def routing_dropped(self, endpoint: str) -> None:
        for old in self._collecting.pop(endpoint, {}).values():
            self.sampling.pop(old, None)

    def apply_rates(self, rates: dict[str, float]) -> None:
        self._rates = rates
        self.sampling = {
            deployment: rates.get(f"{endpoint}/{name}", 1.0)
            for endpoint, deployments in self._collecting.items()
            for name, deployment in deployments.items()
        }

    # The request path

    def offer(self, endpoint: str, deployment: str, request_id: bytes, inputs: bytes, capture: Capture) -> None:
        """Queue one record, or drop and count it when the queue is full. Never blocks, no I/O."""
        if capture.status is None:
            return  # nothing was answered: the client went away first
        size = len(inputs) + capture.size + RECORD_OVERHEAD
        if (
            self._added - self._written >= self.max_records
            or self._added_bytes - self._written_bytes + size > self.max_bytes
        ):
            _count(self._dropped, (endpoint, deployment), time.time())
            return
        self._pending.append(
            Record(
                endpoint,
                deployment,
                request_id,
                capture.started,
                capture.status,
                inputs,
                capture.chunks,
                capture.content_type,
                capture.truncated,
                size,
            )
        )
        self._added += 1
        self._added_bytes += size
        if not self._wake.is_set():
            self._wake.set()

    @property
    def pending(self) -> int:
        return self._added - self._written

    # The writer thread

    def start(self) -> None:
        if self._thread is None:
            # A daemon: a writer stuck on a dead disk must not keep the gateway from exiting.
            self._thread = threading.Thread(target=self._run, name="data-collection-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (for at most `timeout` seconds) and stop the writer."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if not self._stopping:
                # Let a batch gather: fewer, longer writes cost the gateway's event loop less than one per request.
                time.sleep(self.linger)
            self._wake.clear()  # before looking at the queue: a record added from now on sets it again
            self.drain()
            if self._stopping:
                return

    def drain(self) -> None:
        """Write everything queued now, in batches (the writer thread; tests call it directly)."""
        pending = self._pending
        while pending:
            batch: list[Record] = []
            size = 0
            while pending and len(batch) < BATCH_RECORDS:
                record = pending.popleft()
                batch.append(record)
                size += record.size
            try:
                self.write(batch)
            except Exception:  # a bug here must not stop collection for good
                logger.exception("Data collection could not write %d record(s)", len(batch))
                for record in batch:
                    self._count_failed((record.endpoint, record.deployment))
            self._written += len(batch)
            self._written_bytes += size

    def write(self, records: Iterable[Record]) -> None:
        """Append the records' lines to their hour files, one open per file and batch."""
        groups: dict[tuple[str, str, str], tuple[list[bytes], list[bytes]]] = {}
        for record in records:
            inputs, outputs = record_lines(record)
            hour = time.strftime("%Y/%m/%d/%H", time.gmtime(record.time))
            lines = groups.setdefault((record.endpoint, record.deployment, hour), ([], []))
            lines[0].append(inputs)
            lines[1].append(outputs)
        for (endpoint, deployment, hour), (inputs, outputs) in groups.items():
            folder = self.root / endpoint / deployment
            try:
                for kind, lines in zip(KINDS, (inputs, outputs), strict=True):
                    self._append(folder / kind / hour, b"".join(lines))
            except OSError as error:
                for _ in inputs:
                    self._count_failed((endpoint, deployment))
                self._warn(f"write:{endpoint}/{deployment}", "Data collection could not write to %s: %s", folder, error)

    def _append(self, folder: Path, data: bytes) -> None:
        if folder not in self._made:
            folder.mkdir(parents=True, exist_ok=True)
            if len(self._made) > 10_000:
                self._made.clear()
            self._made.add(folder)
        try:
            handle = open(folder / self.file_name, "ab")  # noqa: SIM115
        except FileNotFoundError:  # the folder was removed meanwhile
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(folder / self.file_name, "ab")  # noqa: SIM115
        with handle:
            handle.write(data)

    def _count_failed(self, key: tuple[str, str]) -> None:
        with self._failed_lock:
            _count(self._failed, key, time.time())

    # Redis: the policy in, the counts out (a background task of the gateway)

    async def maintain(self, client: Any, key: bytes, interval: float = MAINTAIN_INTERVAL_S) -> None:
        """Forever: apply a new sampling policy, report losses. Redis failures are retried, never raised."""
        failing = False
        while True:
            try:
                await self.refresh_policy(client, key)
                await self.report(client)
                failing = False
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as error:
                if not failing:
                    logger.warning("Data collection cannot reach Redis (%s); will retry", error)
                failing = True
            except Exception:
                logger.exception("Data collection's Redis task failed; retrying")
            await asyncio.sleep(interval)

    async def refresh_policy(self, client: Any, key: bytes) -> None:
        raw = await client.get(POLICY_KEY)
        if raw == self._policy_raw or (raw is not None and raw == self._policy_refused):
            return
        if raw is None:
            self._policy_raw, self._policy_version = None, None
            self.apply_rates({})
            return
        try:
            document = json.loads(raw)
            if not verified(document, key):
                raise ValueError("its signature is missing or wrong")
            version = document.get("version")
            if isinstance(version, bool) or not isinstance(version, int):
                raise ValueError("version is missing")
            if self._policy_version is not None and version < self._policy_version:
                raise ValueError(f"it is older than version {self._policy_version}, applied now")
            rates = policy_rates(document)
        except ValueError as error:
            self._policy_refused = raw
            logger.warning("Refusing the data collection policy: %s; keeping the sampling rates in use", error)
            return
        self.apply_rates(rates)
        self._policy_raw, self._policy_version, self._policy_refused = raw, version, None
        await client.hset(POLICY_APPLIED_KEY, self.gateway, version)

    async def report(self, client: Any) -> None:
        """Add the losses counted since the last report to Redis (kept for the next report when Redis fails)."""
        dropped, self._dropped = self._dropped, {}
        with self._failed_lock:
            failed, self._failed = self._failed, {}
        if not dropped and not failed:
            return
        try:
            pipe = client.pipeline(transaction=False)
            for field, counts in (("dropped", dropped), ("failed", failed)):
                for (endpoint, deployment), (count, first, last) in counts.items():
                    name = drops_key(endpoint, deployment)
                    pipe.hincrby(name, field, count)
                    pipe.hsetnx(name, "first", repr(first))
                    pipe.hset(name, "last", repr(last))
            await pipe.execute()
        except BaseException:
            _merge(self._dropped, dropped)
            with self._failed_lock:
                _merge(self._failed, failed)
            raise
        for (endpoint, deployment), (count, _, _) in dropped.items():
            self._warn(
                f"drop:{endpoint}/{deployment}",
                "Data collection dropped %d record(s) of %s/%s: the writer is behind (queue full)",
                count,
                endpoint,
                deployment,
            )

    def _warn(self, what: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._warned.get(what, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned[what] = now
            logger.warning(message, *args)


def _count(counts: dict[tuple[str, str], list], key: tuple[str, str], now: float) -> None:
    entry = counts.get(key)
    if entry is None:
        counts[key] = [1, now, now]
    else:
        entry[0] += 1
        entry[2] = now


def _merge(into: dict[tuple[str, str], list], counts: dict[tuple[str, str], list]) -> None:
    for key, (count, first, last) in counts.items():
        entry = into.get(key)
        if entry is None:
            into[key] = [count, first, last]
        else:
            into[key] = [entry[0] + count, min(entry[1], first), max(entry[2], last)]


# Lines (the writer thread)


def record_lines(record: Record, record_id: str | None = None) -> tuple[bytes, bytes]:
    """The model_inputs and model_outputs lines of one record.

    Built as text rather than through json.dumps of a dict: the writer runs in the gateway's process, and
    what it costs in CPU (and in holding the GIL) is taken from the event loop. A body that is JSON on one
    line goes in as it is; anything else is encoded.
    """
    record_id = record_id or _new_id()
    seconds, fraction = divmod(record.time, 1)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(fraction * 1000):03d}Z"
    endpoint, deployment = _string(record.endpoint), _string(record.deployment)
    source = _string(f"/endpoints/{record.endpoint}/deployments/{record.deployment}")
    head = (
        f'{{"specversion":"1.0","id":"{record_id}","source":{source},"datacontenttype":"application/json",'
        f'"time":"{stamp}","endpoint":{endpoint},"deployment":{deployment},'
        f'"xrequestid":{_string(record.request_id.decode("latin-1"))},"correlationid":"{record_id}",'
        f'"status":{int(record.status)},'
    ).encode()
    body = b"".join(record.chunks)
    streamed = record.content_type.startswith(b"text/event-stream")
    if streamed:
        outputs = _string(assemble_stream(body, record.truncated)).encode()
    else:
        outputs = _json_fragment(body, trusted=False)
    flags = b',"streamed":%s,"truncated":%s}\n' % (
        b"true" if streamed else b"false",
        b"true" if record.truncated else b"false",
    )
    return (
        head + b'"type":"flowdeploy.inference.model_inputs","data":' + _json_fragment(record.inputs) + b"}\n",
        head + b'"type":"flowdeploy.inference.model_outputs","data":' + outputs + flags,
    )


def _new_id() -> str:
    """A random (version 4) UUID, without the syscall and the object uuid.uuid4() costs."""
    value = f"{random.getrandbits(128) & _UUID4_MASK | _UUID4_BITS:032x}"
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


_UUID4_MASK = ~(0xF000 << 64) & ~(0xC000 << 48)
_UUID4_BITS = (0x4000 << 64) | (0x8000 << 48)


_string = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # a JSON value, compact


def _json_fragment(body: bytes, trusted: bool = True) -> bytes:
    """`body` as a JSON value on one line: itself when it is JSON without a line break (checked unless trusted: the
    gateway checked a request body before forwarding it), else parsed and encoded again, else a JSON string."""
    body = body.strip()
    one_line = b"\n" not in body and b"\r" not in body
    if one_line and trusted and body:
        return body
    try:
        value = json.loads(body)
    except ValueError:  # not JSON (or cut off at the size limit): kept as text
        return _string(body.decode("utf-8", errors="replace")).encode()
    return body if one_line else _string(value).encode()


def assemble_stream(body: bytes, truncated: bool = False) -> Any:
    """A server-sent-events answer as one output: the JSON objects of its `data:` events merged, string values
    concatenated in order (promptflow streams a generator output as successive pieces of text), other values
    replaced by the later event. An incomplete last event (the stream was cut off at the size limit) is left
    out. When an event is not a JSON object, the whole stream is kept as text."""
    text = body.decode("utf-8", errors="replace").replace("\r\n", "\n")
    events = text.split("\n\n")
    if truncated and events:
        events = events[:-1]
    merged: dict[str, Any] = {}
    for event in events:
        data = [line[5:].removeprefix(" ") for line in event.split("\n") if line.startswith("data:")]
        if not data:
            continue
        try:
            value = json.loads("\n".join(data))
        except ValueError:
            return text
        if not isinstance(value, dict):
            return text
        for name, piece in value.items():
            before = merged.get(name)
            merged[name] = before + piece if isinstance(before, str) and isinstance(piece, str) else piece
    return merged


class CollectingRouteTable(RouteTable):
    """The gateway's routing table, telling the collector which deployments collect as documents come and go."""

    def __init__(self, collector: Collector, default_max_body_bytes: int = 5 * 1024 * 1024) -> None:
        super().__init__(default_max_body_bytes)
        self.collector = collector

    def apply(self, document: dict) -> Any:
        endpoint = super().apply(document)
        self.collector.routing_applied(endpoint, document)
        return endpoint

    def drop(self, name: str) -> None:
        super().drop(name)
        self.collector.routing_dropped(name)
