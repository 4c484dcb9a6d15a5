"""The routing table: what the control plane publishes and the gateway serves from.

Plain Python (no Django): the gateway imports it. Stored in Redis:

- `flowdeploy:route:<endpoint>`: one JSON document per endpoint (below);
- `flowdeploy:routes`: a set of endpoint names that have a document;
- channel `flowdeploy:routes`: the name of an endpoint whose document changed or was removed;
- `flowdeploy:gateway:applied`: hash endpoint -> the `version` of the document the gateway serves now;
- `flowdeploy:gateway:inflight`: hash instance id -> requests in flight through the gateway.

An endpoint document:

    {
      "name": "my-endpoint",
      "version": 17,                      # grows with every publish
      "auth_type": "key" | "token",
      "key_digests": ["<sha256 hex>", ...],  # key-based endpoints only
      "traffic": {"blue": 90, "green": 10},  # percent, sums to 100 (or empty: no live deployment)
      "mirror_traffic": {"green": 10},       # percent of requests copied, answers dropped
      "deployments": {
        "blue": {
          "instances": [{"id": "inst-uuid", "url": "http://127.0.0.1:41234"}],
          "request_timeout_ms": 5000,
          "max_concurrent_requests_per_instance": 1,
          "max_body_bytes": 5242880,
          "swagger": {...} or null,
          "data_collection": false
        }
      }
    }
"""

from __future__ import annotations

import json
from typing import Any

ROUTE_KEY = "flowdeploy:route:{name}"
ROUTES_SET = "flowdeploy:routes"
ROUTES_CHANNEL = "flowdeploy:routes"
APPLIED_KEY = "flowdeploy:gateway:applied"
INFLIGHT_KEY = "flowdeploy:gateway:inflight"


def route_key(name: str) -> str:
    return ROUTE_KEY.format(name=name)


def publish(client: Any, document: dict) -> None:
    """Store an endpoint's document and tell the gateways (a redis.Redis client)."""
    name = document["name"]
    pipe = client.pipeline()
    pipe.set(route_key(name), json.dumps(document, separators=(",", ":")))
    pipe.sadd(ROUTES_SET, name)
    pipe.publish(ROUTES_CHANNEL, name)
    pipe.execute()


def withdraw(client: Any, name: str) -> None:
    pipe = client.pipeline()
    pipe.delete(route_key(name))
    pipe.srem(ROUTES_SET, name)
    pipe.hdel(APPLIED_KEY, name)
    pipe.publish(ROUTES_CHANNEL, name)
    pipe.execute()


def applied_version(client: Any, name: str) -> int | None:
    value = client.hget(APPLIED_KEY, name)
    return int(value) if value is not None else None


def inflight(client: Any, instance_ids: list[str]) -> int:
    if not instance_ids:
        return 0
    values = client.hmget(INFLIGHT_KEY, instance_ids)
    return sum(int(v) for v in values if v is not None)
