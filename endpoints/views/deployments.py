"""The Deployments list and a deployment's Details tab with its actions: traffic, scale, delete."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from endpoints import details as details_info
from endpoints import listing, services
from endpoints.models import Deployment, DeploymentState, Endpoint
from endpoints.views.common import get_deployment, get_endpoint, get_polled_deployment, page_context, require
from workspace import notifications


@login_required
@require_GET
def deployment_list(request):
    query = request.GET.get("q", "").strip()
    state = request.GET.get("state", "")
    endpoints = listing.endpoints_with_deployments(query=query, state=state)
    context = {
        "endpoints": endpoints,
        "query": query,
        "state": state,
        "states": listing.STATE_FILTERS,
        "busy": listing.any_busy(endpoints),
    }
    template = "endpoints/deployments.html"
    if request.htmx and not request.htmx.boosted:
        template += "#rows"
    return render(request, template, context)


def _details_context(request, deployment: Deployment, **extra) -> dict:
    context = page_context(request, deployment, "detail")
    events, events_total = details_info.latest_events(deployment)
    context.update(
        events=events,
        events_total=events_total,
        instances=details_info.instance_rows(deployment),
        healthy=details_info.healthy_count(deployment),
        connections=details_info.connection_rows(deployment),
        traffic_rows=details_info.traffic_rows(deployment.endpoint),
        **extra,
    )
    context.setdefault("instance_count", deployment.instance_count)
    return context


@login_required
@require_GET
def details(request, endpoint: str, name: str):
    deployment = get_polled_deployment(request, endpoint, name)
    if isinstance(deployment, HttpResponse):
        return deployment
    template = "endpoints/deployment_details.html"
    if request.htmx and not request.htmx.boosted:
        template += "#" + (request.GET.get("part") if request.GET.get("part") in ("traffic",) else "status")
    return render(request, template, _details_context(request, deployment))


def _message(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return " ".join(m for messages_ in exc.message_dict.values() for m in messages_)
    return " ".join(exc.messages)


@login_required
@require_POST
def traffic(request, endpoint: str):
    """Update traffic: live weights (must sum to 100) and mirror traffic. The first POST shows what changes;
    the one with `confirm` applies it."""
    require(request, "endpoints.change_endpoint")
    target = get_endpoint(endpoint)
    deployment = get_deployment(endpoint, request.POST.get("deployment", ""))
    names = list(target.deployments.exclude(state=DeploymentState.DELETING).values_list("name", flat=True))
    live, mirror, errors = details_info.parse_traffic(request.POST, names)
    posted = {name: (request.POST.get(f"traffic-{name}", ""), request.POST.get(f"mirror-{name}", "")) for name in names}
    if not errors:
        try:
            live, mirror = services.clean_traffic(target, live, mirror)
        except ValidationError as exc:
            errors.append(_message(exc))
    if errors:
        return _traffic_answer(request, deployment, 422, traffic_errors=errors, posted_traffic=posted)
    changes = details_info.traffic_changes(target, live, mirror)
    if not changes:
        return _traffic_answer(request, deployment, 200, traffic_saved="Nothing to update: the split is the same.")
    if "confirm" not in request.POST:
        return _traffic_answer(request, deployment, 200, traffic_confirm=changes, posted_traffic=posted)
    services.set_traffic(target, live, mirror, user=request.user)
    split = ", ".join(f"{n} {p}%" for n, p in target.traffic.items()) or "none"
    message = f"Traffic of {target.name} updated: {split}."
    if request.htmx:
        return _traffic_answer(request, deployment, 200, traffic_saved=message)
    messages.success(request, message)
    return redirect(deployment.get_absolute_url())


def _traffic_answer(request, deployment: Deployment, status: int, **extra):
    template = "endpoints/deployment_details.html" + ("#traffic" if request.htmx else "")
    return render(request, template, _details_context(request, deployment, **extra), status=status)


@login_required
@require_POST
def scale(request, endpoint: str, name: str):
    """Scale: roll out the same flow version with another instance count, after a confirmation."""
    require(request, "endpoints.change_deployment")
    deployment = get_deployment(endpoint, name)
    raw = request.POST.get("instance_count", "")
    try:
        count = services.check_scale(deployment, raw)
    except ValidationError as exc:
        return _scale_error(request, deployment, _message(exc), raw)
    if count == deployment.instance_count and deployment.state == DeploymentState.SUCCEEDED:
        return _scale_error(request, deployment, f"The deployment already runs {count} instance(s).", raw)
    if "confirm" not in request.POST:
        context = {
            "title": f"Scale deployment {deployment.name}",
            "question": f"Scale {deployment} from {deployment.instance_count} to {count} instance(s)?",
            "losses_title": "What happens:",
            "losses": details_info.scale_consequences(deployment, count),
            "action": reverse("endpoints:scale", args=[endpoint, name]),
            "hidden": [("instance_count", count), ("confirm", "1")],
            "button": "Scale",
            "cancel": deployment.get_absolute_url(),
        }
        return render(request, "endpoints/confirm.html", context)
    try:
        updated = services.create_or_update_deployment(
            deployment.endpoint, deployment.name, deployment.flow_version, user=request.user, instance_count=count
        )
    except ValidationError as exc:
        return _scale_error(request, deployment, _message(exc), raw)
    notifications.notify(
        request.user,
        "Prompt flow deployment",
        f"Scaling {updated} to {count} instance(s): provisioning started.",
        link=updated.get_absolute_url(),
        level="running",
    )
    messages.success(request, f"Scaling {updated} to {count} instance(s).")
    return redirect(updated.get_absolute_url())


def _scale_error(request, deployment: Deployment, error: str, typed: str):
    context = _details_context(request, deployment, scale_error=error, instance_count=typed)
    return render(request, "endpoints/deployment_details.html", context, status=422)


@login_required
@require_http_methods(["GET", "POST"])
def delete_deployment(request, endpoint: str, name: str):
    require(request, "endpoints.delete_deployment")
    deployment = get_deployment(endpoint, name)
    error = ""
    if request.method == "POST":
        try:
            services.delete_deployment(deployment, user=request.user)
        except ValidationError as exc:
            error = _message(exc)
        else:
            messages.success(request, f"Deleting {deployment}. The bell tells you when it is gone.")
            return redirect("endpoints:list")
    context = {
        "title": f"Delete deployment {deployment.name}",
        "question": f"Delete deployment {deployment.name} of endpoint {deployment.endpoint.name}?",
        "losses": details_info.deployment_losses(deployment),
        "action": reverse("endpoints:delete_deployment", args=[endpoint, name]),
        "button": "Delete deployment",
        "cancel": deployment.get_absolute_url(),
        "danger": True,
        "error": error,
    }
    return render(request, "endpoints/confirm.html", context, status=422 if error else 200)


@login_required
@require_http_methods(["GET", "POST"])
def delete_endpoint(request, endpoint: str):
    require(request, "endpoints.delete_endpoint")
    target: Endpoint = get_endpoint(endpoint)
    if request.method == "POST":
        services.delete_endpoint(target, user=request.user)
        messages.success(request, f"Deleting endpoint {target.name}. The bell tells you when it is gone.")
        return redirect("endpoints:list")
    first = target.deployments.order_by("name").first()
    context = {
        "title": f"Delete endpoint {target.name}",
        "question": f"Delete endpoint {target.name} and everything deployed to it?",
        "losses": details_info.endpoint_losses(target),
        "action": reverse("endpoints:delete_endpoint", args=[endpoint]),
        "button": "Delete endpoint",
        "cancel": first.get_absolute_url() if first else reverse("endpoints:list"),
        "danger": True,
    }
    return render(request, "endpoints/confirm.html", context)
