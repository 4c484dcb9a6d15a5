"""The gateway against hostile clients and a hostile flow process: a real gateway process, Redis, fake instances.

Clients: oversized or slow headers, stalled bodies, too many connections, undecodable credentials.
Flow processes: they can write to Redis, so a routing document they write must not be served.
"""

import json
import socket
import time
from urllib.parse import urlsplit

import pytest
from gateway_support import call, deployment_spec
from support import wait_for

from serving import routing
from serving.auth import issue_token, key_digest, new_key, routing_key

pytestmark = pytest.mark.integration


def connect(base_url: str, timeout: float = 10) -> socket.socket:
    parts = urlsplit(base_url)
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the gateway sends until it closes the connection (a timeout fails the test)."""
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data


def health_on(sock: socket.socket) -> int:
    """GET /health on an open connection, kept open; the status."""
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
        answer += sock.recv(65536)
    return int(answer.split()[1])


def status_and_error(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


def score_head(endpoint, length: int) -> bytes:
    return (
        f"POST /endpoints/{endpoint.name}/score HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {endpoint.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_it_refuses_headers_larger_than_the_limit(gateway, publish, fake):
    """Headers beyond 16 KiB in all get 431 with a JSON error; 8 KiB of them are served as usual."""
    endpoint = publish({"blue": deployment_spec(fake("blue"))})
    usual = {f"x-padding-{number}": "a" * 1000 for number in range(8)}
    assert gateway.score(endpoint.name, {}, endpoint.key, **usual).status == 200

    oversized = {f"x-padding-{number}": "a" * 1000 for number in range(20)}
    answer = gateway.score(endpoint.name, {}, endpoint.key, **oversized)
    assert answer.status == 431
    assert answer.error["code"] == "RequestHeaderFieldsTooLarge"
    assert "16384 bytes" in answer.error["message"]


def test_it_refuses_a_header_that_keeps_growing(gateway):
    """One header that never ends is refused with 431 once it passes the limit, and the connection closed."""
    with connect(gateway.url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\nX-Endless: ")
        try:
            for _ in range(16):  # 64 KiB in all, in pieces, as a slow client sends them
                time.sleep(0.02)
                sock.sendall(b"a" * 4096)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway answered and closed the connection before the end
        status, error = status_and_error(read_until_closed(sock))
    assert status == 431
    assert error["code"] == "RequestHeaderFieldsTooLarge"


def test_it_disconnects_clients_that_send_headers_too_slowly(start_gateway):
    """A client trickling its headers (slowloris), or sending nothing, is disconnected after the header timeout."""
    gateway = start_gateway(FLOWDEPLOY_GATEWAY_HEADER_TIMEOUT="1")
    with connect(gateway.url) as slow, connect(gateway.url) as silent:
        started = time.monotonic()
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n")
        closed = False
        for _ in range(30):  # a header byte every 0.1 s: the headers would take 3 s or more
            try:
                slow.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.1)
        assert read_until_closed(slow) == b""
        assert closed or time.monotonic() - started < 3
        assert read_until_closed(silent) == b""
        assert time.monotonic() - started < 3
    assert call(gateway.url, "/health").status == 200


def test_it_answers_408_when_the_body_stalls(start_gateway, publish, fake):
    """A client that stops sending the body gets 408 and a JSON error after the body timeout; the connection closes."""
    blue = fake("blue")
    endpoint = publish({"blue": deployment_spec(blue)}, wait=False)
    gateway = start_gateway(FLOWDEPLOY_GATEWAY_BODY_TIMEOUT="1")
    assert gateway.score(endpoint.name, {}, endpoint.key).status == 200
    with connect(gateway.url) as sock:
        started = time.monotonic()
        sock.sendall(score_head(endpoint, 100) + b'{"url": ')
        answer = read_until_closed(sock)
        elapsed = time.monotonic() - started
    status, error = status_and_error(answer)
    assert status == 408
    assert error["code"] == "RequestTimeout"
    assert b"connection: close" in answer.lower()
    assert 0.9 < elapsed < 3
    assert len(blue.received) == 1  # only the first request reached the instance


def test_it_answers_503_beyond_the_connection_limit(start_gateway):
    """Beyond FLOWDEPLOY_GATEWAY_MAX_CONNECTIONS connections a request gets 503 JSON; below it, service resumes."""
    gateway = start_gateway(FLOWDEPLOY_GATEWAY_MAX_CONNECTIONS="2")
    first, second = connect(gateway.url), connect(gateway.url)
    try:
        for sock in (first, second):  # both accepted: each answers a request and stays open
            assert health_on(sock) == 200
        answer = call(gateway.url, "/health")
        assert answer.status == 503
        assert answer.error["code"] == "ServiceUnavailable"
        assert answer.headers["connection"] == "close"
    finally:
        first.close()
        second.close()
    wait_for(lambda: call(gateway.url, "/health").status == 200, timeout=5, interval=0.05)


def test_it_closes_idle_keep_alive_connections(start_gateway):
    """A connection left idle after an answer is closed after FLOWDEPLOY_GATEWAY_KEEPALIVE_TIMEOUT seconds."""
    gateway = start_gateway(FLOWDEPLOY_GATEWAY_KEEPALIVE_TIMEOUT="1")
    with connect(gateway.url) as sock:
        assert health_on(sock) == 200
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        assert time.monotonic() - started < 3


def test_it_answers_401_to_credentials_that_are_not_ascii(gateway, publish, fake, token_key):
    """Non-ASCII keys and tokens (Latin-1 or UTF-8 bytes) are refused with 401 and the JSON error, never a 500."""
    blue = fake("blue")
    key_endpoint = publish({"blue": deployment_spec(blue)})
    token_endpoint = publish({"blue": deployment_spec(blue)}, auth_type="token", key_digests=[])
    token = issue_token(token_endpoint.name, token_key)["accessToken"]
    payload, signature = token.split(".")
    credentials = {
        key_endpoint.name: ["clé", key_endpoint.key + "é", "ключ".encode().decode("latin-1")],
        token_endpoint.name: [f"{payload}.é{signature[1:]}", f"{payload}é.{signature}", "é.é"],
    }
    for name, refused in credentials.items():
        for credential in refused:
            answer = call(gateway.url, f"/endpoints/{name}/score", {}, {"Authorization": f"Bearer {credential}"})
            assert answer.status == 401, (name, credential, answer.body)
            assert answer.error["code"] == "Unauthorized"
    assert gateway.score(token_endpoint.name, {}, token).status == 200


def forge(gateway_redis, document: dict) -> None:
    """What a hostile flow process can do: write a routing document straight into Redis and announce it."""
    gateway_redis.set(routing.route_key(document["name"]), json.dumps(document))
    gateway_redis.sadd(routing.ROUTES_SET, document["name"])
    gateway_redis.publish(routing.ROUTES_CHANNEL, document["name"])


def refusals(gateway, name: str, version: int) -> int:
    """How many times the gateway logged that it refused this version of the endpoint's document."""
    warning = f"Refusing version {version} of the routing document of endpoint '{name}'"
    return gateway.log_path.read_text().count(warning)


