"""What every deployment page needs: the deployment (or 404), the rights of the user, the tab header."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse

from endpoints.models import Deployment, Endpoint

TABS = (("detail", "Details"), ("test", "Test"), ("consume", "Consume"), ("logs", "Logs"))
KEY_LABELS = {"primary": "Primary key", "secondary": "Secondary key"}


def can(user, permission: str) -> bool:
    """Changes need staff or the model's Django permission, as in the JSON API."""
    return user.is_authenticated and (user.is_staff or user.has_perm(permission))


def require(request: HttpRequest, permission: str) -> None:
    if not can(request.user, permission):
        raise PermissionDenied(f"You need the {permission!r} permission to do this.")


def get_deployment(endpoint: str, name: str) -> Deployment:
    deployments = Deployment.objects.select_related("endpoint", "flow_version__flow", "created_by")
    return get_object_or_404(deployments, endpoint__name=endpoint, name=name)


def get_polled_deployment(request: HttpRequest, endpoint: str, name: str) -> Deployment | HttpResponse:
    """The deployment of a page that polls; when it was deleted meanwhile, an htmx poll is sent to the list
    (a 404 would not be swapped, and the poll would go on)."""
    try:
        return get_deployment(endpoint, name)
    except Http404:
        if not request.htmx:
            raise
        return HttpResponse(headers={"HX-Redirect": reverse("endpoints:list")})


def get_endpoint(name: str) -> Endpoint:
    return get_object_or_404(Endpoint, name=name)


def gateway_url(path: str) -> str:
    return f"{settings.FLOWDEPLOY_GATEWAY_URL}{path}"


def page_context(request: HttpRequest, deployment: Deployment, tab: str) -> dict:
    """The header and tab bar of a deployment page (templates/endpoints/_deployment_page.html)."""
    endpoint = deployment.endpoint
    return {
        "deployment": deployment,
        "endpoint": endpoint,
        "flow_version": deployment.flow_version,
        "tab": tab,
        "tabs": TABS,
        "scoring_url": gateway_url(endpoint.scoring_path),
        "swagger_url": gateway_url(endpoint.swagger_path),
        "can_change_endpoint": can(request.user, "endpoints.change_endpoint"),
        "can_change_deployment": can(request.user, "endpoints.change_deployment"),
        "can_delete_deployment": can(request.user, "endpoints.delete_deployment"),
        "can_delete_endpoint": can(request.user, "endpoints.delete_endpoint"),
    }
