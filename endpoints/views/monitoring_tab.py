"""A deployment's Monitoring tab: charts of its requests (per minute by status, latency percentiles, errors) and
of its instances (CPU, memory) over the last hour, day or week, and the list of its recent requests."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from endpoints.views.common import get_deployment, page_context
from monitoring import charts
from monitoring.models import RequestRecord

TEMPLATE = "endpoints/deployment_monitoring.html"
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
    older = ""
    if len(page) > PAGE_SIZE:
        page = page[:PAGE_SIZE]
        base = reverse("endpoints:monitoring", args=[endpoint, deployment])
        query = {"range": chosen.key, **{k: v for k, v in filters.items() if v}}
        query["before"] = page[-1].time.isoformat()
        older = f"{base}?{urlencode(query)}"
    return {"records": page, "older_url": older}
