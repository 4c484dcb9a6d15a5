from django.http import Http404, JsonResponse
from django.views.decorators.http import require_GET

from endpoints.connections import deployment_id_from, resolve
from endpoints.models import Deployment
from workspace.connections import to_promptflow_dict
from workspace.models import Connection


def _deployment(token: str) -> Deployment:
    deployment_id = deployment_id_from(token)
    deployment = Deployment.objects.select_related("flow_version").filter(pk=deployment_id).first()
    if deployment is None:
        raise Http404("Unknown deployment.")
    return deployment


@require_GET
def connection_provider_get(request, token: str, name: str):
    """promptflow's HttpConnectionProvider asks here for one connection, by the name the flow uses."""
    deployment = _deployment(token)
    target = resolve(deployment.flow_version, deployment.connection_overrides, name)
    connection = Connection.objects.filter(name=target).first() if target else None
    if connection is None:
        return JsonResponse({"error": f"Connection {name!r} is not available to this deployment."}, status=404)
    payload = to_promptflow_dict(connection)
    payload["name"] = name  # the override answers under the name the flow asks for
    return JsonResponse(payload)


@require_GET
def connection_provider_list(request, token: str):
    deployment = _deployment(token)
    names = deployment.flow_version.connection_names()
    return JsonResponse([{"name": n} for n in names], safe=False)
