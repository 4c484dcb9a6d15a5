"""The gateway's in-memory routing table: compiling documents, choosing deployments and instances, keys."""

import random
from collections import Counter

import pytest

from serving.auth import issue_token, key_digest
from serving.gateway_routes import DocumentError, RouteTable, compile_endpoint


def _document(**fields) -> dict:
    document = {
        "name": "ep",
        "version": 1,
        "auth_type": "key",
        "key_digests": [key_digest("primary"), key_digest("secondary")],
        "traffic": {"blue": 100},
        "mirror_traffic": {},
        "deployments": {
            "blue": {
                "instances": [
                    {"id": "a", "url": "http://127.0.0.1:9001"},
                    {"id": "b", "url": "http://127.0.0.1:9002/"},
                ],
                "request_timeout_ms": 2500,
                "max_concurrent_requests_per_instance": 2,
                "max_body_bytes": 1000,
                "swagger": None,
            },
            "green": {"instances": [{"id": "c", "url": "http://127.0.0.1:9003"}]},
        },
    }
    document.update(fields)
    return document


def test_it_compiles_a_document():
    """Settings are read once; missing ones get the defaults; requests to instances are rendered ahead."""
    endpoint = compile_endpoint(_document(), {}, default_max_body_bytes=5000)
    blue, green = endpoint.deployments["blue"], endpoint.deployments["green"]
    assert blue.timeout == 2.5
    assert blue.max_concurrent == 2
    assert blue.max_body_bytes == 1000
    assert green.max_body_bytes == 5000
    assert green.timeout == 5.0
    assert green.max_concurrent == 1
    assert blue.instances[1].score_head == b"POST /score HTTP/1.1\r\nhost: 127.0.0.1:9002\r\n"
    assert blue.header_value == b"blue"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": ""}, "name"),
        ({"auth_type": "aad"}, "auth_type"),
        ({"key_digests": "abc"}, "key_digests"),
        ({"traffic": {"blue": -5}}, "traffic.blue"),
        ({"deployments": {"blue": {"instances": [{"url": "http://x:1"}]}}}, "id and a url"),
        ({"deployments": {"blue": {"instances": [{"id": "a", "url": "https://x:1"}]}}}, "http://host:port"),
        ({"deployments": {"blue": {"request_timeout_ms": "slow"}}}, "request_timeout_ms"),
    ],
)
def test_it_refuses_documents_it_cannot_serve(change, message):
    """A broken document raises DocumentError naming the field."""
    with pytest.raises(DocumentError, match=message):
        compile_endpoint(_document(**change), {}, 5000)


def test_it_picks_the_instance_with_the_fewest_requests_in_flight():
    """Least in flight first; ties take turns; none at all when every instance is at the limit."""
    blue = compile_endpoint(_document(), {}, 5000).deployments["blue"]
    a, b = blue.instances
    a.inflight = 1
    assert [blue.pick_instance() for _ in range(3)] == [b, b, b]
    a.inflight = 0
    assert {blue.pick_instance().id for _ in range(4)} == {"a", "b"}
    a.inflight = b.inflight = 2
    assert blue.pick_instance() is None


def test_it_picks_deployments_by_their_traffic_weights():
    """Weighted at random; deployments at 0% never; none when nothing takes traffic."""
    random.seed(7)
    endpoint = compile_endpoint(_document(traffic={"blue": 90, "green": 10}), {}, 5000)
    counts = Counter(endpoint.pick_deployment().name for _ in range(10000))
    assert 0.08 < counts["green"] / 10000 < 0.12
    assert compile_endpoint(_document(traffic={"blue": 100, "green": 0}), {}, 5000).pick_deployment().name == "blue"
    assert compile_endpoint(_document(traffic={}), {}, 5000).pick_deployment() is None


def test_it_picks_the_swagger_of_the_deployment_with_the_most_traffic():
    endpoint = compile_endpoint(_document(traffic={"blue": 40, "green": 60}), {}, 5000)
    assert endpoint.swagger_deployment.name == "green"


def test_it_checks_keys_and_tokens():
    """Key endpoints take their keys; token endpoints take unexpired tokens issued for them."""
    endpoint = compile_endpoint(_document(), {}, 5000)
    assert endpoint.authorized("primary", b"k")
    assert endpoint.authorized("primary", b"k")  # remembered
    assert endpoint.authorized("secondary", b"k")
    assert not endpoint.authorized("other", b"k")
    assert not endpoint.authorized("", b"k")

    tokens = compile_endpoint(_document(auth_type="token", key_digests=[]), {}, 5000)
    assert tokens.authorized(issue_token("ep", b"k")["accessToken"], b"k")
    assert not tokens.authorized(issue_token("other", b"k")["accessToken"], b"k")
    assert not tokens.authorized("primary", b"k")


def test_it_forgets_a_revoked_key_with_the_new_document():
    """A key remembered by one version of the document means nothing to the next one."""
    table = RouteTable()
    assert table.apply(_document()).authorized("primary", b"k")
    republished = table.apply(_document(version=2, key_digests=[key_digest("secondary")]))
    assert not republished.authorized("primary", b"k")
    assert table.endpoints["ep"] is republished


def test_it_keeps_counting_requests_in_flight_across_reloads():
    """An instance still routed to keeps its count; one that moved to another URL starts afresh."""
    table = RouteTable()
    first = table.apply(_document())
    first.deployments["blue"].instances[0].inflight = 3
    moved = _document(version=2)
    moved["deployments"]["blue"]["instances"][1]["url"] = "http://127.0.0.1:9999"
    second = table.apply(moved)
    a, b = second.deployments["blue"].instances
    assert a is first.deployments["blue"].instances[0] and a.inflight == 3
    assert b is not first.deployments["blue"].instances[1]
