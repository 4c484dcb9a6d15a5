"""Gateway fixtures: the real gateway process on Redis database 9, fake and real promptflow instances.

The gateway runs exactly as in production (`uvicorn serving.gateway:app`), as a subprocess on a
free port. Routing documents go in through serving.routing.publish with a plain redis.Redis.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from gateway_support import (
    GATEWAY_SECRET,
    FakeInstance,
    FakeInstances,
    GatewayProcess,
    PromptflowInstance,
    Published,
    redis_url_for_db,
)
from support import wait_for

from serving import routing
from serving.auth import key_digest, new_key, routing_key, signing_key

GATEWAY_DB = 9


@pytest.fixture(scope="session")
def gateway_redis_url(redis_url) -> str:
    """A Redis database of the gateway tests' own (the server is the session's, started if needed)."""
    return redis_url_for_db(redis_url, GATEWAY_DB)


@pytest.fixture(scope="session")
def gateway_redis(gateway_redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(gateway_redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def gateway(gateway_redis, gateway_redis_url, tmp_path_factory) -> Iterator[GatewayProcess]:
    """The gateway the tests share; each test publishes endpoints of its own."""
    process = GatewayProcess(gateway_redis_url, tmp_path_factory.mktemp("gateway") / "gateway.log").start()
    yield process
    process.stop()


@pytest.fixture
def start_gateway(gateway_redis_url, tmp_path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start a gateway of the test's own, e.g. with other settings or another Redis."""
    started: list[GatewayProcess] = []

    def starter(redis_url: str | None = None, wait_healthy: bool = True, **env: str) -> GatewayProcess:
        log = tmp_path / f"gateway-{len(started)}.log"
        process = GatewayProcess(redis_url or gateway_redis_url, log, env)
        started.append(process)
        return process.start(wait_healthy=wait_healthy)

    yield starter
    for process in started:
        process.stop()


_versions = itertools.count(int(time.time() * 1000))


@pytest.fixture
def publish(gateway_redis, request) -> Callable[..., Published]:
    """Publish an endpoint (a fresh name and keys unless given) and wait until the shared gateway serves it."""
    names = itertools.count()

    def publisher(
        deployments: dict[str, dict],
        traffic: dict[str, int] | None = None,
        name: str | None = None,
        keys: list[str] | None = None,
        wait: bool = True,
        **fields,
    ) -> Published:
        if name is None:
            name = f"{request.node.name[5:40].replace('_', '-')}-{next(names)}-{uuid.uuid4().hex[:6]}"
        keys = [new_key(), new_key()] if keys is None else keys
        first = next(iter(deployments), None)
        document = {
            "name": name,
            "version": next(_versions),
            "auth_type": "key",
            "key_digests": [key_digest(k) for k in keys],
            "traffic": traffic if traffic is not None else ({first: 100} if first else {}),
            "mirror_traffic": {},
            "deployments": deployments,
        }
        document.update(fields)
        routing.publish(gateway_redis, document, routing_key(GATEWAY_SECRET))
        if wait:
            wait_for(
                lambda: routing.applied_version(gateway_redis, name) == document["version"],
                timeout=10,
                interval=0.02,
                message=f"the gateway did not apply version {document['version']} of {name}",
            )
        return Published(name, keys, document)

    return publisher


@pytest.fixture(scope="session")
def token_key() -> bytes:
    """The key the gateway signs tokens with (it runs with FLOWDEPLOY_SECRET_KEY=GATEWAY_SECRET)."""
    return signing_key(GATEWAY_SECRET)


@pytest.fixture(scope="session")
def fake_instances() -> Iterator[FakeInstances]:
    instances = FakeInstances()
    yield instances
    instances.close()


@pytest.fixture
def fake(fake_instances) -> Iterator[Callable[..., FakeInstance]]:
    """Start fake instances for one test: fake("blue"), fake("slow", delay=2)."""
    mine: list[FakeInstance] = []

    def starter(name: str, delay: float = 0.0) -> FakeInstance:
        instance = fake_instances.start(name, delay)
        mine.append(instance)
        return instance

    yield starter
    for instance in mine:
        fake_instances.stop(instance)


@pytest.fixture(scope="session")
def promptflow_instance(flow_runtime, tmp_path_factory) -> Iterator[Callable[[str], PromptflowInstance]]:
    """A real promptflow instance per sample, started on first use and shared by the session."""
    workdir = tmp_path_factory.mktemp("promptflow")
    running: dict[str, PromptflowInstance] = {}

    def instance(sample: str) -> PromptflowInstance:
        if sample not in running:
            running[sample] = PromptflowInstance(flow_runtime, sample, workdir)
        return running[sample]

    yield instance
    for started in running.values():
        started.stop()
