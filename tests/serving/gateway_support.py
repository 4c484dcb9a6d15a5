"""Helpers for the gateway tests: an HTTP client, the gateway process, fake and real instances.

Plain classes and functions; tests/serving/conftest.py turns them into fixtures. Fake instances
imitate promptflow's serving app and act on reserved inputs in the JSON body:

- `{"sleep": 0.5}` answers after half a second;
- `{"stream": 5, "gap": 0.2}` with `Accept: text/event-stream` answers 5 server-sent events, 0.2 s apart;
- `{"fail": "boom"}` answers like promptflow when a python node raises;
- `{"bad_input": true}` answers like promptflow when an input does not match the flow;
- `{"system_error": true}` answers like promptflow's SystemError (HTTP 500).

Anything else is echoed back with the headers the instance received.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp import web
from support import wait_for

from config.local_services import free_port
from serving.server import gateway_command

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_SECRET = "gateway-test-secret-3c1d"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def error(self) -> dict:
        return self.json["error"]


def call(
    base_url: str,
    path: str,
    body: bytes | dict | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
    timeout: float = 10,
    chunked: bool = False,
) -> Answer:
    """One request on a fresh connection; bodies given as dicts are sent as JSON."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    send_headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        if chunked:
            connection.request(method or "POST", path, body=iter([body]), headers=send_headers, encode_chunked=True)
        else:
            connection.request(method or ("POST" if body is not None else "GET"), path, body=body, headers=send_headers)
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


@dataclass
class Stream:
    status: int
    headers: dict[str, str]
    reads: list[tuple[float, bytes]]  # (seconds after the request was sent, body bytes of one socket read)

    @property
    def body(self) -> bytes:
        """The body, without the chunked transfer encoding."""
        raw = b"".join(data for _, data in self.reads)
        if "chunked" not in self.headers.get("transfer-encoding", ""):
            return raw
        body, position = b"", 0
        while True:
            line_end = raw.index(b"\r\n", position)
            size = int(raw[position:line_end], 16)
            if size == 0:
                return body
            body += raw[line_end + 2 : line_end + 2 + size]
            position = line_end + 2 + size + 2

    @property
    def events(self) -> list[str]:
        """The data of the server-sent events in the body."""
        return [line[len("data: ") :] for line in self.body.decode().splitlines() if line.startswith("data: ")]


