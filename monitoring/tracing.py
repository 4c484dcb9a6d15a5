"""Tracing: with a deployment's "Application Insights diagnostics" on, its instances export promptflow's
OpenTelemetry spans over OTLP/HTTP to the studio, which stores them (`Span`) for the Traces view.

How an instance is set up (`instance_env`, added by endpoints.provisioning.instance_env_vars):
PF_DISABLE_TRACING=false makes promptflow trace at all (Flowdeploy turns it off otherwise), and a small
bootstrap run at interpreter start (instance_bootstrap/sitecustomize.py, on the instance's PYTHONPATH) sets the
tracer provider: OpenTelemetry's OTLP/HTTP exporter behind a BatchSpanProcessor, off the request path,
configured by the standard OTEL_EXPORTER_OTLP_TRACES_* variables. promptflow-core's own OTLP exporter would
read the same variables, but fails with the OpenTelemetry version the runtime has (the bootstrap says why), so
it is switched off with promptflow's PF_BUILTIN_TRACE_EXPORTERS_DISABLE. The exporter sends
OTEL_EXPORTER_OTLP_TRACES_HEADERS with every export: a bearer token minted for this start of this instance.
With APPLICATIONINSIGHTS_CONNECTION_STRING among the deployment's environment variables, spans also go to
Azure Monitor, as on Azure.

The token is signed by the studio, names the instance, its deployment, generation and restart count, and is
good while that instance runs (Starting, Ready or Draining: a draining instance still sends its last spans);
the ingest view also answers only direct calls from FLOWDEPLOY_PROVIDER_ALLOWED_NETWORKS, like the connection
provider. Spans are stored under the instance's endpoint and deployment, whatever their attributes say.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core import signing

from endpoints.models import Instance, InstanceState
from monitoring import otlp
from monitoring.models import Span

SALT = "flowdeploy.otlp-traces.v1"
TRACES_PATH = "/internal/otlp/v1/traces"
MAX_ATTRIBUTE_CHARS = 32 * 1024  # a longer attribute (a long input or output) is stored cut at this length
TRACING_STATES = (InstanceState.STARTING, InstanceState.READY, InstanceState.DRAINING)
# What a deployment's own environment variables may not change while tracing is on: the studio's exporter.
# promptflow prefers OTEL_EXPORTER_OTLP_ENDPOINT to the traces endpoint, and would send the token there.
OVERRIDDEN = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_PROTOCOL")


def mint_token(instance: Instance) -> str:
    claims = {"i": str(instance.pk), "d": instance.deployment_id, "g": instance.generation, "r": instance.restarts}
    return signing.Signer(salt=SALT, sep=".").sign_object(claims)


def instance_for(token: str) -> Instance | None:
    """The instance a token was minted for, while that start of it runs; None for anything else."""
    try:
        claims = signing.Signer(salt=SALT, sep=".").unsign_object(token)
        instance_id, deployment_id, generation, restarts = claims["i"], claims["d"], claims["g"], claims["r"]
    except (signing.BadSignature, ValueError, TypeError, KeyError):
        return None
    return (
        Instance.objects.select_related("deployment__endpoint")
        .filter(pk=instance_id, deployment_id=deployment_id, generation=generation, restarts=restarts)
        .filter(state__in=TRACING_STATES)
        .first()
    )


def instance_env(instance: Instance) -> dict[str, str]:
    """The variables that make this start of an instance export its spans to the studio; puts the bootstrap
    (instance_bootstrap/sitecustomize.py) into the instance's home, which its sandbox sees."""
    studio = settings.FLOWDEPLOY_STUDIO_URL.rstrip("/")
    bootstrap_dir = instance.folder / "home" / "flowdeploy-tracing"
    return otlp.exporter_env(f"{studio}{TRACES_PATH}", mint_token(instance), bootstrap_dir)


def store(instance: Instance, decoded: list[dict[str, Any]]) -> int:
    """Store decoded spans (monitoring.otlp.spans) as the instance's; a span stored before is skipped."""
    deployment = instance.deployment
    rows = []
    for span in decoded:
        if len(span["trace_id"]) != 32 or len(span["span_id"]) != 16:
            continue
        attributes = {str(k)[:256]: _cut(v) for k, v in span["attributes"].items()}
        start_ns, end_ns = span["start_ns"], max(span["end_ns"], span["start_ns"])
        rows.append(
            Span(
                trace_id=span["trace_id"],
                span_id=span["span_id"],
                parent_span_id=span["parent_span_id"][:16],
                name=span["name"][:255],
                kind=span["kind"][:16],
                start=datetime.fromtimestamp(start_ns / 1e9, UTC),
                duration_ms=(end_ns - start_ns) / 1e6,
                status=span["status"][:8],
                status_message=span["status_message"][:MAX_ATTRIBUTE_CHARS],
                attributes=attributes,
                events=[
                    {
                        "name": event["name"][:255],
                        "time_ns": event["time_ns"],
                        "attributes": {str(k)[:256]: _cut(v) for k, v in event["attributes"].items()},
                    }
                    for event in span["events"][:32]
                ],
                endpoint_name=deployment.endpoint.name,
                deployment_name=deployment.name,
                instance_name=str(instance.pk),
                request_id=str(attributes.get("request_id") or "")[:128],
                prompt_tokens=_tokens(attributes, "llm.usage.prompt_tokens"),
                completion_tokens=_tokens(attributes, "llm.usage.completion_tokens"),
                total_tokens=_tokens(attributes, "llm.usage.total_tokens"),
            )
        )
    Span.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_CHARS:
        return value[:MAX_ATTRIBUTE_CHARS] + " … (cut)"
    return value


def _tokens(attributes: dict, name: str) -> int | None:
    value = attributes.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# Reading traces


def waterfall(spans: list[Span]) -> list[dict]:
    """The spans of one trace in tree order (each parent before its children), with their depth and their bar's
    offset and width in percent of the trace's time."""
    if not spans:
        return []
    start = min(span.start for span in spans)
    end = max(span.start.timestamp() + span.duration_ms / 1000 for span in spans)
    total = max(end - start.timestamp(), 1e-6)
    known = {span.span_id for span in spans}
    children: dict[str, list[Span]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in known else ""
        children.setdefault(parent, []).append(span)
    rows: list[dict] = []

    def walk(parent: str, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start):
            offset = (span.start - start).total_seconds() / total * 100
            rows.append(
                {
                    "span": span,
                    "depth": depth,
                    "offset": round(offset, 2),
                    "width": round(max(span.duration_ms / 1000 / total * 100, 0.3), 2),
                    "inputs": span.attributes.get("inputs"),
                    "output": span.attributes.get("output"),
                    "span_type": span.attributes.get("span_type", ""),
                    "node_name": span.attributes.get("node_name", ""),
                }
            )
            if len(rows) < 2000:
                walk(span.span_id, depth + 1)

    walk("", 0)
    return rows
