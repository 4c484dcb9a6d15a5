"""Decode an OTLP/HTTP trace export (`ExportTraceServiceRequest`, protobuf) into plain dicts. Plain Python, no Django.

The instances export promptflow's spans with OpenTelemetry's OTLP/HTTP exporter, which speaks protobuf only.
The studio reads the few messages of opentelemetry-proto's `trace/v1/trace.proto` and `common/v1/common.proto`
it needs with the small wire-format reader below rather than depending on protobuf and opentelemetry-proto;
fields it does not know are skipped, as protobuf does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Run first by every Python process of a traced instance (it goes on the instance's PYTHONPATH).
BOOTSTRAP = Path(__file__).resolve().parent / "instance_bootstrap" / "sitecustomize.py"
EXPORT_DELAY_MS = 1000  # the BatchSpanProcessor's schedule delay: spans leave within about a second

SPAN_KINDS = {0: "Unspecified", 1: "Internal", 2: "Server", 3: "Client", 4: "Producer", 5: "Consumer"}
STATUS_CODES = {0: "Unset", 1: "Ok", 2: "Error"}


class DecodeError(ValueError):
    """The body is not a well-formed OTLP trace export."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise DecodeError("a number runs past the end of the message")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("a number is longer than 10 bytes")


def fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field of one message: an int for varints, fixed32 and fixed64,
    bytes for length-delimited fields."""
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            if pos + 8 > end:
                raise DecodeError("a fixed64 runs past the end of the message")
            value = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise DecodeError("a field runs past the end of the message")
            value = data[pos : pos + length]
            pos += length
        elif wire == 5:
            if pos + 4 > end:
                raise DecodeError("a fixed32 runs past the end of the message")
            value = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        else:
            raise DecodeError(f"wire type {wire} is not supported")
        yield number, wire, value


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def any_value(data: bytes) -> Any:
    for number, wire, value in fields(data):
        if number == 1 and wire == 2:
            return _text(value)
        if number == 2 and wire == 0:
            return bool(value)
        if number == 3 and wire == 0:
            return value - (1 << 64) if value >= 1 << 63 else value
        if number == 4 and wire == 1:
            return struct.unpack("<d", value.to_bytes(8, "little"))[0]
        if number == 5 and wire == 2:
            return [any_value(item) for n, w, item in fields(value) if n == 1 and w == 2]
        if number == 6 and wire == 2:
            return dict(key_value(item) for n, w, item in fields(value) if n == 1 and w == 2)
        if number == 7 and wire == 2:
            return value.hex()
    return None


def key_value(data: bytes) -> tuple[str, Any]:
    key, value = "", None
    for number, wire, item in fields(data):
        if number == 1 and wire == 2:
            key = _text(item)
        elif number == 2 and wire == 2:
            value = any_value(item)
    return key, value


def _attributes(items: list[bytes]) -> dict[str, Any]:
    return dict(key_value(item) for item in items)


def span(data: bytes) -> dict[str, Any]:
    result: dict[str, Any] = {
        "trace_id": "",
        "span_id": "",
        "parent_span_id": "",
        "name": "",
        "kind": SPAN_KINDS[0],
        "start_ns": 0,
        "end_ns": 0,
        "status": STATUS_CODES[0],
        "status_message": "",
    }
    attributes: list[bytes] = []
    events: list[dict] = []
    for number, wire, value in fields(data):
        if wire == 2 and number in (1, 2, 4):
            result[{1: "trace_id", 2: "span_id", 4: "parent_span_id"}[number]] = value.hex()
        elif number == 5 and wire == 2:
            result["name"] = _text(value)
        elif number == 6 and wire == 0:
            result["kind"] = SPAN_KINDS.get(value, str(value))
        elif number == 7 and wire == 1:
            result["start_ns"] = value
        elif number == 8 and wire == 1:
            result["end_ns"] = value
        elif number == 9 and wire == 2:
            attributes.append(value)
        elif number == 11 and wire == 2:
            events.append(_event(value))
        elif number == 15 and wire == 2:
            for n, w, item in fields(value):
                if n == 2 and w == 2:
                    result["status_message"] = _text(item)
                elif n == 3 and w == 0:
                    result["status"] = STATUS_CODES.get(item, str(item))
    result["attributes"] = _attributes(attributes)
    result["events"] = events
    return result


def _event(data: bytes) -> dict[str, Any]:
    event: dict[str, Any] = {"time_ns": 0, "name": "", "attributes": {}}
    attributes = []
    for number, wire, value in fields(data):
        if number == 1 and wire == 1:
            event["time_ns"] = value
        elif number == 2 and wire == 2:
            event["name"] = _text(value)
        elif number == 3 and wire == 2:
            attributes.append(value)
    event["attributes"] = _attributes(attributes)
    return event


def spans(data: bytes) -> list[dict[str, Any]]:
    """Every span of an ExportTraceServiceRequest, each with its resource's attributes under "resource"."""
    found = []
    for number, wire, resource_spans in fields(data):
        if number != 1 or wire != 2:
            continue
        resource: dict[str, Any] = {}
        scopes = []
        for n, w, value in fields(resource_spans):
            if n == 1 and w == 2:
                resource = _attributes([item for m, x, item in fields(value) if m == 1 and x == 2])
            elif n == 2 and w == 2:
                scopes.append(value)
        for scope in scopes:
            for n, w, value in fields(scope):
                if n == 2 and w == 2:
                    decoded = span(value)
                    decoded["resource"] = resource
                    found.append(decoded)
    return found


def exporter_env(traces_url: str, token: str, bootstrap_dir: Path) -> dict[str, str]:
    """The variables that make a promptflow instance export its spans to `traces_url` with `token`; `bootstrap_dir`
    (which the instance's sandbox must see) gets a copy of BOOTSTRAP and goes on its PYTHONPATH."""
    bootstrap_dir.mkdir(parents=True, exist_ok=True)
    (bootstrap_dir / "sitecustomize.py").write_bytes(BOOTSTRAP.read_bytes())
    return {
        "PF_DISABLE_TRACING": "false",
        "PF_BUILTIN_TRACE_EXPORTERS_DISABLE": "true",  # promptflow's OTLP exporter is broken: see the bootstrap
        "PYTHONPATH": str(bootstrap_dir),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": traces_url,
        # The SDK reads `name=value` pairs, URL-decoded: %20 is the space after Bearer.
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"authorization=Bearer%20{token}",
        "OTEL_BSP_SCHEDULE_DELAY": str(EXPORT_DELAY_MS),
    }
