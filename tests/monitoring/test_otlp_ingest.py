"""The studio's OTLP/HTTP span ingest (/internal/otlp/v1/traces): who may send, what it stores, what it refuses.
The exports are built with a small protobuf writer following opentelemetry-proto's trace.proto; the real
exporter's bytes are covered end to end in test_tracing.py."""

import gzip
import struct

import pytest

from endpoints.models import Instance, InstanceState
from monitoring import otlp, tracing
from monitoring.models import Span

pytestmark = pytest.mark.django_db

URL = "/internal/otlp/v1/traces"
PROTOBUF = "application/x-protobuf"


def varint(value: int) -> bytes:
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def field(number: int, value) -> bytes:
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    if isinstance(value, str):
        return field(number, value.encode())
    return varint(number << 3) + varint(value)


def fixed64(number: int, value: int) -> bytes:
    return varint(number << 3 | 1) + struct.pack("<Q", value)


def attribute(key: str, value) -> bytes:
    if isinstance(value, str):
        any_value = field(1, value)
    elif isinstance(value, float):
        any_value = varint(4 << 3 | 1) + struct.pack("<d", value)
    else:
        any_value = field(3, value & (2**64 - 1))
    return field(1, key) + field(2, any_value)


def span(trace: str, span_id: str, name: str, parent: str = "", start=10**18, ms=5.0, **attributes) -> bytes:
    body = field(1, bytes.fromhex(trace)) + field(2, bytes.fromhex(span_id))
    if parent:
        body += field(4, bytes.fromhex(parent))
    body += field(5, name) + field(6, 1) + fixed64(7, start) + fixed64(8, start + int(ms * 1e6))
    for key, value in attributes.items():
        body += field(9, attribute(key.replace("__", "."), value))
    body += field(15, field(2, "") + field(3, 1))
    return body


def export(*spans: bytes) -> bytes:
    scope = b"".join(field(2, s) for s in spans)
    resource = field(1, field(1, attribute("service.name", "promptflow")))
    return field(1, resource + field(2, scope))


TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def instance(deployment_row):
    deployment = deployment_row(endpoint="ep-otlp", name="blue")
    return Instance.objects.create(deployment=deployment, generation=1, ordinal=0, state=InstanceState.READY)


def post(client, body: bytes, token: str | None, **headers):
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.post(URL, body, content_type=headers.pop("content_type", PROTOBUF), **headers)


def test_it_stores_an_instances_spans_under_its_deployment(client, instance):
    body = export(
        span(TRACE, "b7ad6b7169203331", "flow", request_id="req-9", inputs='{"q": 1}', endpoint="not-mine"),
        span(
            TRACE,
            "00f067aa0ba902b7",
            "openai_chat",
            parent="b7ad6b7169203331",
            llm__usage__prompt_tokens=10,
            llm__usage__completion_tokens=9,
            llm__usage__total_tokens=19,
            ratio=0.25,
        ),
    )
    response = post(client, body, tracing.mint_token(instance))
    assert response.status_code == 200
    assert response["Content-Type"] == PROTOBUF and response.content == b""
    flow, call = Span.objects.order_by("name")
    assert (flow.endpoint_name, flow.deployment_name, flow.instance_name) == ("ep-otlp", "blue", str(instance.pk))
    assert flow.request_id == "req-9" and flow.attributes["inputs"] == '{"q": 1}' and flow.is_root
    assert call.parent_span_id == "b7ad6b7169203331" and call.duration_ms == 5.0
    assert (call.prompt_tokens, call.completion_tokens, call.total_tokens) == (10, 9, 19)
    assert call.attributes["ratio"] == 0.25 and call.status == "Ok"

    assert post(client, body, tracing.mint_token(instance)).status_code == 200  # an export sent again
    assert Span.objects.count() == 2


def test_it_takes_a_gzipped_export(client, instance):
    body = gzip.compress(export(span(TRACE, "b7ad6b7169203331", "flow")))
    assert post(client, body, tracing.mint_token(instance), HTTP_CONTENT_ENCODING="gzip").status_code == 200
    assert Span.objects.get().name == "flow"


def test_it_refuses_a_missing_or_forged_token(client, instance):
    body = export(span(TRACE, "b7ad6b7169203331", "flow"))
    assert post(client, body, None).status_code == 401
    assert post(client, body, "instance.forged").status_code == 401
    from endpoints.connections import mint_token as provider_token

    assert post(client, body, provider_token(instance)).status_code == 401  # a connection provider token is no good
    assert not Span.objects.exists()


def test_it_refuses_a_stopped_or_restarted_instance(client, instance):
    token = tracing.mint_token(instance)
    Instance.objects.filter(pk=instance.pk).update(restarts=1)
    assert post(client, export(span(TRACE, "b7ad6b7169203331", "flow")), token).status_code == 401
    instance.refresh_from_db()
    token = tracing.mint_token(instance)
    Instance.objects.filter(pk=instance.pk).update(state=InstanceState.STOPPED)
    assert post(client, export(span(TRACE, "b7ad6b7169203331", "flow")), token).status_code == 401


def test_it_answers_only_the_instances_networks(client, instance, settings):
    settings.FLOWDEPLOY_PROVIDER_ALLOWED_NETWORKS = ["10.9.0.0/16"]
    response = post(client, export(span(TRACE, "b7ad6b7169203331", "flow")), tracing.mint_token(instance))
    assert response.status_code == 403


def test_it_names_what_is_wrong_with_the_body(client, instance):
    token = tracing.mint_token(instance)
    assert post(client, b"{}", token, content_type="application/json").status_code == 415
    broken = post(client, export(span(TRACE, "b7ad6b7169203331", "flow"))[:-3], token)
    assert broken.status_code == 400
    assert "not a readable OTLP trace request" in broken.json()["message"]
    assert client.get(URL).status_code == 405


def test_it_sets_up_an_instance_to_export_to_the_studio(instance, settings):
    settings.FLOWDEPLOY_STUDIO_URL = "http://127.0.0.1:8000"
    env = tracing.instance_env(instance)
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:8000/internal/otlp/v1/traces"
    token = env["OTEL_EXPORTER_OTLP_TRACES_HEADERS"].removeprefix("authorization=Bearer%20")
    assert tracing.instance_for(token) == instance
    assert env["PF_DISABLE_TRACING"] == "false" and env["PF_BUILTIN_TRACE_EXPORTERS_DISABLE"] == "true"
    bootstrap = instance.folder / "home" / "flowdeploy-tracing" / "sitecustomize.py"
    assert env["PYTHONPATH"] == str(bootstrap.parent)
    assert bootstrap.read_text() == otlp.BOOTSTRAP.read_text()


def test_it_decodes_negative_numbers_nested_values_and_skips_unknown_fields():
    kvlist = field(6, field(1, field(1, "k") + field(2, field(1, "v"))))
    array = field(5, field(1, field(1, "a")) + field(1, field(2, 1)))
    body = field(1, bytes.fromhex(TRACE)) + field(2, bytes.fromhex("b7ad6b7169203331")) + field(5, "x")
    body += field(9, attribute("neg", -3)) + field(9, field(1, "map") + field(2, kvlist))
    body += field(9, field(1, "list") + field(2, array)) + field(99, "unknown") + varint(16 << 3 | 5) + b"\x01\0\0\0"
    [decoded] = otlp.spans(export(body))
    assert decoded["attributes"] == {"neg": -3, "map": {"k": "v"}, "list": ["a", True]}
    assert decoded["resource"] == {"service.name": "promptflow"}
