"""The scoring gateway: a plain ASGI application in front of the instance processes.

Run it as its own process, with the command line of serving/server.py (`make run`, docker compose and
the tests all use it): uvicorn with the gateway's HTTP protocol, which limits header size and time,
and a connection limit.

    python -m serving.server --host 127.0.0.1 --port 8001

Routes (DESIGN.md, Contracts):

- `POST /endpoints/<endpoint>/score`: authenticate (key or token), pick a deployment (the
  `azureml-model-deployment` header pins one, otherwise the traffic weights; mirror traffic is copied
  in the background and its answer dropped), pick the instance with the fewest requests in flight,
  forward the body and stream the answer back.
- `GET /endpoints/<endpoint>/swagger.json`: the swagger of the deployment with the most traffic
  (same authentication as scoring).
- `GET /health`: 200 once the routing data is loaded, 503 before.
- `GET /metrics`: the request metrics in Prometheus's text format, labelled by endpoint and deployment
  (serving/metrics.py): for loopback clients, or with FLOWDEPLOY_GATEWAY_METRICS_TOKEN set, for a request
  bearing it (`Authorization: Bearer <token>`).

Request metrics (serving/metrics.py): every scored request is measured (status, total latency, time in the
instance, bytes, throttled or timed out) into in-memory counters and a record that a background task ships
to Redis every second, for the studio's Monitoring tab.

Inference data collection (serving/collector.py): for a deployment whose routing document has
`data_collection: true`, a sample of the requests forwarded to an instance is recorded (inputs, the answer
the client got, request id, time, status) and handed to a bounded queue that a writer thread empties into
hourly JSONL files; a full queue drops and counts, it never slows or fails a request.

Routing data comes from Redis only (serving/gateway_sync.py keeps an in-memory copy); the request
path makes no Redis call, logs nothing below WARNING and reuses pooled keep-alive connections to the
instances (serving/upstream.py).

Timeouts: a deployment's `request_timeout_ms` bounds the time until the instance's answer is
complete; for a streamed answer (text/event-stream) it bounds the time to the response headers
and then each pause between two chunks, so a long stream that keeps producing is never cut off.

Settings, from the environment only: REDIS_URL (default redis://127.0.0.1:6379/0),
FLOWDEPLOY_SECRET_KEY or DJANGO_SECRET_KEY (token signing and routing signatures, see serving/auth.py),
FLOWDEPLOY_GATEWAY_MAX_BODY_BYTES (default 5 MB, for deployments that do not set max_body_bytes),
FLOWDEPLOY_GATEWAY_BODY_TIMEOUT (default 30 s: a request body must arrive within it, or 408),
FLOWDEPLOY_GATEWAY_ACCESS_LOG (default false: uvicorn's per-request access log is switched off),
FLOWDEPLOY_LOG_LEVEL (default INFO), and for data collection FLOWDEPLOY_DATA_COLLECTION_DIR (default
<FLOWDEPLOY_DATA_DIR or ./var>/data-collection), FLOWDEPLOY_DATA_COLLECTION_QUEUE_RECORDS (default 10000),
FLOWDEPLOY_DATA_COLLECTION_QUEUE_BYTES (default 64 MiB) and FLOWDEPLOY_DATA_COLLECTION_MAX_OUTPUT_BYTES
(default 1 MiB: a longer answer is collected cut off, marked `truncated`), and
FLOWDEPLOY_GATEWAY_METRICS_TOKEN (default none: /metrics answers loopback clients only).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from json.scanner import make_scanner
from pathlib import Path
from typing import Any

from serving import collector as collection
from serving import metrics as request_metrics
from serving.auth import routing_key, signing_key
from serving.gateway_errors import JSON_HEADER, error_body, upstream_error
from serving.gateway_routes import Deployment, Endpoint, Instance, RouteTable
from serving.gateway_sync import RouteSync
from serving.upstream import Response, UpstreamConnectError, UpstreamError, UpstreamPool

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("flowdeploy.gateway")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_BODY_TIMEOUT_S = 30.0
# Idle pooled connections are dropped after this long; instances must keep them open longer
# (serving/launcher.py starts gunicorn with --keep-alive 75), or a request can meet a connection
# the instance just closed.
UPSTREAM_KEEPALIVE_S = 30.0
SWAGGER_TIMEOUT_S = 10.0

WWW_AUTHENTICATE = (b"www-authenticate", b"Bearer")
RETRY_AFTER = (b"retry-after", b"1")
INSTANCE_DOWN_SECONDS = 5.0


CONNECTION_CLOSE = (b"connection", b"close")


class _TooLarge(Exception):
    """The body grew past the deployment's limit while it was read."""


