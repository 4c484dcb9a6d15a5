"""A fake Azure Resource Manager for azure-ai-ml: in memory, plugged into ``MLClient`` as an azure-core transport.

No Azure is reachable from the tests, so the azureml provider talks to this instead. It answers the ARM routes that
``MLClient`` uses for the workspace, its datastores, models, environments, online endpoints and online deployments, and
the role assignments (``Microsoft.Authorization/roleAssignments``, at any scope) that azure-mgmt-authorization makes,
the way ARM does: ARM ids, ``systemData``, long-running operations (``Azure-AsyncOperation``/``Location`` headers,
``Retry-After: 0``), ``{"error": {"code": ..., "message": ...}}`` bodies, 401 without ``Authorization: Bearer fake``.
Uploads to the workspace's blob storage go through azure-storage-blob, which ignores ``transport=``: ``fake.storage()``
intercepts them with ``responses`` (every other URL passes through) and keeps the blobs in ``fake.blobs``.

    from fake_arm import ml_client

    pytest_plugins = ["fake_arm"]  # registers the fake_azure fixture (importing it instead trips ruff's F811)

    def test_it_creates_the_endpoint(fake_azure):
        client = ml_client(fake_azure)
        client.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name="ep")).result()
        assert fake_azure.body("PUT", "/onlineEndpoints/ep")["properties"]["authMode"] == "Key"
        assert fake_azure.resource("/onlineEndpoints/ep")["properties"]["provisioningState"] == "Succeeded"

Operations finish after ``polls_before_done`` polls; a GET of the operation *or* of the resource it works on counts as
a poll, so code that only re-reads the endpoint (as the provider's status polling does) sees it finish too, and
``settle()`` finishes everything at once. The SDK's waits (LRO delays, retry backoff) go through ``sleep()`` of the
transport, which records them in ``fake.sleeps`` and returns at once. One lock guards all state: Celery worker threads
of the same process may share one fake.

PYTEST_DONT_REWRITE: test modules import this before ``pytest_plugins`` registers it; its asserts carry messages.
"""

from __future__ import annotations

import base64
import copy
import email.utils
import io
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.etree import ElementTree

import pytest
import requests
import responses
from azure.core.credentials import AccessToken
from azure.core.pipeline._tools import handle_non_stream_rest_response, is_rest
from azure.core.pipeline.transport import HttpTransport, RequestsTransportResponse
from azure.core.rest._requests_basic import RestRequestsTransportResponse

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

SUBSCRIPTION_ID = "00000000-0000-4000-8000-000000000001"
RESOURCE_GROUP = "flowdeploy-rg"
WORKSPACE = "flowdeploy-ws"
LOCATION = "eastus2"
TENANT_ID = "00000000-0000-4000-8000-0000000000aa"
STORAGE_ACCOUNT = "fakestorage"
ARM_HOST = "management.azure.com"
TOKEN = "fake"
PROVIDER = "Microsoft.MachineLearningServices"
ASSET_COLLECTIONS = ("models", "environments", "codes", "data")
ASSET_PATH_FIELDS = {"models": "modelUri", "codes": "codeUri", "data": "dataUri"}
IN_PROGRESS_STATES = ("Creating", "Updating", "Deleting")
USER = "tester@example.com"
ROLE_ASSIGNMENT_PATH = r"(/.+)/providers/Microsoft\.Authorization/roleAssignments/([^/]+)"
ROLE_ASSIGNMENT_FIELDS = ("principalId", "roleDefinitionId")


class FakeCredential:
    """A credential whose token the fake accepts (``token=`` something else to get 401s)."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 24 * 3600)


class Recorded(NamedTuple):
    """One request the fake answered: JSON body parsed (None without one) and the status it answered."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int


@dataclass
class Operation:
    """A long-running operation: InProgress for ``polls_left`` more polls, then Succeeded or Failed."""

    id: str
    target: str
    action: str
    polls_left: int
    on_success: Callable[[], None]
    on_failure: Callable[[], None]
    failure: tuple[str, str] | None = None
    status: str = "InProgress"
    answers: list[str] = field(default_factory=list)
    start_time: str = field(default_factory=lambda: _now())
    end_time: str | None = None
    polls: int = 0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _arm_error(status: int, code: str, message: str, headers: dict | None = None) -> tuple[int, dict, dict]:
    return status, headers or {}, {"error": {"code": code, "message": message}}


def _json_body(request: Any) -> Any:
    raw = getattr(request, "content", None)
    if raw is None:
        raw = getattr(request, "body", None)
    if raw is None or raw == b"" or raw == "":
        return None
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("utf-8")
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _response(request: Any, status: int, headers: dict, payload: Any, stream: bool) -> Any:
    """What azure-core's RequestsTransport returns: the rest response for ``azure.core.rest`` requests (the newer
    generated clients call ``.json()`` on it), the legacy transport response for the others."""
    response = requests.Response()
    response.status_code = status
    response.reason = HTTPStatus(status).phrase
    content = b"" if payload is None else json.dumps(payload).encode()
    response._content = content
    response._content_consumed = True
    response.raw = io.BytesIO(content)
    response.encoding = "utf-8"
    response.url = request.url
    response.headers["x-ms-request-id"] = str(uuid.uuid4())
    response.headers["x-ms-correlation-request-id"] = str(uuid.uuid4())
    response.headers["Content-Length"] = str(len(content))
    if payload is not None:
        response.headers["Content-Type"] = "application/json; charset=utf-8"
    response.headers.update(headers)
    if is_rest(request):
        rest_response = RestRequestsTransportResponse(request=request, internal_response=response)
        if not stream:
            handle_non_stream_rest_response(rest_response)
        return rest_response
    return RequestsTransportResponse(request, response)


def _tail(text: str, lines: int | None) -> str:
    if not lines:
        return text
    return "\n".join(text.splitlines()[-int(lines) :])


