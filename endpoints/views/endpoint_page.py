"""An endpoint's own page: its properties, how to call it (URL, keys or token), its traffic and deployments,
and its actions (Deploy a flow to it, Delete endpoint). An endpoint without deployments has only this page.
An endpoint on Azure ML also shows the role assignments its identity needs on Azure, which an Owner can grant
from here (endpoints/providers/azureml/roles.py)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from endpoints.models import AuthType, DeploymentState, Endpoint, Provider
from endpoints.providers import ProviderError
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
    context = endpoint_context(request, target)
    if target.provider == Provider.AZUREML and not target.deleting:
        context["azure_roles"] = azure_roles(request, target)
    return render(request, template, context)


def azure_roles(request: HttpRequest, endpoint: Endpoint) -> dict:
    """The "Role assignments on Azure" card: the roles the identity needs there and the `az` commands, or
    Azure's message when they cannot be read; whether the user may grant them."""
    from endpoints.providers.azureml import roles

    card: dict = {"can_grant": access.can(request.user, Action.MANAGE_ACCESS, endpoint)}
    try:
        card["requirements"] = roles.required(endpoint)
        card["commands"] = roles.commands(endpoint, card["requirements"])
        card["commands_text"] = "\n".join(card["commands"])
    except ProviderError as exc:
        card["error"] = str(exc)
    return card


@login_required
@require_POST
def grant_azure_roles(request: HttpRequest, endpoint: str) -> HttpResponse:
    """Grant on Azure: an Owner makes the role assignments the endpoint's identity needs there; what was granted,
    or Azure's refusal, comes back as a message on the endpoint's page."""
    target = get_endpoint(request, endpoint, Action.MANAGE_ACCESS)
    if target.provider != Provider.AZUREML:
        messages.error(request, f"Endpoint {target.name} runs on this machine: it has no role assignments on Azure.")
        return redirect("endpoints:endpoint", target.name)
    from endpoints.providers.azureml import roles

    try:
        done = roles.grant(target, request.user)
    except ProviderError as exc:
        messages.error(request, str(exc))
    else:
        summary = "; ".join(done) or "nothing to grant, Azure grants what the identity needs itself"
        messages.success(request, f"Role assignments on Azure for endpoint {target.name}: {summary}.")
    return redirect("endpoints:endpoint", target.name)
