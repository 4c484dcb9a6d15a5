"""The gateway's in-memory routing table, compiled from the documents in serving/routing.py.

Plain Python, no Django and no I/O: serving/gateway_sync.py fills the table from Redis and the
gateway reads it on every request, so everything a request needs is worked out here once per
document (score URLs, cumulative traffic weights, header values) rather than once per request.

Instances are kept by id across reloads of a document, so the requests in flight on an instance
are still counted after the control plane republishes the endpoint, and an instance that was
removed while busy is still reported (down to 0) by the in-flight writer.
"""

from __future__ import annotations

import bisect
import json
import logging
import random
import time
from typing import Any

from serving.auth import key_matches, token_endpoint
from serving.upstream import Origin

logger = logging.getLogger("flowdeploy.gateway")


class DocumentError(ValueError):
    """A routing document the gateway cannot serve; the message names the field."""


class Instance:
    """One instance process, and the requests this gateway has in flight on it."""

    __slots__ = ("base_url", "down_until", "id", "inflight", "origin", "score_head", "swagger_request", "written")

    def __init__(self, instance_id: str, url: str) -> None:
        self.id = instance_id
        self.base_url = url.rstrip("/")
        self.origin = Origin(self.base_url)  # its pooled connections
        self.score_head = self.origin.head("POST", "/score")
        self.swagger_request = self.origin.head("GET", "/swagger.json") + b"\r\n"
        self.inflight = 0
        self.written: int | None = None  # the count last written to Redis
        self.down_until = 0.0  # monotonic time until which it refused connections: skip it

    def __repr__(self) -> str:
        return f"<Instance {self.id} {self.base_url} inflight={self.inflight}>"


class Deployment:
    __slots__ = (
        "_next",
        "header_value",
        "instances",
        "max_body_bytes",
        "max_concurrent",
        "name",
        "swagger_body",
        "timeout",
    )

    def __init__(
        self,
        name: str,
        instances: list[Instance],
        timeout: float,
        max_concurrent: int,
        max_body_bytes: int,
        swagger_body: bytes | None,
    ) -> None:
        self.name = name
        self.header_value = name.encode()
        self.instances = instances
        self.timeout = timeout
        self.max_concurrent = max_concurrent
        self.max_body_bytes = max_body_bytes
        self.swagger_body = swagger_body  # from the document, or fetched from an instance once
        self._next = 0

    def pick_instance(self) -> Instance | None:
        """The instance with the fewest requests in flight (ties in turn); None when all are at the limit."""
        instances = self.instances
        count = len(instances)
        if count == 1:
            only = instances[0]
            if only.down_until and only.down_until > time.monotonic():
                return None
            return only if only.inflight < self.max_concurrent else None
        if not count:
            return None
        start = self._next
        self._next = (start + 1) % count
        best = None
        best_load = self.max_concurrent
        now = 0.0
        for offset in range(count):
            instance = instances[(start + offset) % count]
            if instance.down_until:
                now = now or time.monotonic()
                if instance.down_until > now:
                    continue
                instance.down_until = 0.0
            if instance.inflight < best_load:
                best = instance
                best_load = instance.inflight
                if best_load == 0:
                    break
        return best


class Endpoint:
    __slots__ = (
        "_accepted",
        "_cumulative",
        "_live",
        "_total",
        "auth_type",
        "deployments",
        "key_digests",
        "mirrors",
        "name",
        "swagger_deployment",
        "version",
    )

    def __init__(
        self,
        name: str,
        version: int,
        auth_type: str,
        key_digests: list[str],
        deployments: dict[str, Deployment],
        traffic: dict[str, int],
        mirrors: list[tuple[Deployment, float]],
    ) -> None:
        self.name = name
        self.version = version
        self.auth_type = auth_type
        self.key_digests = key_digests
        self._accepted: set[str] = set()  # keys that matched a digest of this document
        self.deployments = deployments
        self.mirrors = mirrors
        live = [(name, weight) for name, weight in traffic.items() if weight > 0 and name in deployments]
        self._live = [deployments[name] for name, _ in live]
        cumulative, total = [], 0
        for _, weight in live:
            total += weight
            cumulative.append(total)
        self._cumulative = cumulative
        self._total = total
        ranked = sorted(live, key=lambda pair: (-pair[1], pair[0]))
        self.swagger_deployment = deployments[ranked[0][0]] if ranked else None

    def authorized(self, credential: str, signing_key: bytes) -> bool:
        """Key endpoints: the key matches a published digest. Token endpoints: a valid token for this endpoint.

        A key that matched once is remembered by this Endpoint, so the next request with it is a set
        lookup rather than a SHA-256 (the lookup goes through Python's keyed string hash, so its timing
        tells nothing about the keys). A new document, e.g. one without a revoked key, is a new Endpoint
        with nothing remembered. Tokens expire, so they are checked in full every time.
        """
        if not credential:
            return False
        if self.auth_type == "token":
            return token_endpoint(credential, signing_key) == self.name
        if credential in self._accepted:
            return True
        if key_matches(credential, self.key_digests):
            if len(self._accepted) < 64:
                self._accepted.add(credential)
            return True
        return False

    def pick_deployment(self) -> Deployment | None:
        """A deployment chosen at random by the traffic weights; None when no deployment takes traffic."""
        live = self._live
        if len(live) == 1:
            return live[0]
        if not live:
            return None
        return live[bisect.bisect_right(self._cumulative, random.random() * self._total)]