def env_int(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """A whole number >= 0 from the environment; a bad value stops the gateway with a clear message."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, not {raw!r}")
    return value


def env_seconds(name: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    """A duration in seconds > 0 (1, 0.5) from the environment; a bad value stops the gateway with a clear message."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be a number of seconds > 0, not {raw!r}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name} must be true or false, not {raw!r}")


def _bearer(header: bytes | None) -> str:
    """The credential of an `Authorization: Bearer ...` header; "" (refused) for anything else.

    Keys and tokens are url-safe base64 text, so a byte outside ASCII means a wrong credential.
    """
    if header is None or header[:7].lower() != b"bearer ":
        return ""
    credential = header[7:].strip()
    if not credential.isascii():
        return ""
    return credential.decode("ascii")


def _kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


class Gateway:
    """The ASGI application. Its state is created on lifespan startup (or by the first request)."""

    def __init__(self) -> None:
        self.table = RouteTable()
        self.sync: RouteSync | None = None
        self.pool: UpstreamPool | None = None
        self.signing_key = b""
        self.body_timeout = DEFAULT_BODY_TIMEOUT_S
        self.collector = collection.Collector(Path())  # replaced, with its settings, on startup
        self.metrics = request_metrics.Metrics(collection.gateway_id())
        self.metrics_token = ""
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self._starting: asyncio.Lock | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self.pool is None:
                await self._start_once()
            path = scope["path"]
            method = scope["method"]
            if path.startswith("/endpoints/"):
                name, _, action = path[11:].partition("/")
                if action == "score":
                    if method == "POST":
                        return await self.score(scope, receive, send, name)
                    return await self._method_not_allowed(send, method, path, b"POST")
                if action == "swagger.json":
                    if method == "GET":
                        return await self.swagger(scope, send, name)
                    return await self._method_not_allowed(send, method, path, b"GET")
            elif path == "/health":
                return await self.health(send)
            elif path == "/metrics":
                if method == "GET":
                    return await self.prometheus(scope, send)
                return await self._method_not_allowed(send, method, path, b"GET")
            return await self._error(send, 404, "NotFound", f"No route for {method} {path}.", _new_request_id())
        if kind == "lifespan":
            return await self._lifespan(receive, send)

    # Lifecycle

    async def startup(self) -> None:
        _configure_logging()
        self.collector = collection.Collector(
            collection.collection_dir(),
            max_records=env_int("FLOWDEPLOY_DATA_COLLECTION_QUEUE_RECORDS", collection.DEFAULT_QUEUE_RECORDS),
            max_bytes=env_int("FLOWDEPLOY_DATA_COLLECTION_QUEUE_BYTES", collection.DEFAULT_QUEUE_BYTES),
            max_output_bytes=env_int(
                "FLOWDEPLOY_DATA_COLLECTION_MAX_OUTPUT_BYTES", collection.DEFAULT_MAX_OUTPUT_BYTES
            ),
        )
        max_body = env_int("FLOWDEPLOY_GATEWAY_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
        self.table = collection.CollectingRouteTable(self.collector, max_body)
        self.body_timeout = env_seconds("FLOWDEPLOY_GATEWAY_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT_S)
        self.signing_key = signing_key()
        self.metrics_token = os.environ.get("FLOWDEPLOY_GATEWAY_METRICS_TOKEN", "").strip()
        redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
        key = routing_key()
        self.sync = RouteSync(self.table, redis_url, key)
        self.pool = UpstreamPool(keepalive=UPSTREAM_KEEPALIVE_S)
        self.collector.start()
        self._tasks = [
            asyncio.ensure_future(self.sync.run()),
            asyncio.ensure_future(self.sync.write_inflight()),
            asyncio.ensure_future(self.collector.maintain(self.sync.client, key)),
            asyncio.ensure_future(self.metrics.run(self.sync.client)),
        ]

    async def shutdown(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        self._tasks = []
        for instance in self.table.instances():
            instance.origin.close_idle()
        # What is queued is written (for a few seconds at most: the writer may be stuck), then the last counts go.
        await asyncio.to_thread(self.collector.stop)
        if self.sync is not None:
            with contextlib.suppress(Exception):
                await self.collector.report(self.sync.client)
            with contextlib.suppress(Exception):
                await self.metrics.ship(self.sync.client)
            await self.sync.close()

    async def _start_once(self) -> None:
        """For servers run without lifespan events: start on the first request."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.pool is None:
                await self.startup()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # Routes

    async def health(self, send: Send) -> None:
        if self.table.loaded:
            body = json.dumps({"status": "Healthy", "endpoints": len(self.table.endpoints)}).encode()
            return await self._send(send, 200, body, _new_request_id())
        body = {
            "status": "Unhealthy",
            "endpoints": 0,
            "message": "The routing data is not loaded yet: Redis does not answer.",
        }
        await self._send(send, 503, json.dumps(body).encode(), _new_request_id())

    async def prometheus(self, scope: Scope, send: Send) -> None:
        """The request metrics in Prometheus's text format: with FLOWDEPLOY_GATEWAY_METRICS_TOKEN set, for a request
        bearing it; without, for loopback clients only."""
        request_id = _new_request_id()
        if self.metrics_token:
            authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            if not hmac.compare_digest(_bearer(authorization).encode(), self.metrics_token.encode()):
                message = "The metrics need 'Authorization: Bearer <FLOWDEPLOY_GATEWAY_METRICS_TOKEN>'."
                return await self._error(send, 401, "Unauthorized", message, request_id, None, WWW_AUTHENTICATE)
        else:
            client = (scope.get("client") or ("",))[0]
            if client not in ("127.0.0.1", "::1"):
                message = "The metrics answer loopback clients only, unless FLOWDEPLOY_GATEWAY_METRICS_TOKEN is set."
                return await self._error(send, 403, "Forbidden", message, request_id)
        inflight: dict[tuple[str, str], int] = {}
        for endpoint in self.table.endpoints.values():
            for deployment in endpoint.deployments.values():
                inflight[endpoint.name, deployment.name] = sum(i.inflight for i in deployment.instances)
        body = self.metrics.render(inflight)
        headers = [
            (b"content-type", request_metrics.CONTENT_TYPE),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def score(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        """Score one request, measured (serving/metrics.py): counted once the answer went out, off the request path."""
        meter = request_metrics.Meter(send)
        try:
            await self._score(scope, receive, meter, name)
        finally:
            self.metrics.observe(meter)

    async def _score(self, scope: Scope, receive: Receive, meter: request_metrics.Meter, name: str) -> None:
        send: Send = meter
        authorization = content_type = length = accept = request_id = pinned = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                authorization = value
            elif key == b"content-type":
                content_type = value
            elif key == b"content-length":
                length = value
            elif key == b"accept":
                accept = value
            elif key == b"x-request-id":
                request_id = value
            elif key == b"azureml-model-deployment":
                pinned = value
        if not request_id:
            request_id = _new_request_id()
        meter.request_id = request_id

        endpoint = await self._authorized_endpoint(send, name, authorization, request_id)
        if endpoint is None:
            if name in self.table.endpoints:
                meter.endpoint = name
            return
        meter.endpoint = endpoint.name
        if pinned is not None:
            deployment = await self._pinned_deployment(send, endpoint, pinned, request_id)
            if deployment is None:
                return
        else:
            deployment = endpoint.pick_deployment()
            if deployment is None:
                message = f"No healthy instance: endpoint '{endpoint.name}' has no deployment taking traffic."
                return await self._error(send, 503, "NoHealthyInstance", message, request_id)
        meter.deployment = deployment.name

        limit = deployment.max_body_bytes
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await self._error(send, 400, "BadRequest", "Content-Length is not a number.", request_id)
            if declared > limit:
                return await self._too_large(send, limit, request_id, deployment)
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await _read_body(receive, limit)
        except _TooLarge:
            return await self._too_large(send, limit, request_id, deployment)
        except TimeoutError:
            message = f"The request body did not arrive within {self.body_timeout:g} s."
            return await self._error(send, 408, "RequestTimeout", message, request_id, deployment, CONNECTION_CLOSE)
        if body is None:  # the client went away
            return
        meter.bytes_in = len(body)
        problem = _body_problem(body)
        if problem:
            return await self._error(send, 400, "BadRequest", problem, request_id, deployment)

        if not deployment.instances:
            message = f"No healthy instance: deployment '{deployment.name}' of endpoint '{endpoint.name}' has none."
            return await self._error(send, 503, "NoHealthyInstance", message, request_id, deployment)
        instance = deployment.pick_instance()
        if instance is None:
            return await self._too_many(send, deployment, request_id)

        # Everything of the upstream request but its first line and Host header (Origin.head renders those).
        tail = b"".join(
            (
                b"content-length: ",
                str(len(body)).encode(),
                b"\r\ncontent-type: ",
                content_type or b"application/json",
                b"\r\nx-request-id: ",
                request_id,
                b"\r\naccept: " + accept + b"\r\n\r\n" if accept else b"\r\n\r\n",
                body,
            )
        )
        if pinned is None and endpoint.mirrors:
            for mirror, fraction in endpoint.mirrors:
                if mirror is not deployment and random.random() < fraction:
                    self._spawn(self._mirror(mirror, tail))

        capture = None
        sampling = self.collector.sampling
        if sampling:  # some deployment collects: is this request one to record?
            rate = sampling.get(deployment)
            if rate is not None and (rate >= 1.0 or random.random() < rate):
                send = capture = collection.Capture(send, self.collector.max_output_bytes)
        try:
            for _attempt in range(len(deployment.instances)):
                instance.inflight += 1
                self.table.dirty.add(instance)
                try:
                    await self._forward(receive, send, deployment, instance, tail, request_id, meter)
                    return
                except UpstreamConnectError:
                    # The instance is gone (crashed, or stopped before the routing caught up). Nothing was
                    # sent, so another instance can take the request; skip this one until the control
                    # plane republishes the routing.
                    instance.down_until = time.monotonic() + INSTANCE_DOWN_SECONDS
                finally:
                    instance.inflight -= 1
                    self.table.dirty.add(instance)
                instance = deployment.pick_instance()
                if instance is None:
                    break
            message = f"No healthy instance: every instance of deployment '{deployment.name}' refused the connection."
            await self._error(send, 503, "NoHealthyInstance", message, request_id, deployment)
        finally:
            if capture is not None:  # after the answer went out: a few appends, no I/O
                self.collector.offer(endpoint.name, deployment.name, request_id, body, capture)

    async def _too_many(self, send: Send, deployment: Deployment, request_id: bytes) -> None:
        message = (
            f"Too many requests: every instance of deployment '{deployment.name}' is serving "
            f"max_concurrent_requests_per_instance={deployment.max_concurrent} requests. Retry later."
        )
        await self._error(send, 429, "TooManyRequests", message, request_id, deployment, RETRY_AFTER)

    async def swagger(self, scope: Scope, send: Send, name: str) -> None:
        authorization = request_id = pinned = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                authorization = value
            elif key == b"x-request-id":
                request_id = value
            elif key == b"azureml-model-deployment":
                pinned = value
        if not request_id:
            request_id = _new_request_id()
        endpoint = await self._authorized_endpoint(send, name, authorization, request_id)
        if endpoint is None:
            return
        if pinned is not None:
            deployment = await self._pinned_deployment(send, endpoint, pinned, request_id)
            if deployment is None:
                return
        else:
            deployment = endpoint.swagger_deployment or next(iter(endpoint.deployments.values()), None)
            if deployment is None:
                message = f"No healthy instance: endpoint '{endpoint.name}' has no deployment."
                return await self._error(send, 503, "NoHealthyInstance", message, request_id)
        body = deployment.swagger_body
        if body is None:
            body = await self._fetch_swagger(deployment)
            if body is None:
                message = f"No healthy instance of deployment '{deployment.name}' answered with its swagger."
                return await self._error(send, 503, "NoHealthyInstance", message, request_id, deployment)
        await self._send(send, 200, body, request_id, deployment)

    # Proxying

    async def _forward(
        self,
        receive: Receive,
        send: Send,
        deployment: Deployment,
        instance: Instance,
        tail: bytes,
        request_id: bytes,
        meter: request_metrics.Meter | None = None,
    ) -> None:
        started = time.perf_counter()
        try:
            response = await self.pool.request(instance.origin, instance.score_head + tail, deployment.timeout)
        except TimeoutError:
            _in_instance(meter, started)
            return await self._timed_out(send, deployment, request_id)
        except UpstreamConnectError:
            raise  # the caller tries another instance
        except UpstreamError as error:
            _in_instance(meter, started)
            return await self._upstream_failed(send, deployment, error, request_id)
        try:
            content_type = response.content_type or b"application/json"
            if response.streaming:
                try:
                    return await self._stream(receive, send, deployment, response, content_type, request_id)
                finally:
                    _in_instance(meter, started, response.status, streamed=True)
            try:
                payload = await response.read()
            except TimeoutError:
                _in_instance(meter, started)
                return await self._timed_out(send, deployment, request_id)
            except UpstreamError as error:
                _in_instance(meter, started)
                return await self._upstream_failed(send, deployment, error, request_id)
        finally:
            response.close()
        status = response.status
        _in_instance(meter, started, status)
        if status >= 400:
            status, payload = upstream_error(status, payload)
            if status == 424:
                content_type = b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-request-id", request_id),
                    (b"azureml-model-deployment", deployment.header_value),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _stream(
        self,
        receive: Receive,
        send: Send,
        deployment: Deployment,
        response: Response,
        content_type: bytes,
        request_id: bytes,
    ) -> None:
        """Pass a text/event-stream answer on chunk by chunk, as the instance writes it."""
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", content_type),
                    (b"cache-control", b"no-cache"),
                    (b"x-request-id", request_id),
                    (b"azureml-model-deployment", deployment.header_value),
                ],
            }
        )
        watcher = asyncio.ensure_future(_close_on_disconnect(receive, response))
        try:
            while True:
                try:
                    chunk = await response.next_chunk(deployment.timeout)
                except TimeoutError:
                    logger.warning(
                        "Stream %s from deployment %s paused longer than %s s; ending it",
                        request_id.decode("latin-1"),
                        deployment.name,
                        deployment.timeout,
                    )
                    break
                except UpstreamError:
                    break  # the instance went away, or the client did and the watcher abandoned the answer
                if not chunk:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            watcher.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _mirror(self, deployment: Deployment, tail: bytes) -> None:
        """A copy of a request for a mirror deployment; its answer is read and dropped."""
        instance = deployment.pick_instance()
        if instance is None:
            return  # no instance, or all busy: mirror traffic never queues
        instance.inflight += 1
        self.table.dirty.add(instance)
        try:
            response = await self.pool.request(instance.origin, instance.score_head + tail, deployment.timeout)
            try:
                await response.read()
            finally:
                response.close()
        except (TimeoutError, UpstreamError) as error:
            logger.debug("Mirror request to %s failed: %r", deployment.name, error)
        finally:
            instance.inflight -= 1
            self.table.dirty.add(instance)

    async def _fetch_swagger(self, deployment: Deployment) -> bytes | None:
        for instance in deployment.instances:
            try:
                response = await self.pool.request(instance.origin, instance.swagger_request, SWAGGER_TIMEOUT_S)
                try:
                    body = await response.read()
                finally:
                    response.close()
                if response.status == 200:
                    json.loads(body)
                    deployment.swagger_body = body
                    return body
                logger.warning(
                    "No swagger for %s from %s: HTTP %s", deployment.name, instance.base_url, response.status
                )
            except (TimeoutError, UpstreamError, ValueError) as error:
                logger.warning("No swagger for %s from %s: %r", deployment.name, instance.base_url, error)
        return None

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # Answers

    async def _authorized_endpoint(
        self, send: Send, name: str, authorization: bytes | None, request_id: bytes
    ) -> Endpoint | None:
        endpoint = self.table.endpoints.get(name)
        if endpoint is None:
            if not self.table.loaded:
                message = "The gateway has not loaded its routing data yet (Redis does not answer). Retry shortly."
                await self._error(send, 503, "ServiceUnavailable", message, request_id)
            else:
                await self._error(send, 404, "EndpointNotFound", f"No endpoint named '{name}'.", request_id)
            return None
        if endpoint.authorized(_bearer(authorization), self.signing_key):
            return endpoint
        if authorization is None:
            message = "The request has no credentials: send the header 'Authorization: Bearer <key or token>'."
        elif endpoint.auth_type == "token":
            message = f"The token is not valid for endpoint '{name}': it is expired, malformed or for another endpoint."
        else:
            message = f"The key is not valid for endpoint '{name}'."
        await self._error(send, 401, "Unauthorized", message, request_id, None, WWW_AUTHENTICATE)
        return None

    async def _pinned_deployment(
        self, send: Send, endpoint: Endpoint, pinned: bytes, request_id: bytes
    ) -> Deployment | None:
        deployment = endpoint.deployments.get(pinned.decode("latin-1"))
        if deployment is None:
            message = f"Endpoint '{endpoint.name}' has no deployment named '{pinned.decode('latin-1')}'."
            await self._error(send, 404, "DeploymentNotFound", message, request_id)
        return deployment

    async def _timed_out(self, send: Send, deployment: Deployment, request_id: bytes) -> None:
        message = (
            f"The deployment '{deployment.name}' did not answer within its request timeout "
            f"({round(deployment.timeout * 1000)} ms)."
        )
        await self._error(send, 504, "RequestTimeout", message, request_id, deployment)

    async def _upstream_failed(self, send: Send, deployment: Deployment, error: Exception, request_id: bytes) -> None:
        message = f"No healthy instance: the instance of deployment '{deployment.name}' failed to answer: {error}"
        await self._error(send, 503, "NoHealthyInstance", message, request_id, deployment)

    async def _too_large(self, send: Send, limit: int, request_id: bytes, deployment: Deployment) -> None:
        message = f"The request body is larger than the limit of {limit} bytes."
        await self._error(send, 413, "PayloadTooLarge", message, request_id, deployment)

    async def _method_not_allowed(self, send: Send, method: str, path: str, allowed: bytes) -> None:
        message = f"{method} is not allowed on {path}; use {allowed.decode()}."
        await self._error(send, 405, "MethodNotAllowed", message, _new_request_id(), None, (b"allow", allowed))

    async def _error(
        self,
        send: Send,
        status: int,
        code: str,
        message: str,
        request_id: bytes,
        deployment: Deployment | None = None,
        extra: tuple[bytes, bytes] | None = None,
    ) -> None:
        await self._send(send, status, error_body(code, message), request_id, deployment, extra)

    async def _send(
        self,
        send: Send,
        status: int,
        body: bytes,
        request_id: bytes,
        deployment: Deployment | None = None,
        extra: tuple[bytes, bytes] | None = None,
    ) -> None:
        headers = [JSON_HEADER, (b"content-length", str(len(body)).encode()), (b"x-request-id", request_id)]
        if deployment is not None:
            headers.append((b"azureml-model-deployment", deployment.header_value))
        if extra is not None:
            headers.append(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _in_instance(
    meter: request_metrics.Meter | None, started: float, status: int | None = None, streamed: bool = False
) -> None:
    """Note on the request's meter the time spent in the instance and the status it answered."""
    if meter is not None:
        meter.model_ms = (time.perf_counter() - started) * 1000
        meter.model_status = status
        meter.streamed = streamed


def _new_request_id() -> bytes:
    """A random (version 4) UUID, without the syscall and the object uuid.uuid4() costs."""
    value = f"{random.getrandbits(128) & _UUID4_MASK | _UUID4_BITS:032x}"
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}".encode()


_UUID4_MASK = ~(0xF000 << 64) & ~(0xC000 << 48)
_UUID4_BITS = (0x4000 << 64) | (0x8000 << 48)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body; None when the client disconnected; _TooLarge past `limit` bytes."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _TooLarge
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _body_problem(body: bytes) -> str | None:
    """Why the body is not a JSON object of flow inputs, or None when it is one."""
    if body[:1] == b"{":  # the usual case, checked with the C scanner alone
        try:
            text = body.decode()
            _, end = _scan_json(text, 0)
        except (UnicodeDecodeError, ValueError, StopIteration):
            end = -1  # not the fast case: the full parse below says what is wrong
        else:
            if end == len(text) or not text[end:].strip(_JSON_WHITESPACE):
                return None
    try:
        inputs = json.loads(body)
    except UnicodeDecodeError:
        return "Request body is not valid JSON: it is not UTF-8 text."
    except json.JSONDecodeError as error:
        return f"Request body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
    if type(inputs) is not dict:
        return f"Request body must be a JSON object of flow inputs, not {_kind(inputs)}."
    return None


_scan_json = make_scanner(json.JSONDecoder())
_JSON_WHITESPACE = " \t\n\r"


async def _close_on_disconnect(receive: Receive, response: Response) -> None:
    """While an answer streams: when the client goes away, close the instance's connection too."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            response.close()
            return


def _configure_logging() -> None:
    level = os.environ.get("FLOWDEPLOY_LOG_LEVEL", "INFO").upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError(f"FLOWDEPLOY_LOG_LEVEL must be a logging level such as INFO, not {level!r}")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    if not env_bool("FLOWDEPLOY_GATEWAY_ACCESS_LOG", False):
        # uvicorn logs every request at INFO when "uvicorn.access" has a handler. The command line is
        # fixed (`uvicorn serving.gateway:app ...`), so the gateway switches it off itself.
        access = logging.getLogger("uvicorn.access")
        access.handlers.clear()
        access.propagate = False


app = Gateway()
