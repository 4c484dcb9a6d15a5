"""Request metrics in the gateway: a record per scored request for the studio, and Prometheus counters.

Plain Python, no Django: the gateway imports it, the studio (monitoring/requests.py) stores what it ships.

Per request the gateway measures, like Azure's online endpoint traffic log: the status the client got, the
status the instance answered (none when no instance answered), the total latency, the time spent in the
instance (from sending it the request until its answer was complete, or its stream ended), the request and
response bytes, and whether the request was throttled (429) or timed out (408, 504).

The request path only counts: `Meter` wraps the request's `send` (it keeps the status and counts the body
bytes), `Metrics.observe` adds to in-memory counters and appends one tuple to a bounded deque. No I/O, no JSON.

Off the request path, `Metrics.ship` (a background task, every second) encodes the records as JSON lines and
appends them to the Redis list `flowdeploy:requests` (capped at MAX_SHIPPED records: when the studio does not
take them, the oldest go). The studio's beat task takes them from there (monitoring/requests.py). When the
deque is full (the studio's Redis is unreachable for a long time) a record is dropped and counted.

`GET /metrics` on the gateway answers `Metrics.render()`, the Prometheus text format, labelled by endpoint and
deployment. Requests for an endpoint the gateway does not know count under `endpoint=""`, so a client cannot
make the label set grow by inventing names.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

logger = logging.getLogger("flowdeploy.gateway")

RECORDS_KEY = "flowdeploy:requests"
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
MAX_PENDING = 50_000  # records kept in the gateway while Redis does not take them
MAX_SHIPPED = 500_000  # records kept in Redis while the studio does not take them
SHIP_INTERVAL_S = 1.0
# Seconds: Prometheus histogram buckets for the total latency and the time in the instance.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

REDIS_ERRORS: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)
with contextlib.suppress(ImportError):
    from redis.exceptions import RedisError

    REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


class Meter:
    """The `send` of a scored request: passes every message on, keeping the status and the bytes sent, and what
    the gateway learns on the way (deployment, request id, time in the instance)."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "deployment",
        "endpoint",
        "model_ms",
        "model_status",
        "request_id",
        "send",
        "started",
        "status",
        "streamed",
    )

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = time.perf_counter()
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.endpoint = ""
        self.deployment = ""
        self.request_id = b""
        self.model_status: int | None = None
        self.model_ms: float | None = None
        self.streamed = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            self.bytes_out += len(message.get("body", b""))
        elif message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


class Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.count += 1
        self.sum += seconds


class Series:
    """The counters of one (endpoint, deployment)."""

    __slots__ = ("latency", "model_latency", "request_bytes", "response_bytes", "statuses", "throttled", "timed_out")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.latency = Histogram()
        self.model_latency = Histogram()
        self.request_bytes = 0
        self.response_bytes = 0
        self.throttled = 0
        self.timed_out = 0


