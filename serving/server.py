"""How the scoring gateway is run: its uvicorn command line, in one place, and its HTTP protocol.

`make run`, docker compose and the tests start the gateway with `gateway_command()` (or
`python -m serving.server --host ... --port ...`, which runs that command):

    uvicorn serving.gateway:app --host H --port P --http serving.server:GatewayProtocol --ws none
        --lifespan on --limit-concurrency N --timeout-keep-alive K

The gateway is the only thing between the network and the instances, so it must not be knocked over
by a client. uvicorn's httptools protocol has no limit on the size of request headers (its
`h11_max_incomplete_event_size` applies to h11 only) and no timeout before the first request or
while headers arrive; `GatewayProtocol` adds both:

- the request line, the headers and any chunked trailers together may be at most
  FLOWDEPLOY_GATEWAY_MAX_HEADER_BYTES (default 16384): beyond it the answer is 431 and the
  connection is closed;
- the headers of a request must be complete within FLOWDEPLOY_GATEWAY_HEADER_TIMEOUT seconds
  (default 10) of its first byte, or of the connection being opened: otherwise the connection is
  closed (slowloris);
- beyond FLOWDEPLOY_GATEWAY_MAX_CONNECTIONS (default 1000, uvicorn's --limit-concurrency)
  connections or requests at once, requests are answered 503 with the gateway's JSON error, and the
  connection is closed;
- idle keep-alive connections are closed after FLOWDEPLOY_GATEWAY_KEEPALIVE_TIMEOUT seconds
  (default 5, uvicorn's --timeout-keep-alive).

Parse errors are answered 400 with the gateway's JSON error. The body has its own deadline, in the
application (FLOWDEPLOY_GATEWAY_BODY_TIMEOUT, serving/gateway.py). Each connection costs about two
file descriptors (the client's and one to an instance), so `ulimit -n` should be at least twice the
connection limit.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serving.gateway import env_int, env_seconds
from serving.gateway_errors import JSON_HEADER, error_body

APP = "serving.gateway:app"
PROTOCOL = "serving.server:GatewayProtocol"
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_KEEPALIVE_S = 5
CAPACITY_WARNING_EVERY_S = 60.0

logger = logging.getLogger("flowdeploy.gateway")


def header_limits(environ: Mapping[str, str] | None = None) -> tuple[int, float]:
    """(largest request head in bytes, seconds a request head may take), from the environment."""
    size = env_int("FLOWDEPLOY_GATEWAY_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES, environ)
    if size < 1024:
        raise ValueError(f"FLOWDEPLOY_GATEWAY_MAX_HEADER_BYTES must be at least 1024, not {size}")
    return size, env_seconds("FLOWDEPLOY_GATEWAY_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT_S, environ)


_process_header_limits = functools.cache(header_limits)  # read once per gateway process


def gateway_args(host: str, port: int | str, environ: Mapping[str, str] | None = None) -> list[str]:
    """uvicorn's arguments for the gateway, with the settings in `environ` (default: this process's environment).

    A bad setting raises ValueError here, before anything starts (the gateway process reads the header
    settings again: pass it the same environment).
    """
    header_limits(environ)
    connections = env_int("FLOWDEPLOY_GATEWAY_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, environ)
    if connections < 1:
        raise ValueError("FLOWDEPLOY_GATEWAY_MAX_CONNECTIONS must be at least 1")
    keepalive = env_int("FLOWDEPLOY_GATEWAY_KEEPALIVE_TIMEOUT", DEFAULT_KEEPALIVE_S, environ)
    return [
        APP,
        "--host",
        host,
        "--port",
        str(port),
        "--http",
        PROTOCOL,
        "--ws",
        "none",
        "--lifespan",
        "on",
        "--limit-concurrency",
        str(connections),
        "--timeout-keep-alive",
        str(keepalive),
    ]


def gateway_command(
    python_bin_dir: str | Path, host: str, port: int | str, environ: Mapping[str, str] | None = None
) -> list[str]:
    """The gateway's command line, with the uvicorn of the Python in `python_bin_dir` (a virtualenv's bin)."""
    return [str(Path(python_bin_dir) / "uvicorn"), *gateway_args(host, port, environ)]


class _HeadTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into an HttpParserCallbackError."""


class GatewayProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a limit on header size and time, and a JSON 503 at the connection limit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes, self.head_timeout = _process_header_limits()
        # The limit is checked here rather than by uvicorn, to answer with the gateway's JSON error.
        self.max_connections = self.limit_concurrency
        self.limit_concurrency = None
        self.head_timer: asyncio.TimerHandle | None = None
        self.in_head = False  # between the first byte of a request and the end of its headers
        self.messages = 0  # requests begun on this connection
        self.head_bytes = 0  # request line, header and trailer fields of the current request
        self.head_reads = 0  # bytes of reads that fell wholly inside the current request's head
        self.head_too_large = False

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()  # a connection that never sends a request is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, plus the count of a header still being received (httptools holds it until it ends)."""
        self._unset_keepalive_if_required()
        in_head, messages = self.in_head, self.messages
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.head_too_large:
                self._refuse_head()
            else:
                self.send_400_response("The request is not valid HTTP/1.1.")
            return
        except httptools.HttpParserUpgrade:
            return  # no websockets (--ws none): the request is served as plain HTTP, without a warning each time
        if in_head and self.in_head and self.messages == messages:
            self.head_reads += len(data)
            if self.head_reads > self.max_head_bytes:
                self._refuse_head()

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.messages += 1
        self.head_bytes = self.head_reads = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._cancel_head_timer()
        limit = self.max_connections
        if limit is None or (len(self.connections) <= limit and len(self.tasks) < limit):
            return super().on_headers_complete()
        _warn_capacity(limit)
        self.app = _over_capacity
        try:
            super().on_headers_complete()
        finally:
            self.app = self.config.loaded_app

    def _count(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > self.max_head_bytes:
            self.head_too_large = True
            raise _HeadTooLarge

    # Answers that never reach the application

    def send_400_response(self, msg: str) -> None:
        self._answer_and_close(400, error_body("BadRequest", msg))

    def _refuse_head(self) -> None:
        message = f"The request line and headers are larger than the limit of {self.max_head_bytes} bytes."
        self._answer_and_close(431, error_body("RequestHeaderFieldsTooLarge", message))

    def _answer_and_close(self, status: int, body: bytes) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # not in the middle of another answer
            head = [STATUS_LINE[status]]
            for name, value in [*self.server_state.default_headers, JSON_HEADER]:
                head += [name, b": ", value, b"\r\n"]
            head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
            self.transport.write(b"".join(head) + body)
        self.transport.close()

    # The header timer

    def _arm_head_timer(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier request on this connection is still being answered and reading is paused
            # meanwhile (pipelining): the client is not the slow one. Count again from now.
            self._arm_head_timer()
            return
        if not self.transport.is_closing():
            self.transport.close()


async def _over_capacity(scope: Any, receive: Any, send: Any) -> None:
    body = error_body("ServiceUnavailable", "The gateway is serving as many connections as it may. Retry later.")
    headers = [JSON_HEADER, (b"content-length", b"%d" % len(body)), (b"connection", b"close"), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_capacity_warned = -CAPACITY_WARNING_EVERY_S


def _warn_capacity(limit: int) -> None:
    global _capacity_warned
    now = time.monotonic()
    if now - _capacity_warned >= CAPACITY_WARNING_EVERY_S:
        _capacity_warned = now
        logger.warning(
            "The gateway is at FLOWDEPLOY_GATEWAY_MAX_CONNECTIONS=%d connections or requests; answering 503", limit
        )


def main(argv: list[str] | None = None) -> None:
    """`python -m serving.server --host H --port P [uvicorn options]`: run the gateway's command."""
    parser = argparse.ArgumentParser(prog="python -m serving.server", description="Run the scoring gateway.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default=os.environ.get("FLOWDEPLOY_GATEWAY_PORT") or "8001")
    args, extra = parser.parse_known_args(argv)
    try:
        command = [*gateway_command(Path(sys.executable).parent, args.host, args.port), *extra]
    except ValueError as error:
        sys.exit(f"The gateway cannot start: {error}")
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