def _number(value: Any, field: str, default: int, minimum: int = 1) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise DocumentError(f"{field} must be a number >= {minimum}, not {value!r}")
    return int(value)


def compile_endpoint(document: dict, known_instances: dict[str, Instance], default_max_body_bytes: int) -> Endpoint:
    """An Endpoint from a routing document; instances already known (by id) are reused with their counts."""
    if not isinstance(document, dict):
        raise DocumentError("the document is not a JSON object")
    name = document.get("name")
    if not isinstance(name, str) or not name:
        raise DocumentError("name is missing")
    auth_type = document.get("auth_type", "key")
    if auth_type not in {"key", "token"}:
        raise DocumentError(f"auth_type must be 'key' or 'token', not {auth_type!r}")
    digests = document.get("key_digests") or []
    if not isinstance(digests, list) or not all(isinstance(d, str) for d in digests):
        raise DocumentError("key_digests must be a list of strings")
    deployments: dict[str, Deployment] = {}
    raw_deployments = document.get("deployments") or {}
    if not isinstance(raw_deployments, dict):
        raise DocumentError("deployments must be an object")
    for dep_name, spec in raw_deployments.items():
        if not isinstance(spec, dict):
            raise DocumentError(f"deployments.{dep_name} must be an object")
        instances = []
        for item in spec.get("instances") or []:
            try:
                instance_id, url = str(item["id"]), str(item["url"])
            except (KeyError, TypeError):
                raise DocumentError(f"deployments.{dep_name}.instances needs an id and a url per instance") from None
            instance = known_instances.get(instance_id)
            if instance is None or instance.base_url != url.rstrip("/"):
                try:
                    instance = Instance(instance_id, url)
                except ValueError as error:
                    raise DocumentError(f"deployments.{dep_name}.instances: {error}") from None
            instances.append(instance)
        swagger = spec.get("swagger")
        deployments[dep_name] = Deployment(
            name=dep_name,
            instances=instances,
            timeout=_number(spec.get("request_timeout_ms"), f"{dep_name}.request_timeout_ms", 5000) / 1000,
            max_concurrent=_number(
                spec.get("max_concurrent_requests_per_instance"), f"{dep_name}.max_concurrent_requests_per_instance", 1
            ),
            max_body_bytes=_number(spec.get("max_body_bytes"), f"{dep_name}.max_body_bytes", default_max_body_bytes, 0),
            swagger_body=json.dumps(swagger).encode() if swagger else None,
        )
    traffic = _weights(document.get("traffic"), "traffic")
    mirrors = [
        (deployments[dep_name], percent / 100)
        for dep_name, percent in _weights(document.get("mirror_traffic"), "mirror_traffic").items()
        if percent > 0 and dep_name in deployments
    ]
    return Endpoint(
        name=name,
        version=_number(document.get("version"), "version", 0, 0),
        auth_type=auth_type,
        key_digests=digests,
        deployments=deployments,
        traffic=traffic,
        mirrors=mirrors,
    )


def _weights(value: Any, field: str) -> dict[str, int]:
    if not value:
        return {}
    if not isinstance(value, dict):
        raise DocumentError(f"{field} must be an object of deployment name to percent")
    for dep_name, percent in value.items():
        if isinstance(percent, bool) or not isinstance(percent, int | float) or percent < 0:
            raise DocumentError(f"{field}.{dep_name} must be a percentage, not {percent!r}")
    return dict(value)


class RouteTable:
    """Endpoints by name, plus the instances whose in-flight count changed since it was last written."""

    def __init__(self, default_max_body_bytes: int = 5 * 1024 * 1024) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self.loaded = False
        self.default_max_body_bytes = default_max_body_bytes
        self.dirty: set[Instance] = set()

    def _instances_of(self, endpoint: Endpoint | None) -> dict[str, Instance]:
        if endpoint is None:
            return {}
        return {i.id: i for d in endpoint.deployments.values() for i in d.instances}

    def apply(self, document: dict) -> Endpoint:
        """Compile and install one document; raises DocumentError (and keeps the old copy) when it is unusable."""
        name = document.get("name") if isinstance(document, dict) else None
        previous = self.endpoints.get(name) if isinstance(name, str) else None
        known = self._instances_of(previous)
        endpoint = compile_endpoint(document, known, self.default_max_body_bytes)
        self.endpoints[endpoint.name] = endpoint
        self._close_unused(known, endpoint)
        return endpoint

    def drop(self, name: str) -> None:
        """Forget an endpoint. Its requests in flight keep their Instance and still report their end."""
        self._close_unused(self._instances_of(self.endpoints.pop(name, None)), None)

    def _close_unused(self, known: dict[str, Instance], now: Endpoint | None) -> None:
        """Idle connections to instances no longer routed to are closed (busy ones close after their answer)."""
        kept = {id(i) for i in self._instances_of(now).values()}
        for instance in known.values():
            if id(instance) not in kept:
                instance.origin.close_idle()

    def instances(self) -> list[Instance]:
        return [i for e in self.endpoints.values() for d in e.deployments.values() for i in d.instances]