class Metrics:
    """The gateway's request counters and the records waiting to be shipped to the studio."""

    def __init__(self, gateway: str, max_pending: int = MAX_PENDING, max_shipped: int = MAX_SHIPPED) -> None:
        self.gateway = gateway
        self.max_pending = max_pending
        self.max_shipped = max_shipped
        self.series: dict[tuple[str, str], Series] = {}
        self.pending: deque[tuple] = deque()
        self.dropped = 0
        self.shipped = 0
        self._seq = 0
        self._unsent: list[bytes] = []  # encoded records an earlier ship could not send
        self._failing = False

    # The request path

    def observe(self, meter: Meter) -> None:
        """Count one finished request (called once its answer went out, or the client went away)."""
        if not meter.status:
            return  # nothing was answered: the client went away before
        total = time.perf_counter() - meter.started
        key = (meter.endpoint, meter.deployment)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series()
        status = meter.status
        series.statuses[status] = series.statuses.get(status, 0) + 1
        series.latency.observe(total)
        if meter.model_ms is not None:
            series.model_latency.observe(meter.model_ms / 1000)
        series.request_bytes += meter.bytes_in
        series.response_bytes += meter.bytes_out
        if status == 429:
            series.throttled += 1
        elif status in (408, 504):
            series.timed_out += 1
        if not meter.endpoint:
            return  # no endpoint of the studio's: nothing to show there
        if len(self.pending) + len(self._unsent) >= self.max_pending:
            self.dropped += 1
            return
        self._seq += 1
        self.pending.append(
            (
                self._seq,
                time.time() - total,
                meter.endpoint,
                meter.deployment,
                meter.request_id,
                status,
                meter.model_status,
                total * 1000,
                meter.model_ms,
                meter.bytes_in,
                meter.bytes_out,
                meter.streamed,
            )
        )

    # Off the request path

    def take_lines(self) -> list[bytes]:
        """The pending records as JSON lines (removed from the queue). Built as text, not with json.dumps of a dict:
        this runs on the gateway's event loop, and costs a third as much this way."""
        lines = []
        pending = self.pending
        prefix = f'{{"id":{_json_string(self.gateway + "-")[:-1]}'
        while pending:
            seq, at, endpoint, deployment, request_id, status, model_status, total, model, b_in, b_out, streamed = (
                pending.popleft()
            )
            lines.append(
                (
                    f'{prefix}{seq}","time":{at:.3f},"endpoint":{_json_string(endpoint)},'
                    f'"deployment":{_json_string(deployment)},"request_id":{_json_string(request_id.decode("latin-1"))},'
                    f'"status":{status},"model_status":{"null" if model_status is None else model_status},'
                    f'"total_ms":{total:.2f},"model_ms":{"null" if model is None else f"{model:.2f}"},'
                    f'"request_bytes":{b_in},"response_bytes":{b_out},'
                    f'"throttled":{"true" if status == 429 else "false"},'
                    f'"timed_out":{"true" if status in (408, 504) else "false"},'
                    f'"streamed":{"true" if streamed else "false"}}}'
                ).encode()
            )
        return lines

    async def ship(self, client: Any) -> int:
        """Append the pending records (and those an earlier failure kept back) to the Redis list; on failure they
        are kept, up to the bound, for the next try."""
        lines = self._unsent + self.take_lines() if self.pending else self._unsent
        if not lines:
            return 0
        self._unsent = []
        try:
            pipe = client.pipeline(transaction=False)
            pipe.rpush(RECORDS_KEY, *lines)
            pipe.ltrim(RECORDS_KEY, -self.max_shipped, -1)
            await pipe.execute()
        except BaseException:
            if len(lines) > self.max_pending:
                self.dropped += len(lines) - self.max_pending
                lines = lines[-self.max_pending :]
            self._unsent = lines
            raise
        self.shipped += len(lines)
        return len(lines)

    async def run(self, client: Any, interval: float = SHIP_INTERVAL_S) -> None:
        """Forever: ship the records every `interval` seconds. Redis failures are retried, never raised."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.ship(client)
                if self._failing:
                    logger.warning("Request records reach Redis again")
                self._failing = False
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as error:
                if not self._failing:
                    logger.warning("Request records cannot reach Redis (%s); will retry", error)
                self._failing = True
            except Exception:
                logger.exception("Shipping request records failed; retrying")

    # Prometheus

    def render(self, inflight: dict[tuple[str, str], int] | None = None) -> bytes:
        """The counters in the Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")

        series = sorted(self.series.items())
        family("flowdeploy_requests_total", "counter", "Scored requests, by the status the client got.")
        for (endpoint, deployment), s in series:
            for status, count in sorted(s.statuses.items()):
                out.append(
                    f'flowdeploy_requests_total{{{_labels(endpoint, deployment)},status_code="{status}"}} {count}\n'
                )
        for name, attr, help_text in (
            ("flowdeploy_request_duration_seconds", "latency", "Total latency of scored requests, in the gateway."),
            (
                "flowdeploy_model_duration_seconds",
                "model_latency",
                "Time spent in the instance: from sending it the request until its answer was complete.",
            ),
        ):
            family(name, "histogram", help_text)
            for (endpoint, deployment), s in series:
                histogram: Histogram = getattr(s, attr)
                if not histogram.count:
                    continue
                labels = _labels(endpoint, deployment)
                cumulative = 0
                for bound, count in zip((*BUCKETS, "+Inf"), histogram.buckets, strict=True):
                    cumulative += count
                    out.append(f'{name}_bucket{{{labels},le="{bound}"}} {cumulative}\n')
                out.append(f"{name}_sum{{{labels}}} {histogram.sum!r}\n{name}_count{{{labels}}} {histogram.count}\n")
        for name, attr, help_text in (
            ("flowdeploy_request_bytes_total", "request_bytes", "Bytes of request bodies."),
            ("flowdeploy_response_bytes_total", "response_bytes", "Bytes of response bodies."),
            ("flowdeploy_throttled_requests_total", "throttled", "Requests refused with 429 (concurrency limit)."),
            ("flowdeploy_timed_out_requests_total", "timed_out", "Requests that timed out (408 or 504)."),
        ):
            family(name, "counter", help_text)
            for (endpoint, deployment), s in series:
                out.append(f"{name}{{{_labels(endpoint, deployment)}}} {getattr(s, attr)}\n")
        if inflight is not None:
            family("flowdeploy_requests_in_flight", "gauge", "Requests being served by the instances now.")
            for (endpoint, deployment), count in sorted(inflight.items()):
                out.append(f"flowdeploy_requests_in_flight{{{_labels(endpoint, deployment)}}} {count}\n")
        family("flowdeploy_request_records_dropped_total", "counter", "Request records not shipped to the studio.")
        out.append(f"flowdeploy_request_records_dropped_total {self.dropped}\n")
        return "".join(out).encode()


_json_string = json.encoder.encode_basestring_ascii  # a JSON string literal, quotes included (the C encoder)


def _labels(endpoint: str, deployment: str) -> str:
    return f'endpoint="{_escape(endpoint)}",deployment="{_escape(deployment)}"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