def read_stream(base_url: str, path: str, headers: dict[str, str], body: bytes, timeout: float = 30) -> Stream:
    """POST on a raw socket and keep each read of the answer's body with the time it arrived."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        sock.sendall(head.encode() + b"\r\n" + body)
        started = time.monotonic()
        buffer, answer_head, reads, size = b"", b"", [], 0
        while True:
            data = sock.recv(65536)
            if not data:
                break
            at = time.monotonic() - started
            if not answer_head:
                buffer += data
                if b"\r\n\r\n" not in buffer:
                    continue
                answer_head, data = buffer.split(b"\r\n\r\n", 1)
            if data:
                reads.append((at, data))
                size += len(data)
            if b"transfer-encoding: chunked" in answer_head.lower():
                if b"".join(d for _, d in reads).endswith(b"0\r\n\r\n"):
                    break
            elif size >= int(_header(answer_head, "content-length") or 0):
                break
    status_line, *lines = answer_head.decode().split("\r\n")
    answer_headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return Stream(int(status_line.split()[1]), answer_headers, reads)


def _header(head: bytes, name: str) -> str | None:
    for line in head.decode().split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


class GatewayProcess:
    def __init__(self, redis_url: str, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "FLOWDEPLOY_SECRET_KEY": GATEWAY_SECRET,
            "FLOWDEPLOY_LOG_LEVEL": "INFO",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self, wait_healthy: bool = True) -> GatewayProcess:
        command = gateway_command(Path(sys.executable).parent, "127.0.0.1", self.port, self.env)
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.answers, timeout=30, message=f"the gateway did not start; see {self.log_path}")
        if wait_healthy:
            wait_for(self.healthy, timeout=30, message=f"the gateway never loaded its routes; see {self.log_path}")
        return self

    def answers(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the gateway exited:\n{self.output()}")
        try:
            call(self.url, "/health", timeout=1)
        except OSError:
            return False
        return True

    def healthy(self) -> bool:
        return call(self.url, "/health", timeout=1).status == 200

    def output(self) -> str:
        return self.log_path.read_text()[-4000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def score(self, endpoint: str, body: bytes | dict | None = None, key: str | None = None, **headers) -> Answer:
        """POST /endpoints/<endpoint>/score; extra headers as keyword arguments (underscores become dashes)."""
        sent = {name.replace("_", "-"): value for name, value in headers.items()}
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        return call(self.url, f"/endpoints/{endpoint}/score", {} if body is None else body, sent)


def redis_url_for_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def deployment_spec(*instances: FakeInstance | str, **settings) -> dict:
    """A deployment entry of a routing document; instances as fakes or URLs."""
    spec = {
        "instances": [
            {"id": i.id, "url": i.url} if isinstance(i, FakeInstance) else {"id": str(uuid.uuid4()), "url": i}
            for i in instances
        ],
        "request_timeout_ms": 5000,
        "max_concurrent_requests_per_instance": 4,
        "max_body_bytes": 5 * 1024 * 1024,
        "swagger": None,
        "data_collection": False,
    }
    spec.update(settings)
    return spec


@dataclass
class Published:
    name: str
    keys: list[str]
    document: dict

    @property
    def key(self) -> str:
        return self.keys[0]

    @property
    def version(self) -> int:
        return self.document["version"]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class FakeInstance:
    name: str
    port: int
    delay: float = 0.0
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    received: list[Received] = field(default_factory=list)
    inflight: int = 0
    disconnects: int = 0
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/score", self.score)
        app.router.add_get("/swagger.json", self.swagger)
        return app

    async def swagger(self, request: web.Request) -> web.Response:
        return web.json_response({"openapi": "3.0.0", "info": {"title": f"swagger of {self.name}"}})

    async def score(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.path, dict(request.headers), body, time.monotonic()))
        self.inflight += 1
        try:
            return await self._answer(request, body)
        finally:
            self.inflight -= 1

    async def _answer(self, request: web.Request, body: bytes) -> web.StreamResponse:
        try:
            inputs = json.loads(body)
        except ValueError:
            inputs = {}
        await asyncio.sleep(float(inputs.get("sleep", self.delay)))
        if "fail" in inputs:
            message = f"Execution failure in 'fetch_url_parts': (ValueError) {inputs['fail']}"
            return web.json_response({"error": {"code": "UserError", "message": message}}, status=400)
        if inputs.get("bad_input"):
            message = (
                "The input for flow is incorrect. The value for flow input 'url' in line 0 of input data does not "
                "match the expected type 'string'. Please change flow input type or adjust the input value in "
                "your input data."
            )
            return web.json_response({"error": {"code": "UserError", "message": message}}, status=400)
        if inputs.get("system_error"):
            return web.json_response({"error": {"code": "SystemError", "message": "boom"}}, status=500)
        if "stream" in inputs and "text/event-stream" in request.headers.get("Accept", ""):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
            await response.prepare(request)
            try:
                for number in range(int(inputs["stream"])):
                    if number:
                        await asyncio.sleep(float(inputs.get("gap", 0)))
                    await response.write(f'data: {{"answer": "chunk {number}"}}\n\n'.encode())
                await response.write_eof()
            except (ConnectionResetError, asyncio.CancelledError):
                self.disconnects += 1
                raise
            return response
        return web.json_response(
            {
                "instance": self.name,
                "inputs": inputs,
                "request_id": request.headers.get("x-request-id"),
                "accept": request.headers.get("Accept"),
                "content_type": request.headers.get("Content-Type"),
            }
        )


class FakeInstances:
    """aiohttp servers on an event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.started: list[FakeInstance] = []

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def start(self, name: str, delay: float = 0.0) -> FakeInstance:
        instance = FakeInstance(name, free_port(), delay)

        async def serve() -> None:
            instance.runner = web.AppRunner(instance.app(), access_log=None, handler_cancellation=True)
            await instance.runner.setup()
            await web.TCPSite(instance.runner, "127.0.0.1", instance.port).start()

        self._run(serve())
        self.started.append(instance)
        return instance

    def stop(self, instance: FakeInstance) -> None:
        if instance.runner is not None:
            self._run(instance.runner.cleanup())
            instance.runner = None

    def close(self) -> None:
        for instance in self.started:
            self.stop(instance)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class PromptflowInstance:
    """promptflow's serving app under gunicorn, started like serving/launcher.py starts an instance."""

    def __init__(self, environment, sample: str, workdir: Path) -> None:
        self.flow_dir = workdir / sample
        source = ROOT / "samples" / sample
        if not source.exists():  # a flow that exists for the tests only
            source = ROOT / "tests" / "fixtures" / "flows" / sample
        shutil.copytree(source, self.flow_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.id = str(uuid.uuid4())
        self.log_path = workdir / f"{sample}.log"
        command = [str(environment.python), "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", "4"]
        command += ["-b", f"127.0.0.1:{self.port}", "--chdir", str(self.flow_dir), "--keep-alive", "75"]
        command.append("promptflow.core._serving.app:create_app()")
        command, env = environment.flow_process(
            command,
            home=workdir / f"{sample}-home",
            writable=(self.flow_dir,),
            cwd=self.flow_dir,
            extra_env={"PROMPTFLOW_PROJECT_PATH": str(self.flow_dir)},
        )
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.healthy, timeout=90, message=f"promptflow did not start; see {self.log_path}")

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"promptflow exited:\n{self.log_path.read_text()[-3000:]}")
        try:
            return call(self.url, "/health", timeout=2).status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
