"""What the Details tab shows and checks: instances, connections, the traffic editor, what a delete loses."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.http import QueryDict

from endpoints.connections import resolve
from endpoints.models import LIVE_INSTANCE_STATES, Deployment, DeploymentState, Endpoint, InstanceState, Provider


@dataclass
class TrafficRow:
    name: str
    state: str
    traffic: int | str
    mirror: int | str
    traffic_errors: list[str] = field(default_factory=list)
    mirror_errors: list[str] = field(default_factory=list)


def traffic_rows(
    endpoint: Endpoint, posted: dict[str, tuple[str, str]] | None = None, errors: dict[str, list[str]] | None = None
) -> list[TrafficRow]:
    """A row per deployment: its share now, or what was posted, with the errors about its fields."""
    posted, errors = posted or {}, errors or {}
    rows = endpoint.deployments.exclude(state=DeploymentState.DELETING).order_by("name").values_list("name", "state")
    result = []
    for name, state in rows:
        traffic, mirror = posted.get(name, (endpoint.traffic.get(name, 0), endpoint.mirror_traffic.get(name, 0)))
        result.append(
            TrafficRow(
                name, state, traffic, mirror, errors.get(f"traffic-{name}", []), errors.get(f"mirror-{name}", [])
            )
        )
    return result


def traffic_signature(endpoint: Endpoint) -> str:
    """Changes when what the traffic table shows changes (a share, a deployment or its state): a page that
    polls replaces its table only then, so a table being edited is not replaced for nothing."""
    rows = endpoint.deployments.exclude(state=DeploymentState.DELETING).order_by("name").values_list("name", "state")
    text = json.dumps([list(rows), endpoint.traffic, endpoint.mirror_traffic], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def posted_traffic(data: QueryDict, names: list[str]) -> dict[str, tuple[str, str]]:
    """The `traffic-<name>` and `mirror-<name>` fields as typed (an empty one means 0)."""
    return {
        name: ((data.get(f"traffic-{name}") or "0").strip(), (data.get(f"mirror-{name}") or "0").strip())
        for name in names
    }


def traffic_errors(exc: ValidationError) -> dict[str, list[str]]:
    """The services' traffic errors by field of the table: `traffic-<name>` or `mirror-<name>` for a problem
    with one deployment's share, `__all__` for the others (the sum, an unknown deployment)."""
    if not hasattr(exc, "error_dict"):
        return {"__all__": exc.messages}
    errors: dict[str, list[str]] = {}
    for api_field, found in exc.error_dict.items():
        prefix = "mirror" if api_field == "mirror_traffic" else "traffic"
        for error in found:
            deployment = (error.params or {}).get("deployment")
            key = f"{prefix}-{deployment}" if deployment else "__all__"
            errors.setdefault(key, []).extend(error.messages)
    return errors


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
    if deployment.endpoint.provider == Provider.AZUREML:
        lines = [
            f"Azure ML updates deployment {deployment.name} to {count} instance(s) of {deployment.vm_size}, "
            "rolling: it keeps serving while instances are added or removed.",
            "Azure checks the subscription's quota for the new count; a refusal fails the update with its message.",
        ]
        return lines + _capacity_line(deployment, count)
    current = deployment.instances.filter(generation=deployment.live_generation, state__in=LIVE_INSTANCE_STATES).count()
    lines = [
        f"{count} new instance(s) of {deployment.vm_size} start with flow {deployment.flow_version}; "
        "the traffic moves to them once they answer.",
        f"The {current} current instance(s) stop after finishing the requests in flight; their logs are removed.",
    ]
    return lines + _capacity_line(deployment, count)


def _capacity_line(deployment: Deployment, count: int) -> list[str]:
    if count >= deployment.instance_count:
        return []
    per = deployment.max_concurrent_requests_per_instance
    return [
        f"Capacity: at most {count * per} requests at once instead of {deployment.instance_count * per}; "
        "more answer 429."
    ]


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
    if deployment.endpoint.provider == Provider.AZUREML:
        losses = [
            f"Deployment {deployment.name} (flow {deployment.flow_version}) and its settings.",
            f"The managed online deployment on Azure ML with its {deployment.instance_count} instance(s) and their "
            "logs; its traffic goes to 0 on Azure first. The model and environment stay registered in the workspace.",
            "Its event history here.",
        ]
        return losses + _traffic_loss(deployment)
    count = deployment.instances.filter(state__in=LIVE_INSTANCE_STATES).count()
    losses = [
        f"Deployment {deployment.name} (flow {deployment.flow_version}) and its settings.",
        f"Its {count} running instance(s): requests in flight finish, then the processes stop.",
        "Its instance logs and its event history.",
    ]
    return losses + _traffic_loss(deployment)


def _traffic_loss(deployment: Deployment) -> list[str]:
    share = deployment.endpoint.traffic.get(deployment.name)
    if not share:
        return []
    return [
        f"The {share}% of the endpoint's traffic it receives: no other deployment serves it, so clients get "
        "503 until a deployment is added to the endpoint and given the traffic."
    ]


def endpoint_losses(endpoint: Endpoint) -> list[str]:
    names = list(endpoint.deployments.values_list("name", flat=True))
    losses = [f"Endpoint {endpoint.name}: its scoring URL answers 404 from then on."]
    if endpoint.provider == Provider.AZUREML:
        losses[0] = (
            f"Endpoint {endpoint.name} and its managed online endpoint on Azure ML: its scoring URI stops answering "
            "once Azure has deleted it (its keys work until then)."
        )
    if names:
        losses.append(f"Its {len(names)} deployment(s) ({', '.join(names)}), their instances, logs and events.")
    if endpoint.auth_type == "key":
        losses.append("Its primary and secondary keys: every client using them stops working.")
    else:
        losses.append("Every token issued for it.")
    return losses
