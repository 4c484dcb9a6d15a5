"""The gateway's HTTP/1.1 client for instance processes: pooled keep-alive connections, one write per request.

Why not aiohttp's ClientSession (which the gateway used first): on the 2-core machine the gateway is
measured on, a ClientSession request costs about 250-300 µs of CPU against about 70 µs for this
client, and at concurrency 1 in front of a real promptflow instance the gateway added about 1.8 ms
to the median latency with aiohttp and about 0.8 ms with this client (benchmarks/gateway.py).

The instances are promptflow's serving app under gunicorn on loopback, so the client needs very
little of HTTP: requests are written whole (headers and body in one write), answers are parsed with
httptools (the parser uvicorn uses; it comes with uvicorn[standard]), framed by Content-Length,
chunked encoding or the end of the connection.

A connection goes back to the pool as soon as its answer is complete and the instance allows
keep-alive; one that is idle for longer than `keepalive` seconds, or that the instance closed, is
never reused. Nothing here logs or allocates per request beyond the answer itself.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import httptools

STREAM_HIGH_WATER = 256 * 1024  # stop reading a streamed answer the client is not keeping up with


class UpstreamError(Exception):
    """The instance could not be reached or did not answer with a complete HTTP response."""


class UpstreamConnectError(UpstreamError):
    """No connection could be made (refused, unreachable)."""


class Origin:
    """Where an instance listens, with the request heads for it rendered once."""

    __slots__ = ("base_path", "host", "idle", "port")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an instance URL must be http://host:port, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.base_path = parts.path.rstrip("/")
        self.idle: list[_Connection] = []  # most recently used last

    def head(self, method: str, path: str) -> bytes:
        """The request line and Host header; the caller adds its headers and the blank line."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"{method} {self.base_path}{path} HTTP/1.1\r\nhost: {host}:{self.port}\r\n".encode("latin-1")

    def close_idle(self) -> None:
        for connection in self.idle:
            connection.transport.close()
        self.idle.clear()


class Response:
    """An answer being received. Read it whole with read(), or chunk by chunk with next_chunk()."""

    __slots__ = (
        "_chunks",
        "_complete",
        "_connection",
        "_error",
        "_framed",
        "_loop",
        "_paused",
        "_size",
        "_timer",
        "_waiter",
        "content_type",
        "headers_done",
        "status",
        "streaming",
    )

    def __init__(self, connection: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._connection = connection
        self._loop = loop
        self._chunks: list[bytes] = []
        self._size = 0
        self._complete = False
        self._error: BaseException | None = None
        self._framed = False  # Content-Length or chunked: the end does not depend on the connection closing
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future | None = None
        self.status = 0
        self.content_type = b""
        self.headers_done = False
        self.streaming = False  # text/event-stream: handed over as soon as its head is in

    async def read(self) -> bytes:
        """The whole body (the request's timeout still applies)."""
        while not self._complete:
            if self._error is not None:
                raise self._error
            await self._wait()
        self._disarm()
        body = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks = []
        return body

    async def next_chunk(self, idle_timeout: float) -> bytes:
        """What arrived since the last call, waiting up to `idle_timeout` seconds for something; b"" at the end."""
        self._disarm()
        if not self._chunks and not self._complete and self._error is None:
            self._arm(idle_timeout)
            try:
                await self._wait()
            finally:
                self._disarm()
        if self._chunks:
            data = b"".join(self._chunks)
            self._chunks = []
            self._size = 0
            if self._paused and self._connection is not None:
                self._paused = False
                self._connection.transport.resume_reading()
            return data
        if self._error is not None:
            raise self._error
        return b""

    def close(self) -> None:
        """Done with the answer: an incomplete one is abandoned and its connection closed, never reused."""
        self._disarm()
        if not self._complete and self._connection is not None:
            connection, self._connection = self._connection, None
            connection.response = None
            connection.transport.abort()
            self._fail(UpstreamError("The answer was abandoned."))

    # Called by the connection and the timer

    async def _wait(self) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None and not self._complete:
            self._error = error
        self._wake()

    def _arm(self, seconds: float) -> None:
        self._timer = self._loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        connection = self._connection
        self._fail(TimeoutError())
        if connection is not None and not self._complete:
            self._connection = None
            connection.response = None
            connection.transport.abort()

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self.streaming and self._size > STREAM_HIGH_WATER and not self._paused and self._connection is not None:
            self._paused = True
            self._connection.transport.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self._complete = True
        self._connection = None
        self._wake()


class _Connection(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is None:
            return
        self.response = None
        if response.headers_done and not response._framed:
            response._finish()  # the body ended with the connection, as HTTP/1.0-style answers do
        else:
            response._fail(UpstreamError("The instance closed the connection before its answer was complete."))

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # nothing was asked: whatever this is, the connection is not usable
            self.transport.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            response = self.response
            self.response = None
            self.transport.abort()
            if response is not None:
                response._fail(UpstreamError(f"The instance answered with invalid HTTP: {error}"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        lower = name.lower()
        if lower == b"content-type":
            response.content_type = value
        elif lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            response._framed = True

    def on_headers_complete(self) -> None:
        response = self.response
        response.status = self.parser.get_status_code()
        response.headers_done = True
        if response.content_type.startswith(b"text/event-stream"):
            response.streaming = True
            response._wake()
        # Otherwise the waiter sleeps on until the body is complete too: one wake-up per answer.

    def on_body(self, body: bytes) -> None:
        self.response._feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        self.response = None
        response._finish()
        if self.parser.should_keep_alive() and not self.closed:
            self.pool._release(self)
        else:
            self.transport.close()


class UpstreamPool:
    """Keep-alive connections to instances, shared by every request of the gateway process."""

    def __init__(self, keepalive: float = 30.0, connect_timeout: float = 5.0) -> None:
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout

    async def request(self, origin: Origin, data: bytes, timeout: float) -> Response:
        """Send a rendered request (head, blank line and body) and wait up to `timeout` s for the answer.

        Returns when the answer is complete, or, for a text/event-stream answer (`streaming`), as soon
        as its head is in: read it with next_chunk(), which sets its own timeout. Raises TimeoutError,
        UpstreamConnectError or UpstreamError. Always close() the response when done with it.
        """
        loop = asyncio.get_running_loop()
        connection = self._acquire(origin)
        if connection is None:
            try:
                async with asyncio.timeout(min(timeout, self.connect_timeout)):
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self, origin), origin.host, origin.port
                    )
            except OSError as error:
                raise UpstreamConnectError(str(error) or type(error).__name__) from error
        response = Response(connection, loop)
        connection.response = response
        response._arm(timeout)
        connection.transport.write(data)
        try:
            while not (response._complete or response.streaming):
                if response._error is not None:
                    raise response._error
                await response._wait()
        except BaseException:
            response.close()
            raise
        return response

    def _acquire(self, origin: Origin) -> _Connection | None:
        idle = origin.idle
        if not idle:
            return None
        oldest = time.monotonic() - self.keepalive
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since > oldest:
                return connection
            connection.transport.close()
        return None

    def _release(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        connection.origin.idle.append(connection)
