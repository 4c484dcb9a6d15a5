"""A fake of Azure ML's managed online endpoint scoring, as a real HTTP server on loopback.

The fake ARM (tests/fake_arm.py) gives each endpoint ``scoringUri = {fake.scoring_base}/{name}/score`` when
``scoring_base`` is set; this server answers there the way Azure's scoring front end does:

- ``Authorization: Bearer <credential>``: one of the endpoint's current keys (key auth) or a token the fake's
  ``token`` action issued (AMLToken auth), else 401;
- ``azureml-model-deployment`` pins a deployment (an unknown one is 404); without it, the deployment with the
  most traffic answers; the answer names it in the same header, with an ``x-request-id``;
- the answer is computed from the request (``{"answer": "Azure says: <question>"}``), so a test proves the
  request went through; with ``Accept: text/event-stream`` it comes as server-sent events, a word at a time.

    with FakeAzureScoring(fake_azure) as scoring:
        fake_azure.scoring_base = scoring.url
        ...
        assert scoring.requests[-1].headers["Authorization"] == f"Bearer {key}"

PYTEST_DONT_REWRITE: its asserts, if any, carry messages.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from fake_arm import FakeArm

DEPLOYMENT_HEADER = "azureml-model-deployment"


class Scored(NamedTuple):
    """One request the server received, and the status it answered."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any
    status: int


class FakeAzureScoring:
    """The server: ``url`` is its base (``http://127.0.0.1:<port>``); ``requests`` what it received."""

    def __init__(self, fake: FakeArm) -> None:
        self.fake = fake
        self.requests: list[Scored] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeAzureScoring:
        self._thread.start()
        return self

    def __exit__(self, *args: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def record(self, request: Scored) -> None:
        with self._lock:
            self.requests.append(request)

    def statuses(self) -> list[int]:
        with self._lock:
            return [r.status for r in self.requests]

    def route(self, name: str, headers: dict[str, str]) -> tuple[int, dict, str]:
        """(status, error body or {}, deployment) for a request to endpoint ``name``: Azure's checks, in its order."""
        endpoint = self.fake.resource(f"/onlineEndpoints/{name}")
        if endpoint is None:
            return 404, _error("EndpointNotFound", f"Endpoint {name} was not found."), ""
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if not bearer or bearer not in self.fake.scoring_credentials(name):
            return 401, _error("Unauthorized", "Invalid authentication: the key or token is not valid."), ""
        pinned = headers.get(DEPLOYMENT_HEADER, "")
        if pinned:
            if self.fake.resource(f"/onlineEndpoints/{name}/deployments/{pinned}") is None:
                return 404, _error("DeploymentNotFound", f"Deployment {pinned} of endpoint {name} was not found."), ""
            return 200, {}, pinned
        traffic = {k: int(v) for k, v in (endpoint["properties"].get("traffic") or {}).items() if int(v) > 0}
        if not traffic:
            message = "No valid deployments to route to. Please check that the endpoint has at least one deployment "
            return 404, _error("NoDeployment", message + "with positive weight values."), ""
        return 200, {}, max(traffic, key=traffic.__getitem__)


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def answer_text(body: Any) -> str:
    """What the fake endpoint answers to a request body: its question, or its inputs, after "Azure says:"."""
    if isinstance(body, dict) and isinstance(body.get("question"), str):
        return f"Azure says: {body['question']}"
    return f"Azure says: {json.dumps(body, sort_keys=True)}"


def _handler_for(scoring: FakeAzureScoring) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = _parsed(raw)
            match = re.fullmatch(r"/([^/]+)/score", self.path.split("?", 1)[0])
            if match is None:
                status, error, deployment = 404, _error("NotFound", f"No route for {self.path}."), ""
            else:
                status, error, deployment = scoring.route(match.group(1), headers)
            scoring.record(Scored("POST", self.path, headers, body, status))
            if status != 200:
                self._send_json(status, error, deployment)
            elif "text/event-stream" in headers.get("accept", ""):
                self._send_events(answer_text(body), deployment)
            else:
                self._send_json(200, {"answer": answer_text(body)}, deployment)

        def _start(self, status: int, content_type: str, deployment: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("x-request-id", str(uuid.uuid4()))
            if deployment:
                self.send_header(DEPLOYMENT_HEADER, deployment)

        def _send_json(self, status: int, payload: dict, deployment: str) -> None:
            content = json.dumps(payload).encode()
            self._start(status, "application/json", deployment)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def _send_events(self, text: str, deployment: str) -> None:
            self._start(200, "text/event-stream", deployment)
            self.send_header("Connection", "close")  # no length: the answer ends when the connection does
            self.end_headers()
            for piece in re.findall(r"\s*\S+", text):
                self.wfile.write(f"data: {json.dumps({'answer': piece})}\n\n".encode())
                self.wfile.flush()
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

    return Handler


def _parsed(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode("utf-8", errors="replace")
