"""A deployment's Monitoring tab: charts of its requests (per minute by status, latency percentiles, errors) and
of its instances (CPU, memory) over the last hour, day or week, and the list of its recent requests."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from endpoints.views.common import get_deployment, page_context
from monitoring import charts, tracing
from monitoring.models import RequestRecord, Span
from workspace.access import Action

TEMPLATE = "endpoints/deployment_monitoring.html"
TRACE_TEMPLATE = "endpoints/deployment_trace.html"
TRACE_ID_LENGTH = 32
PAGE_SIZE = 50
STATUS_FILTERS = {
    "": "All",
    "success": "Succeeded (2xx)",
    "errors": "Errors (4xx and 5xx)",
    "throttled": "Throttled (429)",
    "timed_out": "Timed out (408, 504)",
}


@login_required
@require_GET
def monitoring(request, endpoint: str, name: str):
    deployment = get_deployment(request, endpoint, name)  # Reader and up: looking at metrics is looking
    chosen = charts.RANGES.get(request.GET.get("range", ""), charts.RANGES[charts.DEFAULT_RANGE])
    now = timezone.now()
    filters, error = _filters(request.GET)
    context = page_context(request, deployment, "monitoring")
    context.update(
        {
            "ranges": charts.RANGES.values(),
            "chosen": chosen,
            "data": charts.deployment_charts(deployment.endpoint.name, deployment.name, chosen, now),
            "status_filters": STATUS_FILTERS.items(),
            "filters": filters,
            "filter_error": error,
            "monitoring_url": reverse("endpoints:monitoring", args=[deployment.endpoint.name, deployment.name]),
            **_requests_page(deployment.endpoint.name, deployment.name, chosen, now, filters),
        }
    )
    template = TEMPLATE
    if request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request:
        template += "#requests" if request.GET.get("part") == "requests" else "#monitoring"
    return render(request, template, context)


def _filters(query) -> tuple[dict, str | None]:
    """The request list's filters from the query string, and what was wrong with them (named), if anything."""
    status = query.get("status", "")
    if status not in STATUS_FILTERS:
        status = ""
    filters = {"status": status, "min_ms": "", "before": ""}
    error = None
    raw = query.get("min_ms", "").strip()
    if raw:
        try:
            value = float(raw)
            if not 0 <= value < 10**9:
                raise ValueError
            filters["min_ms"] = f"{value:g}"
        except ValueError:
            error = f"Latency at least: {raw!r} is not a number of milliseconds."
    raw = query.get("before", "").strip()
    if raw:
        try:
            filters["before"] = datetime.fromisoformat(raw).isoformat()
        except ValueError:
            error = error or f"Before: {raw!r} is not a time."
    return filters, error


def _requests_page(endpoint: str, deployment: str, chosen: charts.Range, now: datetime, filters: dict) -> dict:
    """The newest requests of the range that pass the filters, PAGE_SIZE at a time, and the link to older ones."""
    records = RequestRecord.objects.filter(
        endpoint_name=endpoint, deployment_name=deployment, time__gte=now - chosen.span
    )
    status = filters["status"]
    if status == "success":
        records = records.filter(status__lt=400)
    elif status == "errors":
        records = records.filter(status__gte=400)
    elif status == "throttled":
        records = records.filter(throttled=True)
    elif status == "timed_out":
        records = records.filter(timed_out=True)
    if filters["min_ms"]:
        records = records.filter(total_ms__gte=float(filters["min_ms"]))
    if filters["before"]:
        before = datetime.fromisoformat(filters["before"])
        if timezone.is_naive(before):
            before = timezone.make_aware(before, timezone.get_current_timezone())
        records = records.filter(time__lt=before)
    page = list(records.order_by("-time", "-id")[: PAGE_SIZE + 1])
    traces = dict(
        Span.objects.filter(
            endpoint_name=endpoint,
            deployment_name=deployment,
            parent_span_id="",
            request_id__in=[r.request_id for r in page if r.request_id],
        ).values_list("request_id", "trace_id")
    )
    for record in page:
        record.trace_id = traces.get(record.request_id, "")
    older = ""
    if len(page) > PAGE_SIZE:
        page = page[:PAGE_SIZE]
        base = reverse("endpoints:monitoring", args=[endpoint, deployment])
        query = {"range": chosen.key, **{k: v for k, v in filters.items() if v}}
        query["before"] = page[-1].time.isoformat()
        older = f"{base}?{urlencode(query)}"
    return {"records": page, "older_url": older}


@login_required
@require_GET
def trace(request, endpoint: str, name: str, trace_id: str):
    """One trace of the deployment as a waterfall: the flow span, its node spans and the calls under them, each
    with its inputs and outputs (Contributors: what requests carried)."""
    deployment = get_deployment(request, endpoint, name, Action.READ_DATA)
    spans = list(
        Span.objects.filter(endpoint_name=deployment.endpoint.name, deployment_name=deployment.name, trace_id=trace_id)
    )
    if len(trace_id) != TRACE_ID_LENGTH or not spans:
        raise Http404("No such trace for this deployment.")
    rows = tracing.waterfall(spans)
    root = next((row["span"] for row in rows if row["span"].is_root), rows[0]["span"])
    context = page_context(request, deployment, "monitoring")
    context.update(
        {
            "rows": rows,
            "root": root,
            "trace_id": trace_id,
            "request_id": root.request_id,
            "total_tokens": sum(span.total_tokens or 0 for span in spans),
            "record": RequestRecord.objects.filter(
                endpoint_name=deployment.endpoint.name, deployment_name=deployment.name, request_id=root.request_id
            ).first()
            if root.request_id
            else None,
        }
    )
    return render(request, TRACE_TEMPLATE, context)


@login_required
@require_GET
def request_trace(request, endpoint: str, name: str):
    """The trace of a request id (the Test tab links each answer here): to the waterfall once its spans arrived."""
    deployment = get_deployment(request, endpoint, name, Action.READ_DATA)
    request_id = request.GET.get("request_id", "")[:128]
    found = (
        Span.objects.filter(
            endpoint_name=deployment.endpoint.name,
            deployment_name=deployment.name,
            request_id=request_id,
            parent_span_id="",
        )
        .values_list("trace_id", flat=True)
        .first()
        if request_id
        else None
    )
    if found:
        return redirect("endpoints:trace", deployment.endpoint.name, deployment.name, found)
    context = page_context(request, deployment, "monitoring")
    context.update({"rows": [], "request_id": request_id, "missing": True})
    return render(request, TRACE_TEMPLATE, context, status=404)
