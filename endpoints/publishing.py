"""Publish what the gateway needs to serve an endpoint: the routing document (serving/routing.py)."""

from __future__ import annotations

import functools
import time

import redis

from django.conf import settings
from django.db.models import F

from endpoints.models import AuthType, Deployment, DeploymentState, Endpoint, Instance, InstanceState
from serving import routing
from serving.auth import key_digest, routing_key

NO_GATEWAY_AFTER = 1.0


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def client() -> redis.Redis:
    return _client(settings.REDIS_URL)


def serving_instances(deployment: Deployment) -> list[Instance]:
    """The instances the gateway may send this deployment's requests to."""
    return list(
        deployment.instances.filter(generation=deployment.live_generation, state=InstanceState.READY).order_by(
            "ordinal"
        )
    )


def build_document(endpoint: Endpoint, version: int) -> dict:
    deployments = {}
    for deployment in endpoint.deployments.exclude(state=DeploymentState.DELETING).exclude(live_generation=0):
        deployments[deployment.name] = {
            "instances": [{"id": str(i.id), "url": i.url} for i in serving_instances(deployment)],
            "request_timeout_ms": deployment.request_timeout_ms,
            "max_concurrent_requests_per_instance": deployment.max_concurrent_requests_per_instance,
            "max_body_bytes": settings.FLOWDEPLOY_MAX_REQUEST_BYTES,
            "swagger": None,
            "data_collection": deployment.data_collection,
        }
    keys = endpoint.get_keys() if endpoint.auth_type == AuthType.KEY else {}
    return {
        "name": endpoint.name,
        "version": version,
        "auth_type": "key" if endpoint.auth_type == AuthType.KEY else "token",
        "key_digests": [key_digest(value) for value in keys.values() if value],
        "traffic": {name: pct for name, pct in endpoint.traffic.items() if name in deployments},
        "mirror_traffic": {name: pct for name, pct in endpoint.mirror_traffic.items() if name in deployments},
        "deployments": deployments,
    }


def publish(endpoint: Endpoint) -> int:
    """Publish the endpoint's current routing and return the version the gateway will acknowledge.

    An endpoint being deleted (or gone) has no routing: publishing it withdraws it instead, so a publish
    racing the deletion (a reconcile run, a job) never brings its document back.
    """
    bumped = Endpoint.objects.filter(pk=endpoint.pk, deleting=False).update(routing_version=F("routing_version") + 1)
    if not bumped:
        withdraw(endpoint.name)
        return endpoint.routing_version
    version = Endpoint.objects.values_list("routing_version", flat=True).get(pk=endpoint.pk)
    endpoint.refresh_from_db()
    # Signed: the gateway serves no document it cannot verify (flow processes can write to Redis too).
    key = routing_key(settings.FLOWDEPLOY_SECRET_KEY or settings.SECRET_KEY)
    routing.publish(client(), build_document(endpoint, version), key)
    return version


def withdraw(name: str) -> None:
    routing.withdraw(client(), name)


def wait_until_drained(endpoint: Endpoint, version: int, instances: list[Instance], timeout: float) -> bool:
    """Wait for the gateway to serve `version` and to finish the requests it sent to `instances`.

    Returns False on timeout (no gateway running, or requests still in flight): callers then stop
    the instances anyway, after the deployment's request timeout has passed.
    """
    started = time.monotonic()
    conn = client()
    while time.monotonic() < started + timeout:
        applied = routing.applied_version(conn, endpoint.name)
        if applied is None and time.monotonic() > started + NO_GATEWAY_AFTER:
            return False  # no gateway has ever served this endpoint: nothing can be in flight
        if applied is not None and applied >= version and routing.inflight(conn, [str(i.id) for i in instances]) == 0:
            return True
        time.sleep(0.05)
    return False
