"""The numbers of a deployment's Monitoring tab, from its request records and instance samples, bucketed in time.

Each chart is {"title", "unit", "x": [bucket start, epoch seconds], "series": [{"label", "values"}]}, what
static/monitoring/monitoring_tab.js hands to uPlot; a bucket without data is None (a gap in the line)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from monitoring.models import InstanceSample, RequestRecord, Span


@dataclass(frozen=True)
class Range:
    key: str
    label: str
    span: timedelta
    bucket: timedelta
    bucket_label: str


RANGES = {
    r.key: r
    for r in (
        Range("1h", "Last hour", timedelta(hours=1), timedelta(minutes=1), "minute"),
        Range("1d", "Last day", timedelta(days=1), timedelta(minutes=15), "15 minutes"),
        Range("7d", "Last week", timedelta(days=7), timedelta(hours=2), "2 hours"),
    )
}
DEFAULT_RANGE = "1h"


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of sorted values (None for none)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def deployment_charts(endpoint: str, deployment: str, chosen: Range, now: datetime | None = None) -> dict:
    """The summary and the charts of one deployment over `chosen`."""
    now = now or timezone.now()
    step = chosen.bucket.total_seconds()
    # Buckets aligned on the step, the last one holding now.
    last = math.floor(now.timestamp() / step) * step
    count = int(chosen.span.total_seconds() // step)
    xs = [last - step * (count - 1 - i) for i in range(count)]
    first = xs[0]
    since = datetime.fromtimestamp(first, tz=now.tzinfo)

    def index(moment: datetime) -> int:
        return min(count - 1, max(0, int((moment.timestamp() - first) // step)))

    rows = (
        RequestRecord.objects.filter(endpoint_name=endpoint, deployment_name=deployment, time__gte=since)
        .values_list("time", "status", "total_ms", "model_ms", "throttled", "timed_out")
        .iterator(chunk_size=5000)
    )
    by_status: dict[int, list[int]] = {}
    latencies: list[list[float]] = [[] for _ in xs]
    model_latencies: list[list[float]] = [[] for _ in xs]
    errors, throttled, timed_out = [0] * count, [0] * count, [0] * count
    every: list[float] = []
    total = failed = 0
    for at, status, total_ms, model_ms, was_throttled, was_timed_out in rows:
        i = index(at)
        by_status.setdefault(status, [0] * count)[i] += 1
        latencies[i].append(total_ms)
        every.append(total_ms)
        if model_ms is not None:
            model_latencies[i].append(model_ms)
        total += 1
        if status >= 400:
            errors[i] += 1
            failed += 1
        throttled[i] += was_throttled
        timed_out[i] += was_timed_out

    minutes = step / 60
    for values in latencies:
        values.sort()
    for values in model_latencies:
        values.sort()
    every.sort()

    def per_minute(values: list[int]) -> list[float]:
        return [round(v / minutes, 3) for v in values]

    charts = [
        {
            "id": "requests",
            "title": "Requests per minute",
            "unit": "requests/min",
            "x": xs,
            "series": [
                {"label": f"HTTP {status}", "values": per_minute(values)}
                for status, values in sorted(by_status.items())
            ],
        },
        {
            "id": "latency",
            "title": "Request latency",
            "unit": "ms",
            "x": xs,
            "series": [
                *(
                    {"label": label, "values": [_round(percentile(values, fraction)) for values in latencies]}
                    for label, fraction in (("P50", 0.5), ("P95", 0.95), ("P99", 0.99))
                ),
                {
                    "label": "P95 in the instance",
                    "values": [_round(percentile(values, 0.95)) for values in model_latencies],
                },
            ],
        },
        {
            "id": "errors",
            "title": "Errors",
            "unit": "requests",
            "x": xs,
            "series": [
                {"label": "Errors (4xx and 5xx)", "values": errors},
                {"label": "Throttled (429)", "values": throttled},
                {"label": "Timed out (408, 504)", "values": timed_out},
            ],
        },
        _token_chart(endpoint, deployment, xs, since, index),
        _node_latency_chart(endpoint, deployment, xs, since, index),
        *_instance_charts(endpoint, deployment, xs, step, since, index),
    ]
    return {
        "summary": {
            "requests": total,
            "errors": failed,
            "error_rate": round(100 * failed / total, 2) if total else None,
            "p50": _round(percentile(every, 0.5)),
            "p95": _round(percentile(every, 0.95)),
            "p99": _round(percentile(every, 0.99)),
        },
        "charts": charts,
    }


def _token_chart(endpoint: str, deployment: str, xs: list[float], since: datetime, index) -> dict:
    """Tokens of the LLM calls in the deployment's traces (only with Application Insights diagnostics on)."""
    prompt, completion = [0] * len(xs), [0] * len(xs)
    seen = False
    calls = Span.objects.filter(
        endpoint_name=endpoint, deployment_name=deployment, start__gte=since, total_tokens__isnull=False
    ).values_list("start", "prompt_tokens", "completion_tokens", "total_tokens")
    for at, prompt_tokens, completion_tokens, total_tokens in calls.iterator(chunk_size=5000):
        seen = True
        i = index(at)
        if prompt_tokens is None and completion_tokens is None:
            prompt_tokens = total_tokens
        prompt[i] += prompt_tokens or 0
        completion[i] += completion_tokens or 0
    return {
        "id": "tokens",
        "title": "Token consumption",
        "unit": "tokens",
        "x": xs,
        "series": [{"label": "Prompt tokens", "values": prompt}, {"label": "Completion tokens", "values": completion}]
        if seen
        else [],
    }


