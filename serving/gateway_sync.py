"""Keep the gateway's routing table in step with Redis, and report in-flight counts back.

Two background tasks, both of which outlive Redis going away:

- `RouteSync.run`: subscribe to the routes channel, load every published document, then reload the
  endpoint named by each message and everything again every `resync_interval` seconds. After a
  document is applied its version goes to the applied hash. When Redis is unreachable it retries
  with a short backoff; the table keeps the last copy, so requests go on being served.
- `RouteSync.write_inflight`: every `inflight_interval` seconds, the counts of the instances whose
  number of requests in flight changed since they were last written (0 included, so the control
  plane sees an instance it retires drain).

No Redis call happens on the request path: requests only read the table and mark instances dirty.

Documents are checked when they are loaded, never per request (serving/routing.py): one whose
signature is missing or wrong, whose name is not the one of its key, or that is older than what this
gateway saw (a lower version signed earlier than the copy served now, or signed before the endpoint was
withdrawn: an old genuine document written back) is refused with one warning per version; the gateway
keeps serving its previous copy, or nothing. A gateway that starts afresh has no such memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from serving.gateway_routes import DocumentError, Endpoint, RouteTable
from serving.routing import APPLIED_KEY, INFLIGHT_KEY, ROUTES_CHANNEL, ROUTES_SET, route_key, verified

logger = logging.getLogger("flowdeploy.gateway")

REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


class RouteSync:
    def __init__(
        self,
        table: RouteTable,
        redis_url: str,
        key: bytes,
        resync_interval: float = 5.0,
        inflight_interval: float = 0.15,
    ) -> None:
        self.table = table
        self.redis_url = redis_url
        self.key = key  # serving.auth.routing_key()
        self.resync_interval = resync_interval
        self.inflight_interval = inflight_interval
        self.client = aioredis.Redis.from_url(
            redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
        )
        self.connected = False
        self._applied: dict[str, int] = {}  # endpoint -> version written to the applied hash
        self._raw: dict[str, bytes] = {}  # endpoint -> the document it was compiled from
        self._served: dict[str, tuple[int, float]] = {}  # endpoint -> (version, signed_at) of that document
        self._withdrawn: dict[str, float] = {}  # endpoint dropped -> signed_at of the last document served
        self._refused: dict[str, tuple[bytes, object]] = {}  # endpoint -> (document, version) last refused
        self._inflight_failing = False

    async def close(self) -> None:
        await self.client.aclose()

    async def run(self) -> None:
        """Forever: connect, load everything, follow the channel; on any Redis failure, reconnect."""
        backoff = 0.1
        reported = False  # a failure was logged and no success since
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(ROUTES_CHANNEL)
                await self.load_all()
                if not self.connected:
                    logger.info(
                        "Routing data loaded from %s: %d endpoint(s)", self.redis_url, len(self.table.endpoints)
                    )
                self.connected = True
                backoff = 0.1
                if reported:
                    logger.warning("Redis at %s answers again; routing data reloaded", self.redis_url)
                    reported = False
                await self._follow(pubsub)
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as error:
                self.connected = False
                if not reported:
                    state = "serving the last routing data" if self.table.loaded else "answering 503 meanwhile"
                    logger.warning("Redis at %s is unreachable (%s); retrying, %s", self.redis_url, error, state)
                    reported = True
            except Exception:
                self.connected = False
                logger.exception("The routing sync failed; restarting it")
            finally:
                with contextlib.suppress(Exception):  # the connection may be gone already
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _follow(self, pubsub: aioredis.client.PubSub) -> None:
        next_resync = time.monotonic() + self.resync_interval
        while True:
            wait = next_resync - time.monotonic()
            if wait > 0:
                message = await pubsub.get_message(timeout=wait)
                if message is not None and message.get("type") == "message":
                    names = {_text(message["data"])}
                    # Drain what else is queued, so a burst of publishes costs one read per endpoint.
                    while (message := await pubsub.get_message(timeout=0)) is not None:
                        if message.get("type") == "message":
                            names.add(_text(message["data"]))
                    await self.load(sorted(names))
                continue
            await self.load_all()
            next_resync = time.monotonic() + self.resync_interval

    async def load_all(self) -> None:
        names = sorted(_text(name) for name in await self.client.smembers(ROUTES_SET))
        await self.load(names, complete=True)
        if not self.table.loaded:
            self.table.loaded = True
            # Counts a previous gateway process may have left behind for these instances are stale.
            instances = self.table.instances()
            if instances:
                await self.client.hset(INFLIGHT_KEY, mapping={i.id: i.inflight for i in instances})
                for instance in instances:
                    instance.written = instance.inflight

    async def load(self, names: list[str], complete: bool = False) -> None:
        """Reload the named endpoints (dropping those without a document) and acknowledge their versions.

        With complete, `names` is every published endpoint: the others are dropped, and every version is
        written again, which repairs the applied hash if someone cleared it.
        """
        raw = await self.client.mget([route_key(name) for name in names]) if names else []
        applied: dict[str, int] = {}
        for name, value in zip(names, raw, strict=True):
            if value is None:
                self._forget(name)
                continue
            endpoint = self.table.endpoints.get(name)
            # Unchanged documents are not checked or compiled again, nor are refused ones.
            if self._raw.get(name) != value and self._refused.get(name, (None,))[0] != value:
                endpoint = self._install(name, value) or endpoint
            if endpoint is None:
                continue
            if complete or self._applied.get(name) != endpoint.version:
                applied[name] = endpoint.version
        if complete:
            for name in set(self.table.endpoints) - set(names):
                self._forget(name)
        if applied:
            await self.client.hset(APPLIED_KEY, mapping=applied)
            self._applied.update(applied)

    def _install(self, name: str, value: bytes) -> Endpoint | None:
        """Check and compile a document and serve it; None (and the previous copy stays) when it is refused."""
        version: object = None
        try:
            document = json.loads(value)
            if isinstance(document, dict):
                version = document.get("version")
            problem = self._problem(name, document)
            if problem is None:
                endpoint = self.table.apply(document)
        except (ValueError, DocumentError) as error:
            problem = str(error)
        if problem is not None:
            if self._refused.get(name, (None, None))[1] != version or version is None:
                served = self.table.endpoints.get(name)
                keeping = f"serving its version {served.version}" if served else "not serving it"
                logger.warning(
                    "Refusing version %s of the routing document of endpoint %r: %s; %s",
                    version,
                    name,
                    problem,
                    keeping,
                )
            self._refused[name] = (value, version)
            return None
        self._refused.pop(name, None)
        self._withdrawn.pop(name, None)
        self._raw[name] = value
        self._served[name] = (endpoint.version, document.get("signed_at", 0))
        return endpoint

    def _problem(self, name: str, document: object) -> str | None:
        """Why a parsed document must not be served, or None."""
        if not verified(document, self.key):
            return "its signature is missing or wrong"
        if document.get("name") != name:
            return f"it is signed for endpoint {document.get('name')!r}"
        version, signed_at = document.get("version"), document.get("signed_at")
        if isinstance(signed_at, bool) or not isinstance(signed_at, int | float):
            return "signed_at is missing"
        served = self._served.get(name)
        if served is not None and isinstance(version, int | float) and version < served[0] and signed_at < served[1]:
            return f"it is older than version {served[0]}, served now"
        if signed_at <= self._withdrawn.get(name, float("-inf")):
            return "it was signed before the endpoint was withdrawn"
        return None

    def _forget(self, name: str) -> None:
        self.table.drop(name)
        self._applied.pop(name, None)
        self._raw.pop(name, None)
        self._refused.pop(name, None)
        served = self._served.pop(name, None)
        if served is not None:
            self._withdrawn[name] = served[1]

    async def write_inflight(self) -> None:
        """Forever: write the in-flight counts that changed, at most once per interval."""
        table = self.table
        while True:
            await asyncio.sleep(self.inflight_interval)
            if not table.dirty:
                continue
            dirty, table.dirty = table.dirty, set()
            changed = {i: i.inflight for i in dirty if i.inflight != i.written}
            if not changed:
                continue
            try:
                await self.client.hset(INFLIGHT_KEY, mapping={i.id: count for i, count in changed.items()})
            except REDIS_ERRORS as error:
                table.dirty.update(changed)
                if not self._inflight_failing:
                    logger.warning("Could not write in-flight counts to Redis (%s); will retry", error)
                self._inflight_failing = True
                continue
            self._inflight_failing = False
            for instance, count in changed.items():
                instance.written = count


def _text(value: bytes | str) -> str:
    """An endpoint name from Redis. Anyone who reaches Redis can write one, so bytes that are not UTF-8
    must not stop the sync: they become a name without a document, which is ignored."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