class FakeArm(HttpTransport):
    """The fake: an azure-core transport answering ARM for one workspace, plus its blob storage (``storage()``)."""

    def __init__(
        self,
        subscription_id: str = SUBSCRIPTION_ID,
        resource_group: str = RESOURCE_GROUP,
        workspace: str = WORKSPACE,
        location: str = LOCATION,
        storage_account: str = STORAGE_ACCOUNT,
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace = workspace
        self.location = location
        self.storage_account = storage_account
        self.workspace_guid = str(uuid.uuid4())
        self.container = f"azureml-blobstore-{self.workspace_guid}"
        self.account_key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.workspace_id = (
            f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
            f"/providers/{PROVIDER}/workspaces/{workspace}"
        )
        # Controls.
        self.polls_before_done = 1
        self.hold = False
        self.logs: dict[tuple[str, str, str], str] = {}
        # The workspace's connections: name -> Azure's category ("AzureOpenAI", "OpenAI", "CustomKeys"...).
        self.connections: dict[str, str] = {}
        # Where endpoints are scored: None for Azure's own host, or a base URL such as ``http://127.0.0.1:8123`` (a
        # fake scoring server, tests/fake_azure_scoring.py) under which endpoint ``ep`` answers at ``/ep/score``.
        self.scoring_base: str | None = None
        # Records.
        self.requests: list[Recorded] = []
        self.unhandled: list[Recorded] = []
        self.sleeps: list[float] = []
        self.operations: dict[str, Operation] = {}
        self.states: dict[str, list[str]] = {}
        self.endpoint_keys: dict[str, dict[str, str]] = {}
        self.endpoint_tokens: dict[str, list[str]] = {}  # the tokens the ``token`` action issued, by endpoint
        self.blobs: dict[str, bytes] = {}
        self.blob_metadata: dict[str, dict[str, str]] = {}
        self.storage_requests: list[tuple[str, str, dict[str, str]]] = []
        self._store: dict[str, dict] = {}
        self._role_assignments: dict[str, dict] = {}  # by lowercased ARM id
        self._created_order = itertools.count()
        self._failures: list[tuple[Callable[[str, str], bool], str, str, int]] = []
        self._throttles: list[float] = []
        self._staged_blocks: dict[str, dict[str, bytes]] = {}
        self._unhandled_flag = False
        self._lock = threading.RLock()

    # ---- azure-core transport -------------------------------------------------------------------------------------

    def __enter__(self) -> FakeArm:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def sleep(self, duration: float) -> None:
        """The SDK's LRO delays and retry backoffs: recorded, not slept (10 ms while ``hold`` is on, so a waiting
        poller does not spin)."""
        with self._lock:
            self.sleeps.append(duration)
            held = self.hold
        if held:
            time.sleep(0.01)

    def send(self, request: Any, **kwargs: Any) -> Any:
        url = urlsplit(request.url)
        method = request.method.upper()
        path = unquote(url.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        body = _json_body(request)
        with self._lock:
            self._unhandled_flag = False
            status, headers, payload = self._dispatch(method, url.netloc.lower(), path, query, body, request.headers)
            recorded = Recorded(method, path, query, body, status)
            self.requests.append(recorded)
            if self._unhandled_flag:
                self.unhandled.append(recorded)
        return _response(request, status, headers, payload, stream=bool(kwargs.get("stream")))

    # ---- controls ---------------------------------------------------------------------------------------------------

    def fail_next(self, match: str | Callable[[str, str], bool], code: str, message: str, *, status: int = 400) -> None:
        """Make the next write on a matching resource fail with this Azure error.

        ``match`` is a suffix of the resource's ARM path (``"/onlineEndpoints/ep/deployments/blue"``, case-insensitive)
        or a callable ``(method, resource_path) -> bool``. A long-running operation (endpoint or deployment PUT, PATCH,
        DELETE, regenerateKeys) is accepted and then ends ``Failed`` with the error, its resource showing
        ``provisioningState: "Failed"`` (a failed regenerateKeys leaves state and keys alone); any other
        PUT/PATCH/DELETE answers ``status`` with the error at once, role assignments too (their path is the scope's
        followed by ``/providers/Microsoft.Authorization/roleAssignments/<name>``), e.g. Azure's refusal of a grant:
        ``fail_next(lambda method, path: "/roleassignments/" in path.lower(), "AuthorizationFailed", ..., status=403)``.
        """
        if isinstance(match, str):
            suffix = match.lower().rstrip("/")

            def predicate(method: str, resource_path: str) -> bool:
                return resource_path.lower().endswith(suffix)

        else:
            predicate = match
        with self._lock:
            self._failures.append((predicate, code, message, status))

    def throttle_next(self, n: int, retry_after: float = 0) -> None:
        """Answer the next ``n`` authenticated requests 429 with ``Retry-After`` and ARM's throttling error."""
        with self._lock:
            self._throttles.extend([retry_after] * n)

    def settle(self) -> None:
        """Finish every operation still in progress now."""
        with self._lock:
            for operation in list(self.operations.values()):
                if operation.status == "InProgress":
                    self._finish(operation)

    # ---- records ----------------------------------------------------------------------------------------------------

    @property
    def resources(self) -> dict[str, dict]:
        """A copy of the current resources by ARM id."""
        with self._lock:
            return {resource["id"]: self._public(resource) for resource in self._store.values()}

    def resource(self, suffix: str) -> dict | None:
        """A copy of the resource whose ARM id ends with ``suffix`` (case-insensitive), or None."""
        suffix = suffix.lower().rstrip("/")
        with self._lock:
            for key, resource in self._store.items():
                if key.endswith(suffix):
                    return self._public(resource)
        return None

    @property
    def role_assignments(self) -> list[dict]:
        """Copies of the role assignments that exist now, in the order they were made."""
        with self._lock:
            return [copy.deepcopy(a) for a in self._role_assignments.values()]

    def state_history(self, suffix: str) -> list[str]:
        """The provisioning states the resource whose ARM id ends with ``suffix`` went through, ``"Deleted"`` last
        once it is gone: ``["Creating", "Succeeded", "Updating", "Succeeded", "Deleting", "Deleted"]``."""
        suffix = suffix.lower().rstrip("/")
        with self._lock:
            return next((list(v) for k, v in self.states.items() if k.lower().endswith(suffix)), [])

    def calls(self, method: str | None = None, suffix: str = "") -> list[Recorded]:
        """The recorded requests with this method whose path ends with ``suffix`` (case-insensitive)."""
        suffix = suffix.lower()
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper()) and r.path.lower().endswith(suffix)
            ]

    def bodies(self, method: str, suffix: str) -> list[Any]:
        """The JSON bodies sent with ``method`` to paths ending with ``suffix``; throttled and 401 attempts left out."""
        return [r.body for r in self.calls(method, suffix) if r.status not in (401, 429)]

    def body(self, method: str, suffix: str) -> Any:
        """The last such body (AssertionError when there is none)."""
        bodies = self.bodies(method, suffix)
        assert bodies, f"no {method} to a path ending with {suffix!r}; requests: {self.summary()}"
        return bodies[-1]

    def scoring_credentials(self, name: str) -> set[str]:
        """What endpoint ``name``'s scoring URI accepts after ``Bearer``: its current keys for key auth, the tokens
        issued so far for AMLToken auth; nothing once the endpoint is gone."""
        with self._lock:
            endpoint = self._find(["onlineEndpoints", name])
            if endpoint is None:
                return set()
            if str(endpoint["properties"].get("authMode", "Key")).lower() == "amltoken":
                return set(self.endpoint_tokens.get(name.lower(), []))
            return set(self.endpoint_keys.get(name.lower(), {}).values())

    def summary(self) -> list[str]:
        """The recorded requests as ``"METHOD path -> status"`` lines, to print when a test fails."""
        with self._lock:
            return [f"{r.method} {r.path} -> {r.status}" for r in self.requests]

    # ---- blob storage -----------------------------------------------------------------------------------------------

    @property
    def blob_host(self) -> str:
        return f"{self.storage_account}.blob.core.windows.net"

    @contextmanager
    def storage(self) -> Iterator[FakeArm]:
        """Intercept requests to the fake storage account (any other URL goes through) for the block's duration."""
        host = re.escape(self.blob_host)
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            for method in ("GET", "HEAD", "PUT", "DELETE", "POST"):
                mock.add_callback(method, re.compile(rf"https://{host}/.*"), callback=self._storage_callback)
            mock.add_passthru(re.compile(rf"^(?!https://{host}/)"))
            yield self

    def uploaded(self) -> list[str]:
        """Names of the blobs in the workspace container (relative to the container)."""
        prefix = f"{self.container}/"
        with self._lock:
            return sorted(name[len(prefix) :] for name in self.blobs if name.startswith(prefix))

    def _storage_callback(self, request: requests.PreparedRequest) -> tuple[int, dict, bytes | str]:
        url = urlsplit(request.url)
        path = unquote(url.path).lstrip("/")
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        with self._lock:
            self.storage_requests.append((request.method, path, query))
            auth = request.headers.get("Authorization", "")
            if not (auth.startswith(("SharedKey ", "Bearer ")) or "sig" in query):
                return self._storage_error(401, "NoAuthenticationInformation")
            status, headers, body = self._storage(request, path, query)
        return status, headers, b"" if request.method == "HEAD" else body

    def _storage(self, request: requests.PreparedRequest, path: str, query: dict) -> tuple[int, dict, bytes | str]:
        method = request.method
        container, _, blob = path.partition("/")
        if not blob:
            if method == "PUT" and query.get("restype") == "container":
                return 201, self._blob_headers(b""), b""
            if method == "GET" and query.get("comp") == "list":
                return self._list_blobs(container, query)
            return self._storage_error(400, "UnsupportedHttpVerb")
        comp = query.get("comp")
        if method == "PUT" and comp is None:
            data = _read_body(request.body)
            self.blobs[path] = data
            self.blob_metadata[path] = _meta_headers(request.headers)
            return 201, self._blob_headers(data), b""
        if method == "PUT" and comp == "block":
            self._staged_blocks.setdefault(path, {})[query["blockid"]] = _read_body(request.body)
            return 201, {"x-ms-request-server-encrypted": "true"}, b""
        if method == "PUT" and comp == "blocklist":
            staged = self._staged_blocks.pop(path, {})
            ids = [element.text or "" for element in ElementTree.fromstring(_read_body(request.body))]
            data = b"".join(staged[block_id] for block_id in ids)
            self.blobs[path] = data
            self.blob_metadata[path] = _meta_headers(request.headers)
            return 201, self._blob_headers(data), b""
        if path not in self.blobs:
            return self._storage_error(404, "BlobNotFound")
        data = self.blobs[path]
        if method == "PUT" and comp == "metadata":
            self.blob_metadata[path] = _meta_headers(request.headers)
            return 200, self._blob_headers(data), b""
        if method == "HEAD":
            return 200, self._blob_headers(data, path), b""
        if method == "GET" and comp is None:
            headers = self._blob_headers(data, path)
            wanted = request.headers.get("x-ms-range") or request.headers.get("Range")
            if wanted and data:
                start, _, end = wanted.removeprefix("bytes=").partition("-")
                last = min(int(end) if end else len(data) - 1, len(data) - 1)
                chunk = data[int(start) : last + 1]
                headers.update(
                    {"Content-Length": str(len(chunk)), "Content-Range": f"bytes {start}-{last}/{len(data)}"}
                )
                return 206, headers, chunk
            return 200, headers, data
        if method == "DELETE":
            del self.blobs[path]
            self.blob_metadata.pop(path, None)
            return 202, {}, b""
        return self._storage_error(400, "UnsupportedHttpVerb")

    def _blob_headers(self, data: bytes, path: str | None = None) -> dict[str, str]:
        headers = {
            "ETag": f'"0x{abs(hash(data)):X}"',
            "Last-Modified": email.utils.formatdate(usegmt=True),
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-version": "2025-01-05",
        }
        if path is not None:
            headers.update(
                {
                    "Content-Length": str(len(data)),
                    "Content-Type": "application/octet-stream",
                    "x-ms-blob-type": "BlockBlob",
                    "x-ms-creation-time": email.utils.formatdate(usegmt=True),
                }
            )
            headers.update({f"x-ms-meta-{k}": v for k, v in self.blob_metadata.get(path, {}).items()})
        return headers

    def _list_blobs(self, container: str, query: dict) -> tuple[int, dict, str]:
        prefix = f"{container}/{query.get('prefix', '')}"
        root = ElementTree.Element("EnumerationResults", ServiceEndpoint=f"https://{self.blob_host}/")
        root.set("ContainerName", container)
        blobs = ElementTree.SubElement(root, "Blobs")
        for name in sorted(self.blobs):
            if not name.startswith(prefix):
                continue
            blob = ElementTree.SubElement(blobs, "Blob")
            ElementTree.SubElement(blob, "Name").text = name.partition("/")[2]
            properties = ElementTree.SubElement(blob, "Properties")
            ElementTree.SubElement(properties, "Last-Modified").text = email.utils.formatdate(usegmt=True)
            ElementTree.SubElement(properties, "Content-Length").text = str(len(self.blobs[name]))
            ElementTree.SubElement(properties, "BlobType").text = "BlockBlob"
            metadata = ElementTree.SubElement(blob, "Metadata")
            for key, value in self.blob_metadata.get(name, {}).items():
                ElementTree.SubElement(metadata, key).text = value
        ElementTree.SubElement(root, "NextMarker")
        xml = '<?xml version="1.0" encoding="utf-8"?>' + ElementTree.tostring(root, encoding="unicode")
        return 200, {"Content-Type": "application/xml", "x-ms-version": "2025-01-05"}, xml

    def _storage_error(self, status: int, code: str) -> tuple[int, dict, str]:
        headers = {"x-ms-error-code": code, "Content-Type": "application/xml"}
        body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{code}</Message></Error>'
        return status, headers, body

    # ---- ARM routing ------------------------------------------------------------------------------------------------

    def _dispatch(self, method: str, host: str, path: str, query: dict, body: Any, headers: Any) -> tuple:
        if host != ARM_HOST:
            return self._unhandled(method, path)
        auth = headers.get("Authorization")
        if not auth:
            return _arm_error(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        if auth != f"Bearer {TOKEN}":
            return _arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if self._throttles:
            retry_after = self._throttles.pop(0)
            message = (
                "The request is being throttled as the limit has been reached for operation type - "
                "Read_ObservationWindow_00:05:00. For more information, refer to - https://aka.ms/armthrottling"
            )
            return _arm_error(429, "TooManyRequests", message, {"Retry-After": f"{retry_after:g}"})
        operation = re.fullmatch(
            rf"/subscriptions/([^/]+)/providers/{PROVIDER}/locations/[^/]+/(mfeOperationsStatus|mfeOperationResults)/([^/]+)",
            path,
            re.IGNORECASE,
        )
        if operation and method == "GET":
            if operation.group(1) != self.subscription_id:
                return self._unhandled(method, path)
            return self._get_operation(operation.group(3), results=operation.group(2).lower() == "mfeoperationresults")
        assignment = re.fullmatch(ROLE_ASSIGNMENT_PATH, re.sub("/{2,}", "/", path), re.IGNORECASE)
        if assignment:
            return self._role_assignment(method, assignment.group(1), assignment.group(2), body)
        scope = re.fullmatch(
            rf"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/{PROVIDER}/workspaces/([^/]+)(/.*)?",
            path,
            re.IGNORECASE,
        )
        if not scope:
            return self._unhandled(method, path)
        if scope.group(1) != self.subscription_id:
            return _arm_error(404, "SubscriptionNotFound", f"The subscription '{scope.group(1)}' could not be found.")
        if scope.group(2).lower() != self.resource_group.lower():
            return _arm_error(404, "ResourceGroupNotFound", f"Resource group '{scope.group(2)}' could not be found.")
        if scope.group(3).lower() != self.workspace.lower():
            return self._not_found(f"workspaces/{scope.group(3)}")
        segments = [s for s in (scope.group(4) or "").split("/") if s]
        return self._route(method, segments, query, body)

    def _route(self, method: str, segments: list[str], query: dict, body: Any) -> tuple:
        lowered = [s.lower() for s in segments]
        n = len(segments)
        if n == 0 and method == "GET":
            return 200, {}, self._workspace_body()
        head = lowered[0] if n else ""
        if head == "datastores":
            if n == 1 and method == "GET":
                stores = [self._datastore_body()]
                return 200, {}, {"value": stores}
            if n == 2 and method == "GET":
                if lowered[1] != "workspaceblobstore":
                    return self._not_found(f"datastores/{segments[1]}")
                return 200, {}, self._datastore_body()
            if n == 3 and method == "POST" and lowered[2] == "listsecrets" and lowered[1] == "workspaceblobstore":
                return 200, {}, {"secretsType": "AccountKey", "key": self.account_key}
        if head == "connections" and method == "GET":
            return self._connections(segments)
        if head in ASSET_COLLECTIONS:
            collection = segments[0]
            if n == 1 and method == "GET":
                return self._list(segments, query, lambda r: r.get("_kind") == f"{head}/container")
            if n == 2 and method in ("GET", "PUT", "DELETE"):
                return self._asset(method, collection, segments, body, version=None)
            if n == 3 and lowered[2] == "versions" and method == "GET":
                if self._find(segments[:2]) is None:
                    return self._not_found("/".join(segments[:2]))
                return self._list(segments, query, lambda r: r.get("_kind") == f"{head}/version")
            if n == 4 and lowered[2] == "versions" and method in ("GET", "PUT", "DELETE"):
                return self._asset(method, collection, segments, body, version=segments[3])
        if head == "onlineendpoints":
            if n == 1 and method == "GET":
                return self._list(segments, query, lambda r: r.get("_kind") == "endpoint")
            if n == 2 and method in ("GET", "PUT", "PATCH", "DELETE"):
                return self._endpoint(method, segments, body)
            if n == 3 and method == "POST" and lowered[2] in ("listkeys", "regeneratekeys", "token"):
                return self._endpoint_action(lowered[2], segments, body)
            if n == 3 and lowered[2] == "deployments" and method == "GET":
                if self._find(segments[:2]) is None:
                    return self._not_found("/".join(segments[:2]))
                return self._list(segments, query, lambda r: r.get("_kind") == "deployment")
            if n == 4 and lowered[2] == "deployments" and method in ("GET", "PUT", "PATCH", "DELETE"):
                return self._deployment(method, segments, body)
            if n == 5 and lowered[2] == "deployments" and lowered[4] == "getlogs" and method == "POST":
                return self._get_logs(segments, body or {})
        return self._unhandled(method, "/".join(segments))

    def _connections(self, segments: list[str]) -> tuple:
        """The workspace's connections (``fake.connections``: name -> Azure category, e.g. "AzureOpenAI")."""
        if len(segments) == 1:
            return 200, {}, {"value": [self._connection_body(name) for name in sorted(self.connections)]}
        name = next((n for n in self.connections if n.lower() == segments[1].lower()), None)
        if len(segments) != 2 or name is None:
            return self._not_found("/".join(segments))
        return 200, {}, self._connection_body(name)

    def _connection_body(self, name: str) -> dict:
        return {
            "id": f"{self.workspace_id}/connections/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/connections",
            "properties": {
                "category": self.connections[name],
                "authType": "ApiKey",
                "target": "https://example.openai.azure.com/",
                "metadata": {},
            },
        }

    def _unhandled(self, method: str, path: str) -> tuple:
        self._unhandled_flag = True
        return _arm_error(
            404, "InvalidResourceType", f"The fake ARM has no route for {method} {path} (see FakeArm.unhandled)."
        )

    def _not_found(self, relative: str) -> tuple:
        return _arm_error(
            404,
            "ResourceNotFound",
            f"The Resource '{PROVIDER}/workspaces/{self.workspace}/{relative}' under resource group "
            f"'{self.resource_group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        )

    # ---- resource store ---------------------------------------------------------------------------------------------

    def _rid(self, segments: list[str]) -> str:
        return f"{self.workspace_id}/{'/'.join(segments)}"

    def _find(self, segments: list[str]) -> dict | None:
        return self._store.get(self._rid(segments).lower())

    def _public(self, resource: dict | None) -> dict | None:
        if resource is None:
            return None
        return {k: copy.deepcopy(v) for k, v in resource.items() if not k.startswith("_")}

    def _save(self, segments: list[str], resource: dict, kind: str) -> dict:
        key = self._rid(segments).lower()
        old = self._store.get(key)
        resource["_kind"] = kind
        resource["_order"] = old["_order"] if old else next(self._created_order)
        resource["systemData"] = {
            "createdAt": old["systemData"]["createdAt"] if old else _now(),
            "createdBy": USER,
            "createdByType": "User",
            "lastModifiedAt": _now(),
            "lastModifiedBy": USER,
            "lastModifiedByType": "User",
        }
        self._store[key] = resource
        self._record_state(resource)
        return resource

    def _record_state(self, resource: dict) -> None:
        state = resource.get("properties", {}).get("provisioningState")
        if state:
            self.states.setdefault(resource["id"], []).append(state)

    def _delete_tree(self, segments: list[str]) -> None:
        key = self._rid(segments).lower()
        for stored in [k for k in self._store if k == key or k.startswith(key + "/")]:
            resource = self._store.pop(stored)
            if resource.get("_kind") in ("endpoint", "deployment"):
                self.states.setdefault(resource["id"], []).append("Deleted")

    def _list(self, segments: list[str], query: dict, kind: Callable[[dict], bool]) -> tuple:
        prefix = self._rid(segments).lower() + "/"
        found = [r for k, r in self._store.items() if k.startswith(prefix) and "/" not in k[len(prefix) :] and kind(r)]
        found.sort(key=lambda r: r["_order"], reverse="desc" in query.get("$orderBy", "").lower())
        if query.get("$top"):
            found = found[: int(query["$top"])]
        return 200, {}, {"value": [self._public(r) for r in found]}

    def _take_failure(self, method: str, resource_path: str) -> tuple[str, str, int] | None:
        for index, (predicate, code, message, status) in enumerate(self._failures):
            if predicate(method, resource_path):
                del self._failures[index]
                return code, message, status
        return None

    # ---- long-running operations ------------------------------------------------------------------------------------

    def _start(
        self,
        method: str,
        segments: list[str],
        action: str,
        on_success: Callable[[], None],
        on_failure: Callable[[], None],
    ) -> Operation:
        failure = self._take_failure(method, self._rid(segments))
        operation = Operation(
            id=str(uuid.uuid4()),
            target=self._rid(segments).lower(),
            action=action,
            polls_left=self.polls_before_done,
            on_success=on_success,
            on_failure=on_failure,
            failure=failure[:2] if failure else None,
        )
        self.operations[operation.id] = operation
        return operation

    def _operation_headers(self, operation: Operation, location: bool) -> dict[str, str]:
        base = f"https://{ARM_HOST}/subscriptions/{self.subscription_id}/providers/{PROVIDER}/locations/{self.location}"
        headers = {
            "Azure-AsyncOperation": f"{base}/mfeOperationsStatus/{operation.id}?api-version=2023-04-01-preview",
            "Retry-After": "0",
            "x-ms-async-operation-timeout": "PT1H",
        }
        if location:
            headers["Location"] = f"{base}/mfeOperationResults/{operation.id}?api-version=2023-04-01-preview"
        return headers

    def _advance(self, operation: Operation) -> None:
        if operation.status != "InProgress":
            return
        operation.polls += 1
        if self.hold:
            return
        if operation.polls_left > 0:
            operation.polls_left -= 1
        else:
            self._finish(operation)

    def _advance_target(self, key: str) -> None:
        for operation in list(self.operations.values()):
            if operation.target == key and operation.status == "InProgress":
                self._advance(operation)

    def _finish(self, operation: Operation) -> None:
        operation.end_time = _now()
        if operation.failure:
            operation.status = "Failed"
            operation.on_failure()
        else:
            operation.status = "Succeeded"
            operation.on_success()

    def _get_operation(self, operation_id: str, results: bool) -> tuple:
        operation = self.operations.get(operation_id)
        if operation is None:
            return _arm_error(404, "ResourceNotFound", f"Operation '{operation_id}' was not found.")
        if results:
            if operation.status == "InProgress":
                self._advance(operation)
            if operation.status == "InProgress":
                return 202, self._operation_headers(operation, location=True), None
            if operation.status == "Failed":
                code, message = operation.failure
                return _arm_error(400, code, message)
            return 204, {}, None
        self._advance(operation)
        operation.answers.append(operation.status)
        body = {
            "id": f"/subscriptions/{self.subscription_id}/providers/{PROVIDER}/locations/{self.location}"
            f"/mfeOperationsStatus/{operation.id}",
            "name": operation.id,
            "status": operation.status,
            "startTime": operation.start_time,
        }
        if operation.end_time:
            body["endTime"] = operation.end_time
        if operation.failure and operation.status == "Failed":
            code, message = operation.failure
            body["error"] = {"code": code, "message": message}
        return 200, {"Retry-After": "0"} if operation.status == "InProgress" else {}, body

    def _set_state(self, key: str, state: str) -> None:
        resource = self._store.get(key)
        if resource is not None:
            resource["properties"]["provisioningState"] = state
            self._record_state(resource)

    def _busy(self, resource: dict | None, what: str) -> tuple | None:
        if resource is not None and resource["properties"].get("provisioningState") in IN_PROGRESS_STATES:
            return _arm_error(
                409,
                "Conflict",
                f"There is an operation in progress on {what} '{resource['name']}'; wait for it to finish.",
            )
        return None

    # ---- role assignments -------------------------------------------------------------------------------------------

    def _role_assignment(self, method: str, scope: str, name: str, body: Any) -> tuple:
        """GET, PUT and DELETE of ``{scope}/providers/Microsoft.Authorization/roleAssignments/{name}``. A second
        assignment of the same role to the same principal at the same scope is refused 409 RoleAssignmentExists,
        whatever its name (Azure's PUT is not idempotent there); the name must be a GUID, as on Azure."""
        scope = scope.rstrip("/")
        arm_id = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
        existing = self._role_assignments.get(arm_id.lower())
        if method == "GET":
            if existing is None:
                return _arm_error(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
            return 200, {}, copy.deepcopy(existing)
        if method not in ("PUT", "DELETE"):
            return self._unhandled(method, arm_id)
        failure = self._take_failure(method, arm_id)
        if failure:
            code, message, status = failure
            return _arm_error(status, code, message)
        if method == "DELETE":
            if existing is None:
                return 204, {}, None
            return 200, {}, self._role_assignments.pop(arm_id.lower())
        return self._put_role_assignment(scope, name, arm_id, body)

    def _put_role_assignment(self, scope: str, name: str, arm_id: str, body: Any) -> tuple:
        try:
            uuid.UUID(name)
        except ValueError:
            return _arm_error(
                400,
                "InvalidRoleAssignmentId",
                f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
            )
        sent = (body.get("properties") if isinstance(body, dict) else None) or {}
        missing = [f for f in ROLE_ASSIGNMENT_FIELDS if not sent.get(f)]
        if missing:
            return _arm_error(400, "InvalidRoleAssignmentRequest", f"Missing {', '.join(missing)} in the request.")
        same = (scope.lower(), sent["roleDefinitionId"].lower(), sent["principalId"].lower())
        for assignment in self._role_assignments.values():
            held = assignment["properties"]
            if (held["scope"].lower(), held["roleDefinitionId"].lower(), held["principalId"].lower()) == same:
                return _arm_error(409, "RoleAssignmentExists", "The role assignment already exists.")
        if arm_id.lower() in self._role_assignments:
            return _arm_error(
                409,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            )
        now = _now()
        assignment = {
            "id": arm_id,
            "name": name,
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": {
                "scope": scope,
                "roleDefinitionId": sent["roleDefinitionId"],
                "principalId": sent["principalId"],
                "principalType": sent.get("principalType") or "User",
                "description": sent.get("description"),
                "condition": sent.get("condition"),
                "conditionVersion": sent.get("conditionVersion"),
                "createdOn": now,
                "updatedOn": now,
                "createdBy": USER,
                "updatedBy": USER,
                "delegatedManagedIdentityResourceId": None,
            },
        }
        self._role_assignments[arm_id.lower()] = assignment
        return 201, {}, copy.deepcopy(assignment)

    # ---- workspace and datastores -----------------------------------------------------------------------------------

    def _workspace_body(self) -> dict:
        rg_id = f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers"
        return {
            "id": self.workspace_id,
            "name": self.workspace,
            "type": f"{PROVIDER}/workspaces",
            "location": self.location,
            "kind": "Default",
            "tags": {},
            "sku": {"name": "Basic", "tier": "Basic"},
            "identity": {
                "type": "SystemAssigned",
                "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.workspace_id)),
                "tenantId": TENANT_ID,
            },
            "systemData": {
                "createdAt": "2025-01-01T00:00:00.0000000Z",
                "createdBy": USER,
                "createdByType": "User",
                "lastModifiedAt": "2025-01-01T00:00:00.0000000Z",
                "lastModifiedBy": USER,
                "lastModifiedByType": "User",
            },
            "properties": {
                "friendlyName": self.workspace,
                "workspaceId": self.workspace_guid,
                "provisioningState": "Succeeded",
                "storageAccount": f"{rg_id}/Microsoft.Storage/storageAccounts/{self.storage_account}",
                "keyVault": f"{rg_id}/Microsoft.KeyVault/vaults/fakekeyvault",
                "applicationInsights": f"{rg_id}/Microsoft.Insights/components/fakeappinsights",
                "containerRegistry": f"{rg_id}/Microsoft.ContainerRegistry/registries/fakeregistry",
                "discoveryUrl": f"https://{self.location}.api.azureml.ms/discovery",
                "mlFlowTrackingUri": f"azureml://{self.location}.api.azureml.ms/mlflow/v1.0{self.workspace_id}",
                "hbiWorkspace": False,
                "publicNetworkAccess": "Enabled",
                "v1LegacyMode": False,
                "storageHnsEnabled": False,
                "creationTime": "2025-01-01T00:00:00.0000000Z",
            },
        }

    def _datastore_body(self) -> dict:
        return {
            "id": f"{self.workspace_id}/datastores/workspaceblobstore",
            "name": "workspaceblobstore",
            "type": f"{PROVIDER}/workspaces/datastores",
            "systemData": {
                "createdAt": "2025-01-01T00:00:00.0000000Z",
                "createdBy": USER,
                "createdByType": "User",
                "lastModifiedAt": "2025-01-01T00:00:00.0000000Z",
                "lastModifiedBy": USER,
                "lastModifiedByType": "User",
            },
            "properties": {
                "datastoreType": "AzureBlob",
                "accountName": self.storage_account,
                "containerName": self.container,
                "endpoint": "core.windows.net",
                "protocol": "https",
                "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity",
                "credentials": {"credentialsType": "AccountKey", "secrets": {"secretsType": "AccountKey"}},
                "isDefault": True,
                "description": None,
                "properties": {},
                "tags": {},
            },
        }

    # ---- models, environments, codes, data ---------------------------------------------------------------------------

    def _asset(self, method: str, collection: str, segments: list[str], body: Any, version: str | None) -> tuple:
        kind = f"{collection.lower()}/{'version' if version else 'container'}"
        existing = self._find(segments)
        relative = "/".join(segments)
        if method == "GET":
            return (200, {}, self._public(existing)) if existing else self._not_found(relative)
        failure = self._take_failure(method, self._rid(segments))
        if failure:
            code, message, status = failure
            return _arm_error(status, code, message)
        if method == "DELETE":
            if existing is None:
                return 204, {}, None
            self._delete_tree(segments)
            return 200, {}, None
        body = body if isinstance(body, dict) else {}
        properties = copy.deepcopy(body.get("properties") or {})
        if version is None:
            properties.setdefault("isArchived", False)
            if existing:
                for server_field in ("latestVersion", "nextVersion"):
                    properties.setdefault(server_field, existing["properties"].get(server_field))
            properties["provisioningState"] = "Succeeded"
            resource = {
                "id": self._rid(segments),
                "name": segments[1],
                "type": f"{PROVIDER}/workspaces/{collection}",
                "properties": properties,
            }
            saved = self._save(segments, resource, kind)
            return (200 if existing else 201), {}, self._public(saved)
        path_field = ASSET_PATH_FIELDS.get(collection.lower())
        if existing and path_field and existing["properties"].get(path_field) != properties.get(path_field):
            return _arm_error(400, "UserError", "Asset paths cannot be updated.")
        properties.setdefault("isAnonymous", False)
        properties.setdefault("isArchived", False)
        properties.setdefault("properties", {})
        properties.setdefault("tags", {})
        if collection.lower() == "models":
            properties.setdefault("flavors", {})
        if collection.lower() == "environments":
            properties.setdefault("environmentType", "UserCreated")
            properties.setdefault("osType", "Linux")
            properties.setdefault("autoRebuild", "Disabled")
        properties["provisioningState"] = "Succeeded"
        resource = {
            "id": self._rid(segments),
            "name": version,
            "type": f"{PROVIDER}/workspaces/{collection}/versions",
            "properties": properties,
        }
        saved = self._save(segments, resource, kind)
        container = self._find(segments[:2])
        container_properties = (
            copy.deepcopy(container["properties"])
            if container
            else {"isArchived": False, "description": None, "tags": {}, "properties": {}}
        )
        container_properties["latestVersion"] = version
        if version.isdigit():
            current = container_properties.get("nextVersion")
            next_version = int(version) + 1
            if current and str(current).isdigit():
                next_version = max(next_version, int(current))
            container_properties["nextVersion"] = str(next_version)
        container_properties["provisioningState"] = "Succeeded"
        self._save(
            segments[:2],
            {
                "id": self._rid(segments[:2]),
                "name": segments[1],
                "type": f"{PROVIDER}/workspaces/{collection}",
                "properties": container_properties,
            },
            f"{collection.lower()}/container",
        )
        return (200 if existing else 201), {}, self._public(saved)

    # ---- online endpoints -------------------------------------------------------------------------------------------

    def _endpoint(self, method: str, segments: list[str], body: Any) -> tuple:
        name = segments[1]
        key = self._rid(segments).lower()
        existing = self._find(segments)
        if method == "GET":
            if existing is None:
                return self._not_found("/".join(segments))
            self._advance_target(key)
            existing = self._find(segments)
            return (200, {}, self._public(existing)) if existing else self._not_found("/".join(segments))
        if method == "DELETE":
            if existing is None:
                return 204, {}, None
            busy = self._busy(existing, "online endpoint")
            if busy:
                return busy
            self._set_state(key, "Deleting")

            def deleted() -> None:
                self._delete_tree(segments)
                self.endpoint_keys.pop(name.lower(), None)

            operation = self._start(method, segments, "delete", deleted, lambda: self._set_state(key, "Failed"))
            return 202, self._operation_headers(operation, location=True), None
        body = body if isinstance(body, dict) else {}
        if method == "PATCH":
            if existing is None:
                return self._not_found("/".join(segments))
            body = _merge(self._public(existing), body)
        busy = self._busy(existing, "online endpoint")
        if busy:
            return busy
        properties = copy.deepcopy(body.get("properties") or {})
        invalid = self._check_traffic(segments, properties)
        if invalid:
            return invalid
        old_properties = existing["properties"] if existing else {}
        if existing is None:
            self.endpoint_keys[name.lower()] = {
                "primaryKey": secrets.token_urlsafe(24),
                "secondaryKey": secrets.token_urlsafe(24),
            }
        location = body.get("location") or self.location
        properties.setdefault("traffic", old_properties.get("traffic", {}))
        properties.setdefault("mirrorTraffic", old_properties.get("mirrorTraffic", {}))
        properties.setdefault("publicNetworkAccess", "Enabled")
        base = (
            self.scoring_base.rstrip("/") + f"/{name}"
            if self.scoring_base
            else f"https://{name}.{location}.inference.ml.azure.com"
        )
        properties["scoringUri"] = f"{base}/score"
        properties["swaggerUri"] = f"{base}/swagger.json"
        properties["provisioningState"] = "Updating" if existing else "Creating"
        resource = {
            "id": self._rid(segments),
            "name": name,
            "type": f"{PROVIDER}/workspaces/onlineEndpoints",
            "location": location,
            "kind": body.get("kind") or (existing or {}).get("kind") or "Managed",
            "tags": body.get("tags") or {},
            "identity": _identity(body.get("identity"), (existing or {}).get("identity")),
            "properties": properties,
        }
        if body.get("sku"):
            resource["sku"] = body["sku"]
        saved = self._save(segments, resource, "endpoint")
        operation = self._start(
            method,
            segments,
            "update" if existing else "create",
            lambda: self._set_state(key, "Succeeded"),
            lambda: self._set_state(key, "Failed"),
        )
        return (200 if existing else 201), self._operation_headers(operation, location=False), self._public(saved)

    def _check_traffic(self, segments: list[str], properties: dict) -> tuple | None:
        for field_name in ("traffic", "mirrorTraffic"):
            traffic = properties.get(field_name) or {}
            for deployment, percent in traffic.items():
                if self._find([*segments, "deployments", deployment]) is None:
                    return _arm_error(
                        400,
                        "BadArgument",
                        f"{field_name} of online endpoint '{segments[1]}' names deployment '{deployment}', "
                        "which does not exist.",
                    )
                if not 0 <= int(percent) <= 100:
                    return _arm_error(400, "BadArgument", f"{field_name} values must be between 0 and 100.")
            if field_name == "traffic" and traffic and sum(int(v) for v in traffic.values()) not in (0, 100):
                return _arm_error(400, "BadArgument", "Traffic values of an online endpoint must add up to 100.")
        return None

    def _endpoint_action(self, action: str, segments: list[str], body: Any) -> tuple:
        segments = segments[:2]
        existing = self._find(segments)
        if existing is None:
            return self._not_found("/".join(segments))
        name = segments[1]
        keys = self.endpoint_keys.setdefault(
            name.lower(), {"primaryKey": secrets.token_urlsafe(24), "secondaryKey": secrets.token_urlsafe(24)}
        )
        if action == "listkeys":
            return 200, {}, dict(keys)
        if action == "token":
            now, issued = int(time.time()), f"fake-aml-token-{secrets.token_urlsafe(12)}"
            self.endpoint_tokens.setdefault(name.lower(), []).append(issued)
            return (
                200,
                {},
                {
                    "accessToken": issued,
                    "tokenType": "Bearer",
                    "expiryTimeUtc": now + 24 * 3600,
                    "refreshAfterTimeUtc": now + 12 * 3600,
                },
            )
        body = body if isinstance(body, dict) else {}
        key_type = str(body.get("keyType", "Primary")).lower()
        if key_type not in ("primary", "secondary"):
            return _arm_error(400, "BadArgument", "keyType must be Primary or Secondary.")
        # azure-ai-ml 1.35 sends the *current* key as keyValue, and Azure still regenerates: a new value only counts
        # when it differs from the current one.
        new_value = body.get("keyValue")
        if not new_value or new_value == keys[f"{key_type}Key"]:
            new_value = secrets.token_urlsafe(24)

        def regenerate() -> None:
            keys[f"{key_type}Key"] = new_value

        operation = self._start("POST", segments, "regenerateKeys", regenerate, lambda: None)
        return 202, self._operation_headers(operation, location=True), None

    # ---- online deployments -----------------------------------------------------------------------------------------

    def _deployment(self, method: str, segments: list[str], body: Any) -> tuple:
        endpoint_name, name = segments[1], segments[3]
        key = self._rid(segments).lower()
        endpoint = self._find(segments[:2])
        existing = self._find(segments)
        relative = "/".join(segments)
        if method == "GET":
            if existing is None:
                return self._not_found(relative)
            self._advance_target(key)
            existing = self._find(segments)
            return (200, {}, self._public(existing)) if existing else self._not_found(relative)
        if endpoint is None:
            return _arm_error(
                404,
                "ParentResourceNotFound",
                f"Can not perform requested operation on nested resource. Parent resource '{endpoint_name}' not found.",
            )
        if method == "DELETE":
            if existing is None:
                return 204, {}, None
            busy = self._busy(existing, "online deployment")
            if busy:
                return busy
            percent = int((endpoint["properties"].get("traffic") or {}).get(name, 0) or 0)
            if percent:
                return _arm_error(
                    400,
                    "BadArgument",
                    f"Deployment '{name}' receives {percent}% of the traffic of online endpoint '{endpoint_name}'; "
                    "set its traffic to 0 before deleting it.",
                )
            self._set_state(key, "Deleting")

            def deleted() -> None:
                self._delete_tree(segments)
                for field_name in ("traffic", "mirrorTraffic"):
                    (endpoint["properties"].get(field_name) or {}).pop(name, None)

            operation = self._start(method, segments, "delete", deleted, lambda: self._set_state(key, "Failed"))
            return 202, self._operation_headers(operation, location=True), None
        body = body if isinstance(body, dict) else {}
        if method == "PATCH":
            if existing is None:
                return self._not_found(relative)
            body = _merge(self._public(existing), body)
        busy = self._busy(existing, "online deployment")
        if busy:
            return busy
        properties = copy.deepcopy(body.get("properties") or {})
        properties.setdefault("endpointComputeType", "Managed")
        properties.setdefault("scaleSettings", {"scaleType": "Default"})
        properties["provisioningState"] = "Updating" if existing else "Creating"
        sku = {"name": "Default", "tier": "Standard", "capacity": 1, **(body.get("sku") or {})}
        resource = {
            "id": self._rid(segments),
            "name": name,
            "type": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
            "location": body.get("location") or endpoint.get("location") or self.location,
            "kind": body.get("kind") or "Managed",
            "tags": body.get("tags") or {},
            "sku": sku,
            "properties": properties,
        }
        saved = self._save(segments, resource, "deployment")
        operation = self._start(
            method,
            segments,
            "update" if existing else "create",
            lambda: self._set_state(key, "Succeeded"),
            lambda: self._set_state(key, "Failed"),
        )
        return (200 if existing else 201), self._operation_headers(operation, location=False), self._public(saved)

    def _get_logs(self, segments: list[str], body: dict) -> tuple:
        if self._find(segments[:4]) is None:
            return self._not_found("/".join(segments[:4]))
        container_type = body.get("containerType") or "InferenceServer"
        text = self.logs.get((segments[1], segments[3], container_type), "")
        return 200, {}, {"content": _tail(text, body.get("tail"))}


def _identity(sent: dict | None, old: dict | None) -> dict:
    identity = copy.deepcopy(sent) if sent else {"type": "SystemAssigned"}
    kind = str(identity.get("type", "")).lower()
    if "systemassigned" in kind:
        same = old and "systemassigned" in str(old.get("type", "")).lower()
        identity["principalId"] = old["principalId"] if same else str(uuid.uuid4())
        identity["tenantId"] = TENANT_ID
    if "userassigned" in kind:
        identities = identity.get("userAssignedIdentities") or {}
        old_identities = (old or {}).get("userAssignedIdentities") or {}
        for arm_id in identities:
            identities[arm_id] = old_identities.get(arm_id) or {
                "principalId": str(uuid.uuid4()),
                "clientId": str(uuid.uuid4()),
            }
        identity["userAssignedIdentities"] = identities
    return identity


def _merge(base: dict, patch: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_body(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if hasattr(body, "read"):
        return body.read()
    return b"".join(chunk if isinstance(chunk, bytes) else chunk.encode() for chunk in body)


def _meta_headers(headers: Any) -> dict[str, str]:
    return {k[len("x-ms-meta-") :]: v for k, v in headers.items() if k.lower().startswith("x-ms-meta-")}


def ml_client(fake: FakeArm, credential: Any = None, **kwargs: Any) -> MLClient:
    """An ``MLClient`` on the fake's workspace, sending everything through the fake with a credential it accepts."""
    from azure.ai.ml import MLClient

    kwargs.setdefault("show_progress", False)
    kwargs.setdefault("enable_telemetry", False)
    return MLClient(
        credential or FakeCredential(),
        fake.subscription_id,
        fake.resource_group,
        fake.workspace,
        transport=fake,
        **kwargs,
    )


@pytest.fixture
def fake_azure() -> Iterator[FakeArm]:
    """A fresh fake ARM with its blob storage intercepted; build clients on it with ``ml_client(fake_azure)``."""
    fake = FakeArm()
    with fake.storage():
        yield fake
    fake.hold = False
    fake.settle()  # lets pollers still waiting in background threads finish


def connect_project(project: Any = None) -> Any:
    """Connect `project` (the default one) to the fake's workspace, as an Owner does on its Azure page."""
    from workspace.models import AzureWorkspace, Project

    return AzureWorkspace.objects.create(
        project=project or Project.default(),
        subscription_id=SUBSCRIPTION_ID,
        resource_group=RESOURCE_GROUP,
        workspace_name=WORKSPACE,
        credential_type="default",
    )


@pytest.fixture
def azure(fake_azure: FakeArm, monkeypatch: pytest.MonkeyPatch, db: None) -> FakeArm:
    """The default project connected to the fake's workspace; every client the studio builds talks to the fake."""
    import workspace.azure
    from endpoints.providers.azureml.provider import credentials

    connect_project()
    monkeypatch.setattr(workspace.azure, "client_options", {"transport": fake_azure, "credential": FakeCredential()})
    credentials.clear()  # keys another test's fake issued are not this one's
    return fake_azure