def _node_latency_chart(endpoint: str, deployment: str, xs: list[float], since: datetime, index) -> dict:
    """P95 duration of each node of the flow, from the traces: a node's span is the one named after its node."""
    durations: dict[str, list[list[float]]] = {}
    spans = Span.objects.filter(
        endpoint_name=endpoint, deployment_name=deployment, start__gte=since, attributes__has_key="node_name"
    ).values_list("start", "name", "duration_ms", "attributes__node_name")
    for at, name, duration_ms, node in spans.iterator(chunk_size=5000):
        if name == node:
            durations.setdefault(node, [[] for _ in xs])[index(at)].append(duration_ms)
    series = []
    for node, buckets in sorted(durations.items()):
        for values in buckets:
            values.sort()
        series.append({"label": node, "values": [_round(percentile(values, 0.95)) for values in buckets]})
    return {"id": "node-latency", "title": "Node latency (P95)", "unit": "ms", "x": xs, "series": series}


def _instance_charts(endpoint: str, deployment: str, xs: list[float], step: float, since: datetime, index) -> list:
    """CPU (percent of one core, from the difference of successive samples) and memory (MiB), per instance."""
    samples = InstanceSample.objects.filter(
        endpoint_name=endpoint, deployment_name=deployment, time__gte=since - timedelta(seconds=step)
    ).order_by("instance_name", "time")
    cpu: dict[str, list[list[float]]] = {}
    memory: dict[str, list[list[float]]] = {}
    previous: dict[str, InstanceSample] = {}
    for sample in samples.iterator(chunk_size=5000):
        name = sample.instance_name
        before = previous.get(name)
        previous[name] = sample
        if sample.time < since:
            continue
        i = index(sample.time)
        memory.setdefault(name, [[] for _ in xs])[i].append(sample.memory_bytes / 1024 / 1024)
        if before is not None:
            seconds = (sample.time - before.time).total_seconds()
            if seconds > 0 and sample.cpu_seconds >= before.cpu_seconds:
                cpu.setdefault(name, [[] for _ in xs])[i].append(
                    100 * (sample.cpu_seconds - before.cpu_seconds) / seconds
                )
    labels = _instance_labels(set(cpu) | set(memory))

    def average(buckets: list[list[float]]) -> list[float | None]:
        return [round(sum(b) / len(b), 1) if b else None for b in buckets]

    return [
        {
            "id": "cpu",
            "title": "CPU utilization",
            "unit": "% of a core",
            "x": xs,
            "series": [{"label": labels[name], "values": average(buckets)} for name, buckets in sorted(cpu.items())],
        },
        {
            "id": "memory",
            "title": "Memory utilization",
            "unit": "MiB",
            "x": xs,
            "series": [{"label": labels[name], "values": average(buckets)} for name, buckets in sorted(memory.items())],
        },
    ]


def _instance_labels(ids: set[str]) -> dict[str, str]:
    """As the Logs tab names instances ("Instance 0 · generation 2"); the id's start for one deleted since."""
    from endpoints.models import Instance

    labels = {name: f"Instance {name[:8]}" for name in ids}
    for instance in Instance.objects.filter(id__in=list(ids)).only("id", "ordinal", "generation"):
        labels[str(instance.id)] = f"Instance {instance.ordinal} · generation {instance.generation}"
    return labels


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