def test_it_serves_no_forged_routing_document(gateway, gateway_redis, publish, fake):
    """Documents unsigned or signed with another key are refused (one warning each); the genuine one keeps serving."""
    genuine, hostile = fake("genuine"), fake("hostile")
    endpoint = publish({"blue": deployment_spec(genuine)})
    attacker_key = new_key()
    forged = {
        **endpoint.document,
        "key_digests": [key_digest(attacker_key)],
        "deployments": {"blue": deployment_spec(hostile)},
    }
    unsigned = {**forged, "version": endpoint.version + 1}
    wrong_key = routing_key("not-the-gateway-secret")
    wrongly_signed = routing.sign({**forged, "version": endpoint.version + 2}, wrong_key)
    unknown = routing.sign({**forged, "name": f"{endpoint.name}-x"}, wrong_key)

    for document in (unsigned, unsigned, wrongly_signed, unknown):
        forge(gateway_redis, document)
        wait_for(lambda d=document: refusals(gateway, d["name"], d["version"]), timeout=5, interval=0.02)
    assert refusals(gateway, endpoint.name, unsigned["version"]) == 1  # the same document again: no second warning

    answer = gateway.score(endpoint.name, {}, endpoint.key)
    assert answer.status == 200
    assert answer.json["instance"] == "genuine"
    assert gateway.score(endpoint.name, {}, attacker_key).status == 401
    assert gateway.score(unknown["name"], {}, attacker_key).status == 404
    assert hostile.received == []
    assert routing.applied_version(gateway_redis, endpoint.name) == endpoint.version

    republished = publish({"blue": deployment_spec(genuine)}, name=endpoint.name, keys=endpoint.keys)
    assert gateway.score(endpoint.name, {}, endpoint.key).status == 200
    assert routing.applied_version(gateway_redis, endpoint.name) == republished.version


def test_it_serves_no_old_genuine_document_written_back(gateway, gateway_redis, publish, fake):
    """A genuine document replaced by a newer one, then written back (a replay), is not served again."""
    old_instance, new_instance = fake("old"), fake("new")
    first = publish({"blue": deployment_spec(old_instance)})
    assert gateway.score(first.name, {}, first.key).json["instance"] == "old"
    old_raw = gateway_redis.get(routing.route_key(first.name))
    publish({"blue": deployment_spec(new_instance)}, name=first.name, keys=first.keys)

    gateway_redis.set(routing.route_key(first.name), old_raw)
    gateway_redis.publish(routing.ROUTES_CHANNEL, first.name)
    wait_for(lambda: refusals(gateway, first.name, first.version), timeout=5, interval=0.02)
    assert gateway.score(first.name, {}, first.key).json["instance"] == "new"

    routing.withdraw(gateway_redis, first.name)
    wait_for(lambda: gateway.score(first.name, {}, first.key).status == 404, timeout=5, interval=0.02)
    forge(gateway_redis, json.loads(old_raw))
    wait_for(lambda: refusals(gateway, first.name, first.version) == 2, timeout=5, interval=0.02)
    assert gateway.score(first.name, {}, first.key).status == 404
    assert len(old_instance.received) == 1


def test_it_keeps_syncing_when_redis_holds_names_that_are_not_utf8(gateway, gateway_redis, publish, fake):
    """An endpoint name of invalid UTF-8 in the routes set or on the channel is ignored; routing goes on."""
    gateway_redis.sadd(routing.ROUTES_SET, b"\xff\xfe")
    try:
        gateway_redis.publish(routing.ROUTES_CHANNEL, b"\xff\xfe")
        endpoint = publish({"blue": deployment_spec(fake("blue"))})
        assert gateway.score(endpoint.name, {}, endpoint.key).status == 200
    finally:
        gateway_redis.srem(routing.ROUTES_SET, b"\xff\xfe")
