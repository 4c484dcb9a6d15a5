"""Scoring an endpoint from the studio, through the real gateway (or Azure's scoring URI, for an endpoint
on Azure Machine Learning), with the endpoint's own credential.

The JSON API's invoke and the deployment page's Test tab both call the gateway this way, so the
credential never leaves the server. `score()` waits for the whole answer; `stream()` asks for
`text/event-stream` (or JSON, from a flow that does not stream) and hands each event's data on as the
gateway sends it. A gateway that cannot be reached or does not answer in time is an outcome (a result
with status 502 or 504 and a message), not an exception.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import httpx

from django.conf import settings

from endpoints import services
from endpoints.models import AuthType, Endpoint, Provider
from endpoints.providers.azureml import AZURE_MAX_REQUEST_TIMEOUT_MS

DEPLOYMENT_HEADER = "azureml-model-deployment"
REQUEST_ID_HEADER = "x-request-id"
STREAM_ACCEPT = "text/event-stream, application/json"
DEFAULT_TIMEOUT_MS = 90_000
TIMEOUT_MARGIN_S = 10.0  # the gateway answers 504 itself after request_timeout_ms; wait a little longer


@dataclass(frozen=True)
class ScoreResult:
    """What the gateway answered (or why it could not be asked)."""

    status: int
    content: bytes
    content_type: str = ""
    deployment: str = ""
    request_id: str = ""
    latency_ms: float = 0.0
    failure: str = ""  # GatewayUnavailable or GatewayTimeout when the studio could not get an answer
    chunks: int = 0  # events received, for a streamed answer

    @property
    def ok(self) -> bool:
        return not self.failure and 200 <= self.status < 300

    @property
    def body(self) -> object:
        """The answer parsed as JSON, or its text when it is not JSON."""
        text = self.content.decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except ValueError:
            return text

    @property
    def error_code(self) -> str:
        return self.failure or _error_part(self.body, "code") or ("" if self.ok else f"HTTP{self.status}")

    @property
    def error_message(self) -> str:
        """The gateway's error message ({"error": {"message"}}), or the text it answered."""
        if self.ok:
            return ""
        body = self.body
        message = _error_part(body, "message")
        if message:
            return message
        text = body if isinstance(body, str) else json.dumps(body)
        return text.strip() or f"The gateway answered {self.status} with no message."


def _error_part(body: object, part: str) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        value = body["error"].get(part)
        return value if isinstance(value, str) else ""
    return ""


def credential(endpoint: Endpoint) -> str:
    """The endpoint's primary key, or a fresh token for a token-based endpoint."""
    if endpoint.auth_type == AuthType.KEY:
        return services.credentials(endpoint)["primaryKey"]
    return services.issue_token(endpoint)["accessToken"]


def headers(endpoint: Endpoint, deployment_name: str | None = None, stream: bool = False) -> dict[str, str]:
    """The request headers; a deployment name pins that deployment, as Azure's header does."""
    values = {"Authorization": f"Bearer {credential(endpoint)}", "Content-Type": "application/json"}
    if deployment_name:
        values[DEPLOYMENT_HEADER] = deployment_name
    if stream:  # promptflow answers 406 to a flow that does not stream unless JSON is acceptable too
        values["Accept"] = STREAM_ACCEPT
    return values


def timeout_seconds(endpoint: Endpoint, deployment_name: str | None = None) -> float:
    """The pinned deployment's request timeout (or the longest of the endpoint's), plus a margin; on Azure,
    at most Azure's ceiling, which is what the deployment was given there."""
    deployments = endpoint.deployments.all()
    if deployment_name:
        deployments = deployments.filter(name=deployment_name)
    longest = max(deployments.values_list("request_timeout_ms", flat=True), default=DEFAULT_TIMEOUT_MS)
    if endpoint.provider == Provider.AZUREML:
        longest = min(longest, AZURE_MAX_REQUEST_TIMEOUT_MS)
    return longest / 1000 + TIMEOUT_MARGIN_S


_client: httpx.Client | None = None


def client() -> httpx.Client:
    """One pooled client for the process (thread-safe): a new one per request costs ~20 ms of SSL setup
    here and a new connection, which the latency shown on the Test tab would include."""
    global _client
    if _client is None:
        _client = httpx.Client(trust_env=False)
    return _client


class Scorer(NamedTuple):
    """Who scores the endpoint, as its error messages name it: briefly, and with where it was asked."""

    name: str
    where: str


def scorer(endpoint: Endpoint) -> Scorer:
    """Who answers for the endpoint: the studio's gateway, or Azure's scoring URI for an endpoint on Azure."""
    if endpoint.provider == Provider.AZUREML:
        uri = f"Azure's scoring URI {endpoint.scoring_uri}"
        return Scorer(uri, uri)
    return Scorer("The scoring gateway", f"The scoring gateway at {settings.FLOWDEPLOY_GATEWAY_URL}")


