"""The gateway's HTTP client for instances, against small asyncio servers in the test process."""

import asyncio
import concurrent.futures

import pytest

from config.local_services import free_port
from serving.upstream import Origin, UpstreamConnectError, UpstreamError, UpstreamPool


class Server:
    """Answers each request with the next of `answers` (raw bytes, or a list of (delay, bytes) to write)."""

    def __init__(self, answers: list) -> None:
        self.answers = list(answers)
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> "Server":
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(line.split(b":")[1] for line in head.split(b"\r\n") if line.startswith(b"content-length"))
                )
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if answer is None:  # hang up without answering
                    break
                for delay, data in answer if isinstance(answer, list) else [(0, answer)]:
                    await asyncio.sleep(delay)
                    writer.write(data)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client hung up: this test server is done
        finally:
            writer.close()


def _request(origin: Origin, body: bytes = b"{}") -> bytes:
    return origin.head("POST", "/score") + f"content-length: {len(body)}\r\n\r\n".encode() + body


OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


def run(coroutine):
    """Run on a loop of its own in a thread: the browser tests' Playwright keeps a loop in this one."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_it_reuses_a_kept_alive_connection():
    """Two requests in a row, one connection; the answer is whole when request() returns."""

    async def scenario():
        async with Server([OK, OK]) as server:
            pool, origin = UpstreamPool(), Origin(server.url)
            for _ in range(2):
                response = await pool.request(origin, _request(origin, b'{"a": 1}'), 5)
                assert response.status == 200
                assert response.content_type == b"application/json"
                assert await response.read() == b'{"ok":true}'
                response.close()
            origin.close_idle()
            return server

    server = run(scenario())
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /score HTTP/1.1\r\nhost: 127.0.0.1:")
    assert server.requests[0].endswith(b'\r\n\r\n{"a": 1}')


def test_it_reads_chunked_and_close_delimited_answers():
    """Chunked bodies are decoded; a body without a length ends with the connection."""
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    unframed = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"

    async def scenario():
        async with Server([chunked, unframed]) as server:
            pool, origin = UpstreamPool(), Origin(server.url)
            first = await pool.request(origin, _request(origin), 5)
            second = await pool.request(origin, _request(origin), 5)
            return await first.read(), await second.read()

    assert run(scenario()) == (b"abcde", b"until the end")


def test_it_reads_large_answers_whole():
    """An answer much larger than the socket buffers is read to the end."""
    body = b"x" * 3_000_000
    large = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async def scenario():
        async with Server([large]) as server:
            pool, origin = UpstreamPool(), Origin(server.url)
            response = await pool.request(origin, _request(origin), 5)
            return await response.read()

    assert run(scenario()) == body


def test_it_streams_event_streams_as_they_arrive():
    """A text/event-stream answer is handed over at its head; next_chunk() gives each piece as it comes."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = [(0, head), (0.2, b"6\r\ndata 1\r\n"), (0.2, b"6\r\ndata 2\r\n"), (0, b"0\r\n\r\n")]

    async def scenario():
        async with Server([answer]) as server:
            pool, origin = UpstreamPool(), Origin(server.url)
            loop = asyncio.get_running_loop()
            started = loop.time()
            response = await pool.request(origin, _request(origin), 5)
            assert response.streaming
            arrivals = []
            while chunk := await response.next_chunk(5):
                arrivals.append((round(loop.time() - started, 1), chunk))
            return arrivals

    arrivals = run(scenario())
    assert [chunk for _, chunk in arrivals] == [b"data 1", b"data 2"]
    assert arrivals[0][0] < arrivals[1][0]


def test_it_times_out_and_never_reuses_the_connection():
    """No answer within the timeout: TimeoutError, and the connection is closed."""
    late = [(1.0, OK)]

    async def scenario():
        async with Server([late, OK]) as server:
            pool, origin = UpstreamPool(), Origin(server.url)
            with pytest.raises(TimeoutError):
                await pool.request(origin, _request(origin), 0.2)
            assert origin.idle == []
            return server

    assert run(scenario()).connections == 1


def test_it_stops_waiting_between_chunks_after_the_idle_timeout():
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

    async def scenario():
        async with Server([[(0, head), (0, b"1\r\na\r\n"), (2, b"0\r\n\r\n")]]) as server:
            pool, origin = UpstreamPool(), Origin(server.url)
            response = await pool.request(origin, _request(origin), 5)
            assert await response.next_chunk(1) == b"a"
            with pytest.raises(TimeoutError):
                await response.next_chunk(0.2)
            response.close()

    run(scenario())


def test_it_reports_refused_connections_and_hang_ups():
    """A port without a server is UpstreamConnectError; a server hanging up mid-request is UpstreamError."""

    async def scenario():
        pool = UpstreamPool()
        closed = Origin(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(UpstreamConnectError):
            await pool.request(closed, _request(closed), 5)
        async with Server([None]) as server:
            origin = Origin(server.url)
            with pytest.raises(UpstreamError):
                await pool.request(origin, _request(origin), 5)

    run(scenario())


def test_it_drops_idle_connections_the_instance_closed():
    """A connection the instance closed while idle is not used for the next request."""

    async def scenario():
        async with Server([OK]) as server:  # one answer, then the server closes the connection
            pool, origin = UpstreamPool(), Origin(server.url)
            response = await pool.request(origin, _request(origin), 5)
            await response.read()
            await asyncio.sleep(0.1)
            server.answers.append(OK)
            response = await pool.request(origin, _request(origin), 5)
            assert response.status == 200
            return server

    assert run(scenario()).connections == 2
