"""An endpoint's own page: its properties, how to call it (URL, keys or token), its traffic and deployments,
and its actions (Deploy a flow to it, Delete endpoint). An endpoint without deployments has only this page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from endpoints.models import AuthType, DeploymentState, Endpoint
from endpoints.views.common import KEY_LABELS, get_endpoint
from workspace import access
from workspace.access import Action


def endpoint_context(request, endpoint: Endpoint) -> dict:
    deployments = list(
        endpoint.deployments.exclude(state=DeploymentState.DELETING).select_related("flow_version__flow")
    )
    for deployment in deployments:
        deployment.traffic_percent = endpoint.traffic.get(deployment.name, 0)
        deployment.mirror_percent = endpoint.mirror_traffic.get(deployment.name, 0)
    return {
        "endpoint": endpoint,
        "deployments": deployments,
        "scoring_url": endpoint.scoring_uri,
        "swagger_url": endpoint.swagger_uri,
        "key_rows": list(KEY_LABELS.items()),
        "is_token_endpoint": endpoint.auth_type == AuthType.TOKEN,
        "can_change_endpoint": access.can(request.user, Action.DEPLOY, endpoint),
        "can_delete_endpoint": access.can(request.user, Action.DELETE, endpoint),
        "can_read_keys": access.can(request.user, Action.READ_KEYS, endpoint),
        "can_deploy": access.can(request.user, Action.DEPLOY, endpoint),
        "deploy_url": f"{reverse('wizard:start')}?endpoint={endpoint.name}",
    }


@login_required
@require_GET
def endpoint_page(request, endpoint: str):
    """While the endpoint is being deleted the page polls itself; once it is gone, the poll goes to the list."""
    try:
        target = get_endpoint(request, endpoint)
    except Http404:
        if not request.htmx:
            raise
        return HttpResponse(headers={"HX-Redirect": reverse("endpoints:list")})
    template = "endpoints/endpoint.html"
    if request.htmx and not request.htmx.boosted:
        template += "#live"
    return render(request, template, endpoint_context(request, target))
