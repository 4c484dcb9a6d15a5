"""The Consume tab: the REST endpoint, the keys (masked, revealed one at a time, regenerated after a
confirmation) or a token for token-based endpoints, and code samples filled in for this deployment.

Keys and tokens need READ_KEYS on the endpoint's project (Contributor or Owner, workspace/access.py); a Reader
sees the URL and the samples, and a note instead of the keys. A key never appears in the page's HTML: Show
fetches it from the key URL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from endpoints import samples, services
from endpoints.models import AuthType, Deployment, Endpoint
from endpoints.views.common import KEY_LABELS, get_deployment, get_endpoint, page_context
from endpoints.views.endpoint_page import endpoint_context
from workspace.access import Action

TEMPLATE = "endpoints/deployment_consume.html"
CREDENTIALS = "endpoints/_credentials.html"


@login_required
@require_GET
def consume(request, endpoint: str, name: str):
    return render(request, TEMPLATE, _tab_context(request, get_deployment(request, endpoint, name)))


@login_required
@require_GET
@never_cache
def key(request, endpoint: str, which: str):
    """One key: the revealed row for htmx (or the masked one again with ?hide=1), the bare key otherwise
    (what Copy fetches, and what a browser without JavaScript shows)."""
    target = _key_endpoint(request, endpoint, which, Action.READ_KEYS)
    if request.htmx:
        context = {"endpoint": target, "which": which, "label": KEY_LABELS[which]}
        if request.GET.get("hide") != "1":
            context["value"] = services.credentials(target)[f"{which}Key"]
        return render(request, f"{CREDENTIALS}#key_value", context)
    return HttpResponse(services.credentials(target)[f"{which}Key"], content_type="text/plain; charset=utf-8")


@login_required
@require_http_methods(["GET", "POST"])
def regenerate_key(request, endpoint: str, which: str):
    target = _key_endpoint(request, endpoint, which, Action.DEPLOY)
    back = _next_url(request, target)
    if request.method == "POST":
        services.regenerate_key(target, which, user=request.user)
        messages.success(request, f"The {which} key of endpoint {target.name} was regenerated.")
        return redirect(back)
    context = {
        "title": f"Regenerate {which} key",
        "question": f"Regenerate the {which} key of endpoint {target.name}?",
        "losses": [
            f"The current {which} key: every client that sends it gets 401 Unauthorized within a second. "
            "Give them the new key from the Consume tab.",
        ],
        "action": request.path,
        "button": f"Regenerate {which} key",
        "cancel": back,
        "next": back,
        "danger": True,
    }
    return render(request, "endpoints/confirm.html", context)


@login_required
@require_POST
@never_cache
def token(request, endpoint: str):
    """Issue a token for a token-based endpoint: its fragment for htmx, the whole Consume tab otherwise."""
    target = get_endpoint(request, endpoint, Action.READ_KEYS)
    if target.auth_type != AuthType.TOKEN:
        raise Http404(f"Endpoint {target.name} uses keys, not tokens.")
    issued = services.issue_token(target)
    context = {
        "endpoint": target,
        "token": issued["accessToken"],
        "expires_at": _utc(issued["expiryTimeUtc"]),
        "refresh_after": _utc(issued["refreshAfterTimeUtc"]),
    }
    if request.htmx:
        return render(request, f"{CREDENTIALS}#token", context)
    deployments = target.deployments.order_by("name")  # the page the form was on, without JavaScript
    name = request.POST.get("deployment", "")
    deployment = deployments.filter(name=name).first() or (deployments.first() if name else None)
    if deployment is None:
        return render(request, "endpoints/endpoint.html", {**endpoint_context(request, target), **context})
    return render(request, TEMPLATE, {**_tab_context(request, deployment), **context})


def _tab_context(request, deployment: Deployment) -> dict:
    endpoint, flow_version = deployment.endpoint, deployment.flow_version
    context = page_context(request, deployment, "consume")
    context.update(
        samples=samples.render_samples(endpoint, deployment, flow_version),
        input_names=list(samples.example_inputs(flow_version)),
        placeholder=samples.credential_placeholder(endpoint),
        key_env=samples.credential_env(endpoint),
        key_rows=list(KEY_LABELS.items()),
        is_token_endpoint=endpoint.auth_type == AuthType.TOKEN,
    )
    return context


def _key_endpoint(request, name: str, which: str, action: Action) -> Endpoint:
    target = get_endpoint(request, name, action)
    if which not in KEY_LABELS:
        raise Http404("A key is 'primary' or 'secondary'.")
    if target.auth_type != AuthType.KEY:
        raise Http404(f"Endpoint {target.name} uses tokens, not keys.")
    return target


def _next_url(request, target: Endpoint) -> str:
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return wanted
    deployment = target.deployments.order_by("name").first()
    if deployment is None:
        return reverse("endpoints:endpoint", args=[target.name])
    return reverse("endpoints:consume", args=[target.name, deployment.name])


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)