def not_scorable(endpoint: Endpoint) -> ScoreResult | None:
    """Why the endpoint cannot be asked yet: an Azure endpoint has no scoring URI until Azure made it."""
    if endpoint.scoring_uri:
        return None
    message = f"Endpoint {endpoint.name} has no scoring URI yet: Azure Machine Learning has not finished creating it."
    content = json.dumps({"error": {"code": "GatewayUnavailable", "message": message}}).encode()
    return ScoreResult(502, content, "application/json", failure="GatewayUnavailable")


def score(endpoint: Endpoint, body: object, deployment_name: str | None = None) -> ScoreResult:
    """POST the body to the endpoint's scoring URL and wait for the whole answer."""
    refused = not_scorable(endpoint)
    if refused is not None:
        return refused
    url, timeout = endpoint.scoring_uri, timeout_seconds(endpoint, deployment_name)
    request_headers = headers(endpoint, deployment_name)
    started = time.monotonic()
    try:
        answer = client().post(url, content=json.dumps(body), headers=request_headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return _failed(exc, timeout, started, scorer(endpoint))
    return ScoreResult(
        status=answer.status_code,
        content=answer.content,
        content_type=answer.headers.get("content-type", ""),
        deployment=answer.headers.get(DEPLOYMENT_HEADER, ""),
        request_id=answer.headers.get(REQUEST_ID_HEADER, ""),
        latency_ms=_since(started),
    )


def stream(endpoint: Endpoint, body: object, deployment_name: str | None = None) -> ScoreStream:
    """Ask for a streamed answer. The credential and timeout are looked up now (the database is used
    here, not while streaming); iterate the result to make the request."""
    refused = not_scorable(endpoint)
    if refused is not None:
        return ScoreStream("", "", {}, 0.0, scorer(endpoint), refused=refused)
    return ScoreStream(
        endpoint.scoring_uri,
        json.dumps(body),
        headers(endpoint, deployment_name, stream=True),
        timeout_seconds(endpoint, deployment_name),
        scorer(endpoint),
    )


@dataclass
class ScoreStream:
    """Iterating it yields the data of each server-sent event, parsed as JSON when it is JSON, as the
    gateway sends it; a flow that does not stream answers JSON, yielded once whole. After the
    iteration, `result` holds the status, the answering deployment, the request id and the latency
    (to the end of the answer); for an error, its content is the gateway's error JSON."""

    url: str
    content: str
    headers: dict[str, str]
    timeout: float
    scorer: Scorer
    refused: ScoreResult | None = None  # the answer without a request, when the endpoint cannot be asked
    result: ScoreResult | None = field(default=None, init=False)

    def __repr__(self) -> str:  # never the credential
        return f"<ScoreStream {self.url}>"

    def __iter__(self) -> Iterator[object]:
        if self.refused is not None:
            self.result = self.refused
            return
        started = time.monotonic()
        status, content_type, deployment, request_id, content, chunks = 0, "", "", "", b"", 0
        try:
            with client().stream(
                "POST", self.url, content=self.content, headers=self.headers, timeout=self.timeout
            ) as r:
                status, content_type = r.status_code, r.headers.get("content-type", "")
                deployment = r.headers.get(DEPLOYMENT_HEADER, "")
                request_id = r.headers.get(REQUEST_ID_HEADER, "")
                if status < 400 and content_type.startswith("text/event-stream"):
                    for data in _events(r.iter_lines()):
                        chunks += 1
                        yield data
                else:
                    content = r.read()
                    if status < 400:
                        chunks = 1
                        yield ScoreResult(status, content).body
        except httpx.HTTPError as exc:
            self.result = _failed(exc, self.timeout, started, self.scorer)
            return
        self.result = ScoreResult(
            status=status,
            content=content,
            content_type=content_type,
            deployment=deployment,
            request_id=request_id,
            latency_ms=_since(started),
            chunks=chunks,
        )


def _events(lines: Iterator[str]) -> Iterator[object]:
    """Server-sent events: `data:` lines until a blank line make one event."""
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield _parsed("\n".join(data))
            data = []
    if data:
        yield _parsed("\n".join(data))


def _parsed(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _failed(exc: httpx.HTTPError, timeout: float, started: float, scorer: Scorer) -> ScoreResult:
    if isinstance(exc, httpx.TimeoutException):
        code, status = "GatewayTimeout", 504
        message = f"{scorer.name} did not answer within {timeout:g} s."
    else:
        code, status = "GatewayUnavailable", 502
        message = f"{scorer.where} is not reachable: {exc}"
    content = json.dumps({"error": {"code": code, "message": message}}).encode()
    return ScoreResult(status, content, "application/json", latency_ms=_since(started), failure=code)
