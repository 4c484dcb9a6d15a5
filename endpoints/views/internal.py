"""The connection provider the instances call (endpoints/connections.py): no session, a per-start token."""

from django.http import JsonResponse
from django.views.decorators.http import require_GET

from endpoints.connections import allowed_caller, instance_for, resolve, secrets_refusal, token_from
from endpoints.models import Instance
from workspace.connections import in_project, to_promptflow_dict

FORBIDDEN = (
    "The connection provider answers only an instance starting on this machine, with the token of that start: "
    "this call came from another address, or its token is invalid, expired, or for an instance that no longer runs."
)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _caller(request) -> Instance | None:
    if not allowed_caller(request.META):
        return None
    return instance_for(token_from(request.headers.get("Authorization", "")))


@require_GET
def connection_provider_get(request, name: str):
    """promptflow's HttpConnectionProvider asks here for one connection, by the name the flow uses."""
    instance = _caller(request)
    if instance is None:
        return _error(403, "Forbidden", FORBIDDEN)
    refusal = secrets_refusal(instance)
    if refusal:
        return _error(403, "AuthorizationFailed", refusal)
    deployment = instance.deployment
    target = resolve(deployment.flow_version, deployment.connection_overrides, name)
    project = deployment.endpoint.project_id  # the flow's too (endpoints/services.py)
    connection = in_project(project).filter(name=target).first() if target else None
    if connection is None:
        return _error(404, "NotFound", f"Connection {name!r} is not available to this deployment.")
    payload = to_promptflow_dict(connection)
    payload["name"] = name  # the override answers under the name the flow asks for
    return JsonResponse(payload)


@require_GET
def connection_provider_list(request):
    instance = _caller(request)
    if instance is None:
        return _error(403, "Forbidden", FORBIDDEN)
    refusal = secrets_refusal(instance)
    if refusal:
        return _error(403, "AuthorizationFailed", refusal)
    names = instance.deployment.flow_version.connection_names()
    return JsonResponse([{"name": n} for n in names], safe=False)
