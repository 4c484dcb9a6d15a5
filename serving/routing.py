"""The routing table: what the control plane publishes and the gateway serves from.

Plain Python (no Django): the gateway imports it. Stored in Redis:

- `flowdeploy:route:<endpoint>`: one JSON document per endpoint (below);
- `flowdeploy:routes`: a set of endpoint names that have a document;
- channel `flowdeploy:routes`: the name of an endpoint whose document changed or was removed;
- `flowdeploy:gateway:applied`: hash endpoint -> the `version` of the document the gateway serves now;
- `flowdeploy:gateway:inflight`: hash instance id -> requests in flight through the gateway; entries of
  instances no document names any more are pruned by the control plane (`prune_inflight`).

Flow processes run on the same machine and can reach Redis, so every document is signed: its
`signature` is the hex HMAC-SHA256, with `serving.auth.routing_key()`, of the document without that
field in canonical JSON (sorted keys, no spaces, ASCII), and `signed_at` is when it was signed. The
gateway serves only documents whose signature verifies, whose name is the one of the key they were
read from, and that are not older than the copy it serves (serving/gateway_sync.py).

An endpoint document:

    {
      "name": "my-endpoint",
      "version": 17,                      # grows with every publish
      "signed_at": 1767225600.5,          # added by publish(): seconds since the epoch
      "signature": "<hex HMAC-SHA256>",   # added by publish(), see above
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

import hashlib
import hmac
import json
import time
from typing import Any

from serving.auth import routing_key

SIGNATURE = "signature"
ROUTE_KEY = "flowdeploy:route:{name}"
ROUTES_SET = "flowdeploy:routes"
ROUTES_CHANNEL = "flowdeploy:routes"
APPLIED_KEY = "flowdeploy:gateway:applied"
INFLIGHT_KEY = "flowdeploy:gateway:inflight"


def route_key(name: str) -> str:
    return ROUTE_KEY.format(name=name)


def signature(document: dict, key: bytes) -> str:
    """The hex HMAC-SHA256 of the document's canonical JSON, its own `signature` field left out."""
    unsigned = {field: value for field, value in document.items() if field != SIGNATURE}
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def sign(document: dict, key: bytes, now: float | None = None) -> dict:
    """The document with `signed_at` (now) and its `signature`."""
    stamped = {**document, "signed_at": time.time() if now is None else now}
    stamped.pop(SIGNATURE, None)
    return {**stamped, SIGNATURE: signature(stamped, key)}


def verified(document: Any, key: bytes) -> bool:
    """Whether a parsed document carries a valid signature made with `key`."""
    if not isinstance(document, dict):
        return False
    presented = document.get(SIGNATURE)
    if not isinstance(presented, str) or not presented.isascii():
        return False
    return hmac.compare_digest(presented, signature(document, key))


def publish(client: Any, document: dict, key: bytes | None = None) -> None:
    """Sign an endpoint's document, store it and tell the gateways (a redis.Redis client).

    `key` defaults to `routing_key()`, from this process's environment: the gateway must find the same secret.
    """
    name = document["name"]
    signed = sign(document, routing_key() if key is None else key)
    pipe = client.pipeline()
    pipe.set(route_key(name), json.dumps(signed, separators=(",", ":")))
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


def published_instance_ids(client: Any) -> set[str]:
    """The ids of every instance named by a published document (read as stored; the signature is not checked)."""
    names = [_text(name) for name in client.smembers(ROUTES_SET)]
    ids: set[str] = set()
    for raw in client.mget([route_key(name) for name in names]) if names else []:
        try:
            document = json.loads(raw) if raw is not None else {}
            for deployment in document.get("deployments", {}).values():
                ids.update(str(instance["id"]) for instance in deployment.get("instances", []))
        except (ValueError, TypeError, AttributeError, KeyError):
            continue
    return ids


def prune_inflight(client: Any, keep: set[str]) -> int:
    """Remove the in-flight counts of instances not in `keep` (instances that no longer exist); how many.

    The gateway writes a count only when it changes, so an entry for an instance no document names any more
    would stay forever. A count the gateway writes again later (a request that was still in flight) is pruned
    at the next run.
    """
    stale = [field for field in client.hkeys(INFLIGHT_KEY) if _text(field) not in keep]
    for start in range(0, len(stale), 500):
        client.hdel(INFLIGHT_KEY, *stale[start : start + 500])
    return len(stale)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
