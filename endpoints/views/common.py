"""What every deployment page needs: the deployment fetched through the access rule (workspace/access.py: 404
when the user is no member of its project, 403 when the role is too low), the user's rights, the tab header."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse

from endpoints.models import Deployment, Endpoint, Provider
from workspace import access, azure, projects
from workspace.access import Action

TABS = (("detail", "Details"), ("test", "Test"), ("consume", "Consume"), ("monitoring", "Monitoring"), ("logs", "Logs"))
KEY_LABELS = {"primary": "Primary key", "secondary": "Secondary key"}


def get_deployment(request: HttpRequest, endpoint: str, name: str, action: Action = Action.VIEW) -> Deployment:
    """The deployment if the user may do `action` on it: 404 when it is missing or in a project the user is no
    member of, 403 when their role there is too low."""
    deployments = Deployment.objects.select_related("endpoint", "flow_version__flow", "created_by")
    return projects.fetch(request, action, deployments, "endpoint__project", endpoint__name=endpoint, name=name)


def get_polled_deployment(
    request: HttpRequest, endpoint: str, name: str, action: Action = Action.VIEW
) -> Deployment | HttpResponse:
    """The deployment of a page that polls; when it was deleted meanwhile, an htmx poll is sent to the list
    (a 404 would not be swapped, and the poll would go on)."""
    try:
        return get_deployment(request, endpoint, name, action)
    except Http404:
        if not request.htmx:
            raise
        return HttpResponse(headers={"HX-Redirect": reverse("endpoints:list")})


def get_endpoint(request: HttpRequest, name: str, action: Action = Action.VIEW) -> Endpoint:
    return projects.fetch(request, action, Endpoint.objects.all(), name=name)


def page_context(request: HttpRequest, deployment: Deployment, tab: str) -> dict:
    """The header and tab bar of a deployment page (templates/endpoints/_deployment_page.html)."""
    endpoint = deployment.endpoint
    return {
        "deployment": deployment,
        "endpoint": endpoint,
        "flow_version": deployment.flow_version,
        "tab": tab,
        "tabs": TABS,
        "scoring_url": endpoint.scoring_uri,
        "swagger_url": endpoint.swagger_uri,
        "can_change_endpoint": access.can(request.user, Action.DEPLOY, endpoint),
        "can_change_deployment": access.can(request.user, Action.DEPLOY, endpoint),
        "can_delete_deployment": access.can(request.user, Action.DELETE, endpoint),
        "can_delete_endpoint": access.can(request.user, Action.DELETE, endpoint),
        "can_read_keys": access.can(request.user, Action.READ_KEYS, endpoint),
        "can_read_data": access.can(request.user, Action.READ_DATA, endpoint),
        "on_azure": endpoint.provider == Provider.AZUREML,
        "azure_workspace": azure.project_workspace(endpoint.project) if endpoint.provider == Provider.AZUREML else None,
    }
