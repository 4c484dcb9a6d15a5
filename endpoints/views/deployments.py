"""The Deployments list and a deployment's Details tab with its actions: traffic, scale, delete."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from endpoints import details as details_info
from endpoints import listing, services
from endpoints.models import Deployment, DeploymentState, Endpoint
from endpoints.views.common import (
    TABS,
    get_deployment,
    get_endpoint,
    get_polled_deployment,
    page_context,
)
from monitoring import services as collection
from workspace import access
from workspace.access import Action


@login_required
@require_GET
def deployment_list(request):
    query = request.GET.get("q", "").strip()
    state = request.GET.get("state", "")
    endpoints = listing.endpoints_with_deployments(query=query, state=state)
    endpoints = [endpoint for endpoint in endpoints if access.can(request.user, Action.VIEW, endpoint)]
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
    endpoint = deployment.endpoint
    posted = extra.pop("posted_traffic", None)
    context.update(
        events=events,
        events_total=events_total,
        instances=details_info.instance_rows(deployment),
        healthy=details_info.healthy_count(deployment),
        connections=details_info.connection_rows(deployment),
        traffic_rows=details_info.traffic_rows(endpoint, posted, extra.get("field_errors")),
        traffic_signature=details_info.traffic_signature(endpoint),
        scale_signature=_scale_signature(deployment),
        max_instances=settings.FLOWDEPLOY_MAX_INSTANCES,
        collection_policy=collection.policy_for(endpoint.name, deployment.name),
        **extra,
    )
    context.setdefault("instance_count", deployment.instance_count)
    return context


def _scale_signature(deployment: Deployment) -> str:
    return f"{deployment.state}-{deployment.instance_count}"


@login_required
@require_GET
def details(request, endpoint: str, name: str):
    """The Details tab. Its htmx parts: `#status`, which polls while the deployment is busy and brings along the
    page's header (state badge, banner) and, when they changed, the traffic and scale sections; `?part=head`,
    the header the other tabs poll; `?part=traffic`, the traffic section again (Cancel of an update)."""
    deployment = get_polled_deployment(request, endpoint, name)
    if isinstance(deployment, HttpResponse):
        return deployment
    if not request.htmx or request.htmx.boosted:
        return render(request, "endpoints/deployment_details.html", _details_context(request, deployment))
    part = request.GET.get("part")
    if part == "head":
        tab = request.GET.get("tab")
        context = page_context(request, deployment, tab if tab in dict(TABS) else "detail")
        return render(request, "endpoints/_deployment_page.html#head", context)
    context = _details_context(request, deployment)
    if part == "traffic":
        return render(request, "endpoints/deployment_details.html#traffic", context)
    context.update(
        polled=True,
        refresh_traffic=request.GET.get("traffic_seen") != context["traffic_signature"],
        refresh_scale=request.GET.get("scale_seen") != context["scale_signature"],
    )
    return render(request, "endpoints/deployment_details.html#status", context)


def _message(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return " ".join(m for messages_ in exc.message_dict.values() for m in messages_)
    return " ".join(exc.messages)


@login_required
@require_POST
def traffic(request, endpoint: str):
    """Update traffic: live weights (must sum to 100) and mirror traffic. The first POST shows what changes;
    the one with `confirm` applies it. Every problem shows at once, each beside its deployment's field."""
    target = get_endpoint(request, endpoint, Action.DEPLOY)
    deployment = get_deployment(request, endpoint, request.POST.get("deployment", ""))
    names = list(target.deployments.exclude(state=DeploymentState.DELETING).values_list("name", flat=True))
    posted = details_info.posted_traffic(request.POST, names)
    try:
        live, mirror = services.clean_traffic(
            target, {n: t for n, (t, _) in posted.items()}, {n: m for n, (_, m) in posted.items()}
        )
    except ValidationError as exc:
        errors = details_info.traffic_errors(exc)
        return _traffic_answer(
            request,
            deployment,
            422,
            traffic_errors=errors.get("__all__", []),
            field_errors=errors,
            posted_traffic=posted,
        )
    changes = details_info.traffic_changes(target, live, mirror)
    if not changes:
        return _traffic_answer(request, deployment, 200, traffic_saved="Nothing to update: the split is the same.")
    if "confirm" not in request.POST:
        return _traffic_answer(request, deployment, 200, traffic_confirm=changes, confirm_traffic=posted)
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
    deployment = get_deployment(request, endpoint, name, Action.DEPLOY)
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
        updated = services.scale_deployment(deployment, count, user=request.user)
    except ValidationError as exc:
        return _scale_error(request, deployment, _message(exc), raw)
    messages.success(request, f"Scaling {updated} to {count} instance(s).")
    return redirect(updated.get_absolute_url())


def _scale_error(request, deployment: Deployment, error: str, typed: str):
    """The Details tab again, with the error beside the Instance count, which is focused and scrolled to."""
    context = _details_context(request, deployment, scale_error=error, instance_count=typed)
    return render(request, "endpoints/deployment_details.html", context, status=422)


@login_required
@require_http_methods(["GET", "POST"])
def delete_deployment(request, endpoint: str, name: str):
    """Delete a deployment after a confirmation; one that still gets traffic is refused up front, as on Azure,
    with what to do instead, and no Delete button."""
    deployment = get_deployment(request, endpoint, name, Action.DELETE)
    blocked = services.deployment_delete_problem(deployment)
    if request.method == "POST" and not blocked:
        try:
            services.delete_deployment(deployment, user=request.user)
        except ValidationError as exc:
            blocked = _message(exc)
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
        "blocked": blocked,
        "blocked_link": (f"{deployment.get_absolute_url()}#traffic", "Go to Traffic allocation"),
    }
    status = 422 if blocked and request.method == "POST" else 200
    return render(request, "endpoints/confirm.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def delete_endpoint(request, endpoint: str):
    target: Endpoint = get_endpoint(request, endpoint, Action.DELETE)
    if request.method == "POST":
        services.delete_endpoint(target, user=request.user)
        messages.success(request, f"Deleting endpoint {target.name}. The bell tells you when it is gone.")
        return redirect("endpoints:list")
    context = {
        "title": f"Delete endpoint {target.name}",
        "question": f"Delete endpoint {target.name} and everything deployed to it?",
        "losses": details_info.endpoint_losses(target),
        "action": reverse("endpoints:delete_endpoint", args=[endpoint]),
        "button": "Delete endpoint",
        "cancel": _safe_next(request) or reverse("endpoints:endpoint", args=[target.name]),
        "danger": True,
    }
    return render(request, "endpoints/confirm.html", context)


def _safe_next(request) -> str:
    wanted = request.GET.get("next", "")
    if url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return wanted
    return ""
