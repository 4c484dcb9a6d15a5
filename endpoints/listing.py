"""The Deployments list: every endpoint with its deployments, filtered and searched, in a few queries."""

from __future__ import annotations

from django.db.models import Count, F, Prefetch, Q, QuerySet

from endpoints.models import ACTIVE_STATES, Deployment, DeploymentState, Endpoint, InstanceState

STATE_FILTERS = [("", "All states"), *[(s.value, s.label) for s in DeploymentState]]


# Only what a row shows: flow versions carry large JSON (nodes, inputs) that the list never reads.
ROW_FIELDS = (
    "endpoint_id",
    "name",
    "state",
    "phase",
    "vm_size",
    "instance_count",
    "live_generation",
    "created_at",
    "created_by__username",
    "flow_version__version",
    "flow_version__flow__name",
)


def _deployments(query: str, state: str) -> QuerySet[Deployment]:
    rows = (
        Deployment.objects.select_related("flow_version__flow", "created_by")
        .only(*ROW_FIELDS)
        .annotate(
            healthy=Count(
                "instances",
                filter=Q(instances__state=InstanceState.READY, instances__generation=F("live_generation")),
            )
        )
    )
    if state:
        rows = rows.filter(state=state)
    if query:
        rows = rows.filter(
            Q(name__icontains=query) | Q(endpoint__name__icontains=query) | Q(flow_version__flow__name__icontains=query)
        )
    return rows.order_by("name")


def endpoints_with_deployments(query: str = "", state: str = "") -> list[Endpoint]:
    """Endpoints whose name or whose deployments match; each carries `.shown` (its matching deployments)."""
    shown = _deployments(query, state)
    endpoints = Endpoint.objects.select_related("created_by").prefetch_related(
        Prefetch("deployments", queryset=shown, to_attr="shown")
    )
    if state:
        endpoints = endpoints.filter(deployments__state=state)
    if query:
        endpoints = endpoints.filter(
            Q(name__icontains=query)
            | Q(deployments__name__icontains=query)
            | Q(deployments__flow_version__flow__name__icontains=query)
        )
    if state or query:
        endpoints = endpoints.distinct()
    endpoints = list(endpoints.order_by("name"))
    for endpoint in endpoints:
        for deployment in endpoint.shown:
            deployment.traffic_percent = endpoint.traffic.get(deployment.name, 0)
            deployment.mirror_percent = endpoint.mirror_traffic.get(deployment.name, 0)
    return endpoints


def any_busy(endpoints: list[Endpoint]) -> bool:
    return any(e.deleting or any(d.state in ACTIVE_STATES for d in e.shown) for e in endpoints)
