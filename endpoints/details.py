"""What the Details tab shows and checks: instances, connections, the traffic editor, what a delete loses."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import QueryDict

from endpoints.connections import resolve
from endpoints.models import LIVE_INSTANCE_STATES, Deployment, DeploymentState, Endpoint, InstanceState


@dataclass
class TrafficRow:
    name: str
    state: str
    traffic: int
    mirror: int


def traffic_rows(endpoint: Endpoint) -> list[TrafficRow]:
    rows = endpoint.deployments.exclude(state=DeploymentState.DELETING).order_by("name").values_list("name", "state")
    return [
        TrafficRow(name, state, endpoint.traffic.get(name, 0), endpoint.mirror_traffic.get(name, 0))
        for name, state in rows
    ]


def parse_traffic(data: QueryDict, names: list[str]) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """`traffic-<name>` and `mirror-<name>` fields as percentages; errors name the deployment and field."""
    live: dict[str, int] = {}
    mirror: dict[str, int] = {}
    errors: list[str] = []
    for name in names:
        for prefix, label, target in (("traffic", "Traffic", live), ("mirror", "Mirror traffic", mirror)):
            raw = (data.get(f"{prefix}-{name}") or "0").strip()
            try:
                target[name] = int(raw)
            except ValueError:
                errors.append(f"{label} for {name} must be a whole number of percent, not {raw!r}.")
    if not errors and sum(live.values()) not in (0, 100):
        errors.append(f"Traffic must add up to 100%, not {sum(live.values())}%.")
    return live, mirror, errors


def traffic_changes(endpoint: Endpoint, live: dict[str, int], mirror: dict[str, int]) -> list[str]:
    """What an Update traffic changes, a line per deployment whose share moves; empty when nothing does."""
    changes = []
    for name in sorted(set(endpoint.traffic) | set(live) | set(endpoint.mirror_traffic) | set(mirror)):
        before, after = endpoint.traffic.get(name, 0), live.get(name, 0)
        if before != after:
            note = " (it stops receiving live traffic)" if after == 0 else ""
            changes.append(f"{name}: live traffic {before}% → {after}%{note}.")
        before, after = endpoint.mirror_traffic.get(name, 0), mirror.get(name, 0)
        if before != after:
            changes.append(f"{name}: mirror traffic {before}% → {after}%.")
    return changes


def scale_consequences(deployment: Deployment, count: int) -> list[str]:
    """What a Scale does and loses: new instances, the current ones stopped, capacity when scaling in."""
    current = deployment.instances.filter(generation=deployment.live_generation, state__in=LIVE_INSTANCE_STATES).count()
    lines = [
        f"{count} new instance(s) of {deployment.vm_size} start with flow {deployment.flow_version}; "
        "the traffic moves to them once they answer.",
        f"The {current} current instance(s) stop after finishing the requests in flight; their logs are removed.",
    ]
    if count < deployment.instance_count:
        per = deployment.max_concurrent_requests_per_instance
        lines.append(
            f"Capacity: at most {count * per} requests at once instead of {deployment.instance_count * per}; "
            "more answer 429."
        )
    return lines


DETAILS_EVENTS = 50


def latest_events(deployment: Deployment, limit: int = DETAILS_EVENTS) -> tuple[list, int]:
    """The last `limit` events, oldest first, and how many there are in all (a crash loop writes many)."""
    latest = list(deployment.events.order_by("-created_at", "-id")[:limit])
    total = len(latest) if len(latest) < limit else deployment.events.count()
    return latest[::-1], total


def instance_rows(deployment: Deployment) -> list:
    """The instances that serve or are being started, newest generation first."""
    return list(deployment.instances.filter(state__in=LIVE_INSTANCE_STATES).order_by("-generation", "ordinal"))


def healthy_count(deployment: Deployment) -> int:
    return deployment.instances.filter(generation=deployment.live_generation, state=InstanceState.READY).count()


def connection_rows(deployment: Deployment) -> list[tuple[str, str]]:
    """(name the flow uses, workspace connection that answers for it)."""
    version = deployment.flow_version
    return [
        (name, resolve(version, deployment.connection_overrides, name) or name) for name in version.connection_names()
    ]


def deployment_losses(deployment: Deployment) -> list[str]:
    count = deployment.instances.filter(state__in=LIVE_INSTANCE_STATES).count()
    losses = [
        f"Deployment {deployment.name} (flow {deployment.flow_version}) and its settings.",
        f"Its {count} running instance(s): requests in flight finish, then the processes stop.",
        "Its instance logs and its event history.",
    ]
    share = deployment.endpoint.traffic.get(deployment.name)
    if share:
        losses.append(f"The {share}% of the endpoint's traffic it receives: clients get 503 if nothing else serves.")
    return losses


def endpoint_losses(endpoint: Endpoint) -> list[str]:
    names = list(endpoint.deployments.values_list("name", flat=True))
    losses = [f"Endpoint {endpoint.name}: its scoring URL answers 404 from then on."]
    if names:
        losses.append(f"Its {len(names)} deployment(s) ({', '.join(names)}), their instances, logs and events.")
    if endpoint.auth_type == "key":
        losses.append("Its primary and secondary keys: every client using them stops working.")
    else:
        losses.append("Every token issued for it.")
    return losses
