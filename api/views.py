"""The JSON management API: connections, flows, online endpoints and deployments, keys, invoke.

Function views decorated with `api_view`; each one checks what it needs, calls the service that does
the work and answers with the representation of the row (api/representations.py).

What each route needs is an Action of workspace/access.py on the project that owns the object (written
in api/openapi.py too): reading needs VIEW (Reader), invoke TEST (Reader), creating and changing DEPLOY
(Contributor), deleting DELETE, keys and tokens READ_KEYS (Contributor), an instance's logs and a
deployment's export for Azure READ_DATA (Azure's Reader cannot get deployment logs either; an export holds the
flow's code and environment variables), a folder on the server's disk IMPORT_FOLDER (superuser). Lists hold
only the objects of the user's projects.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import yaml

from django.conf import settings
from django.contrib.auth import authenticate as check_password
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.http import HttpResponse

from api import representations as rep
from api.http import (
    ApiError,
    api_view,
    bad_request,
    conflict,
    field,
    find,
    not_found,
    ok,
    reject_unknown,
    validation_error,
)
from api.models import PersonalAccessToken
from api.openapi import document
from endpoints import logs as instance_logs
from endpoints import scoring, services
from endpoints.models import AuthType, Deployment, DeploymentState, Endpoint, IdentityType, Provider
from endpoints.providers import provider_for
from flows import importing
from flows.models import Flow, FlowSource, FlowVersion
from workspace import access
from workspace.access import Action
from workspace.connections import ConnectionSpec, delete_connection, parse_promptflow_yaml, save_connection
from workspace.models import Connection, Membership, Project, ProjectRole

MAX_TOKEN_DAYS = 366
MAX_LOG_LINES = 5000
LOG_CONTAINERS = ("inference-server", "storage-initializer", "events")
ENDPOINT_RENAMES = {
    "auth_type": "auth_mode",
    "identity_type": "identity.type",
    "user_assigned_identity": "identity.user_assigned_identities",
}
ENDPOINT_CREATE_FIELDS = (
    "name",
    "auth_mode",
    "description",
    "tags",
    "identity",
    "enforce_access_to_connection_secrets",
    "project",
    "provider",
)
ENDPOINT_UPDATE_FIELDS = ("name", "project", "description", "tags", "traffic", "mirror_traffic")
DEPLOYMENT_FIELDS = ("name", "endpoint_name", "flow", *services.DEPLOYMENT_DEFAULTS)


# --- authentication ------------------------------------------------------------------------------


@api_view("POST", public=True)
def token(request):
    """Exchange a username and password for a new personal access token (how `flowdeploy login` works)."""
    data = request.data
    reject_unknown(data, ("username", "password", "name", "expires_in_days"), "a token request")
    username = field(data, "username", str, required=True)
    password = field(data, "password", str, required=True)
    name = field(data, "name", str, default="flowdeploy")
    days = field(data, "expires_in_days", int)
    if days is not None and not 1 <= days <= MAX_TOKEN_DAYS:
        raise bad_request(f"expires_in_days: between 1 and {MAX_TOKEN_DAYS}.", "expires_in_days")
    user = check_password(request, username=username, password=password)
    if user is None or not user.is_active:
        raise ApiError(401, "Unauthorized", "Wrong username or password.")
    row, secret = PersonalAccessToken.issue(user, name, timedelta(days=days) if days else None)
    return ok(
        {
            "token": secret,
            "name": row.name,
            "prefix": row.prefix,
            "username": user.get_username(),
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        },
        201,
    )


@api_view("GET")
def me(request):
    user = request.user
    current = request.api_token
    return ok(
        {
            "username": user.get_username(),
            "is_staff": user.is_staff,
            "token": {"name": current.name, "prefix": current.prefix, "expires_at": rep.timestamp(current.expires_at)}
            if current
            else None,
        }
    )


@api_view("GET", public=True)
def openapi(request):
    return ok(document())


# --- projects ------------------------------------------------------------------------------------


@api_view("GET")
def projects(request):
    """The user's projects and their role in each (Owner of every project for a superuser)."""
    user = request.user
    roles = dict(Membership.objects.filter(user=user).values_list("project_id", "role"))
    rows = access.visible_projects(user).order_by("name").distinct()
    return ok(
        [
            rep.project_json(project, ProjectRole.OWNER if user.is_superuser else ProjectRole(roles[project.pk]))
            for project in rows
        ]
    )


def _target_project(request, name) -> Project:
    """Where a new flow, connection or endpoint goes: the `project` named in the body, else the user's only
    project, else "default". Not one of the user's projects: 404 naming the field; a Reader there: 403."""
    user = request.user
    mine = access.visible_projects(user)
    if name is None or name == "":
        only = list(mine.order_by("name")[:2])
        project = only[0] if len(only) == 1 else Project.default()
    elif not isinstance(name, str):
        raise bad_request("project: expected a string (the project's name).", "project")
    else:
        project = mine.filter(name=name).first()
    if project is None or access.role_in(user, project) is None:
        shown = name or (project.name if project else "")
        raise ApiError(
            404,
            "NotFound",
            f"project: you are not a member of a project named {shown!r} (GET /api/v1/projects lists yours).",
            "project",
        )
    access.require(user, Action.DEPLOY, project)
    return project


def _same_project(data: dict, current: Project, what: str) -> None:
    """`project` may be sent back as it was shown; it cannot change."""
    named = data.get("project")
    if named not in (None, current.name):
        raise bad_request(f"project: {what} belongs to project {current.name!r} and cannot move.", "project")


# --- connections ---------------------------------------------------------------------------------


def _connection(request, name: str, action: Action = Action.VIEW) -> Connection:
    missing = f"There is no connection named {name!r}."
    return find(request, action, Connection.objects.select_related("project"), missing, name=name)


def _connection_spec(data: dict) -> ConnectionSpec:
    """The body is promptflow's connection YAML as JSON; its own parser checks it and names the field."""
    return parse_promptflow_yaml(yaml.safe_dump(data, sort_keys=False))


@api_view("GET", "POST")
def connections(request):
    if request.method == "POST":
        data = dict(request.data)
        project = _target_project(request, data.pop("project", None))
        spec = _connection_spec(data)
        if Connection.objects.filter(name=spec.name).exists():
            raise conflict(f"A connection named {spec.name!r} already exists.", "name")
        created = save_connection(spec, actor=request.user, project=project)
        return ok(rep.connection_json(created), 201)
    rows = access.visible(request.user, Connection.objects.select_related("project")).order_by("name")
    return ok([rep.connection_json(c) for c in rows])


@api_view("GET", "PUT", "DELETE")
def connection(request, name: str):
    if request.method == "PUT":
        existing = _connection(request, name, Action.DEPLOY)
        _same_project(request.data, existing.project, f"connection {name}")
        data = {"name": name, "type": existing.type, **request.data}
        data.pop("project", None)
        if data["name"] != name:
            raise bad_request(f"name: the body names {data['name']!r} but the URL names {name!r}.", "name")
        spec = _connection_spec(data)
        return ok(rep.connection_json(save_connection(spec, actor=request.user, update=True)))
    if request.method == "DELETE":
        existing = _connection(request, name, Action.DELETE)
        delete_connection(existing, actor=request.user)
        return ok({"name": name, "deleted": True})
    return ok(rep.connection_json(_connection(request, name)))


# --- flows ---------------------------------------------------------------------------------------


def _flow(request, name: str, action: Action = Action.VIEW) -> Flow:
    return find(request, action, Flow.objects.select_related("project"), f"There is no flow named {name!r}.", name=name)


@api_view("GET", "POST", multipart=True)
def flows(request):
    if request.method == "POST":
        version = _import_flow(request)
        description = request.data.get("description") or request.POST.get("description")
        if description:
            Flow.objects.filter(pk=version.flow_id).update(description=str(description))
        return ok(rep.flow_version_json(version), 201)
    rows = access.visible(request.user, Flow.objects.select_related("project").prefetch_related("versions"))
    return ok([rep.flow_json(flow) for flow in rows.order_by("name") if flow.versions.all()])


def _import_flow(request) -> FlowVersion:
    """A new version of a flow of the user's (DEPLOY on its project), or a new flow in the target project."""
    if request.content_type == "multipart/form-data":
        upload = request.FILES.get("file")
        name = request.POST.get("name") or importing.default_name(getattr(upload, "name", "") or "flow.zip")
        project = _flow_project(request, _flow_name(name), request.POST.get("project"))
        if upload is None:
            raise bad_request("file: attach the flow as a zip file in the 'file' field.", "file")
        if upload.size > settings.FLOWDEPLOY_MAX_UPLOAD_BYTES:
            limit = settings.FLOWDEPLOY_MAX_UPLOAD_BYTES // (1024 * 1024)
            raise ApiError(413, "TooLarge", f"file: the zip is larger than {limit} MB.", "file")
        return importing.import_zip(
            upload, _flow_name(name), request.user, source_detail=upload.name or "", project=project
        )
    data = request.data
    reject_unknown(
        data, ("name", "path", "description", "project"), "a flow import (or send multipart with name and file)"
    )
    path = field(data, "path", str, required=True)
    folder = Path(path)
    name = _flow_name(field(data, "name", str) or importing.default_name(folder.name))
    project = _flow_project(request, name, field(data, "project", str))
    access.require(request.user, Action.IMPORT_FOLDER, project)
    if not folder.is_absolute():
        raise bad_request("path: give an absolute path to a folder on the server.", "path")
    if not folder.is_dir():
        raise bad_request(f"path: there is no folder at {path} on the server.", "path")
    return importing.import_folder(folder, name, request.user, FlowSource.FOLDER, str(folder), project=project)


def _flow_project(request, name: str, project_name) -> Project:
    """The project the import goes to: the existing flow's (DEPLOY there), or the target project for a new one."""
    existing = Flow.objects.select_related("project").filter(name=name).first()
    if existing is None:
        return _target_project(request, project_name)
    if access.role_in(request.user, existing.project) is None:
        raise conflict(f"name: a flow named {name!r} already exists in a project you are not a member of.", "name")
    access.require(request.user, Action.DEPLOY, existing.project)
    _same_project({"project": project_name or None}, existing.project, f"flow {name}")
    return existing.project


def _flow_name(name: str) -> str:
    try:
        return importing.check_flow_name(name)
    except importing.FlowImportError as exc:
        raise bad_request(exc.message, "name") from None


@api_view("GET")
def flow(request, name: str):
    found = _flow(request, name)
    return ok(rep.flow_json(found))


@api_view("GET")
def flow_version(request, name: str, version: int):
    found = _flow(request, name)
    row = found.versions.filter(version=version).first()
    if row is None:
        raise not_found(f"Flow {name!r} has no version {version}.")
    return ok(rep.flow_version_json(row))


def find_flow_version(request, reference: str, field_name: str = "flow") -> FlowVersion:
    """`name:version`, `name@latest` or `name` (latest), with an optional `azureml:` in front."""
    text = reference.strip().removeprefix("azureml:")
    name, version = text, None
    if "@" in text:
        name, label = text.split("@", 1)
        if label != "latest":
            raise bad_request(f"{field_name}: only the label 'latest' is known, not {label!r}.", field_name)
    elif ":" in text:
        name, number = text.rsplit(":", 1)
        if not number.isdigit():
            raise bad_request(f"{field_name}: give name:version with a whole number, not {reference!r}.", field_name)
        version = int(number)
    rows = FlowVersion.objects.select_related("flow").filter(flow__name=name)
    versions = access.visible(request.user, rows, "flow__project")
    found = versions.filter(version=version).first() if version else versions.order_by("-version").first()
    if found is None:
        what = f"version {version} of flow {name!r}" if version else f"flow {name!r}"
        raise bad_request(f"{field_name}: there is no {what}.", field_name)
    return found


# --- online endpoints ----------------------------------------------------------------------------


def _endpoints():
    deployments = Prefetch("deployments", queryset=Deployment.objects.order_by("name"))
    return Endpoint.objects.select_related("project").prefetch_related(deployments)


def _endpoint(request, name: str, action: Action = Action.VIEW) -> Endpoint:
    return find(request, action, _endpoints(), f"There is no online endpoint named {name!r}.", name=name)


def _identity(data: dict) -> tuple[str, str]:
    identity = field(data, "identity", dict, default={})
    reject_unknown(identity, ("type", "user_assigned_identities"), "identity")
    kind = identity.get("type") or IdentityType.SYSTEM
    if kind not in IdentityType.values:
        raise bad_request(f"identity.type: one of {', '.join(IdentityType.values)}, not {kind!r}.", "identity.type")
    chosen = identity.get("user_assigned_identities") or []
    if not isinstance(chosen, list):
        chosen = [chosen]
    ids = [item.get("resource_id", "") if isinstance(item, dict) else str(item) for item in chosen]
    if len(ids) > 1:
        raise bad_request(
            "identity.user_assigned_identities: an endpoint here has one user-assigned identity.",
            "identity.user_assigned_identities",
        )
    if ids and kind != IdentityType.USER:
        raise bad_request(
            "identity.user_assigned_identities: only for identity type user_assigned.",
            "identity.user_assigned_identities",
        )
    return kind, ids[0] if ids else ""


@api_view("GET", "POST")
def online_endpoints(request):
    if request.method == "POST":
        return _create_endpoint(request)
    rows = access.visible(request.user, _endpoints()).order_by("name")
    return ok([rep.endpoint_json(e, list(e.deployments.all())) for e in rows])


def _create_endpoint(request):
    data = request.data
    project = _target_project(request, data.get("project"))
    reject_unknown(data, ENDPOINT_CREATE_FIELDS, "an online endpoint")
    name = field(data, "name", str, required=True)
    if Endpoint.objects.filter(name=name).exists():
        raise conflict(f"An online endpoint named {name!r} already exists.", "name")
    identity_type, user_assigned = _identity(data)
    try:
        endpoint = services.create_endpoint(
            name,
            auth_type=field(data, "auth_mode", str, default=AuthType.KEY),
            identity_type=identity_type,
            user_assigned_identity=user_assigned,
            enforce_access_to_connection_secrets=field(
                data, "enforce_access_to_connection_secrets", bool, default=True
            ),
            tags=field(data, "tags", dict),
            description=field(data, "description", str, default=""),
            project=project,
            provider=field(data, "provider", str, default=Provider.LOCAL),
            user=request.user,
        )
    except ValidationError as exc:
        raise validation_error(exc, ENDPOINT_RENAMES) from None
    return ok(rep.endpoint_json(endpoint, []), 201)


@api_view("GET", "PATCH", "DELETE")
def online_endpoint(request, name: str):
    if request.method == "PATCH":
        return _update_endpoint(request, _endpoint(request, name, Action.DEPLOY))
    endpoint = _endpoint(request, name, Action.DELETE if request.method == "DELETE" else Action.VIEW)
    if request.method == "DELETE":
        if not endpoint.deleting:
            services.delete_endpoint(endpoint, user=request.user)
        return ok({"name": name, "provisioning_state": "Deleting"}, 202)
    return ok(rep.endpoint_json(endpoint, list(endpoint.deployments.all())))


def _update_endpoint(request, endpoint: Endpoint):
    data = request.data
    reject_unknown(data, ENDPOINT_UPDATE_FIELDS, "an online endpoint update")
    if data.get("name", endpoint.name) != endpoint.name:
        raise bad_request("name: an endpoint cannot be renamed.", "name")
    _same_project(data, endpoint.project, f"endpoint {endpoint.name}")
    if endpoint.deleting:
        raise conflict(f"Endpoint {endpoint.name} is being deleted.")
    tags = field(data, "tags", dict)
    description = field(data, "description", str)
    traffic = field(data, "traffic", dict)
    mirror = field(data, "mirror_traffic", dict)
    if tags is not None or description is not None:
        services.update_endpoint(endpoint, tags=tags, description=description, user=request.user)
    if traffic is not None or mirror is not None:
        services.set_traffic(endpoint, endpoint.traffic if traffic is None else traffic, mirror, user=request.user)
    return ok(rep.endpoint_json(_endpoint(request, endpoint.name)))


@api_view("POST")
def list_keys(request, name: str):
    endpoint = _endpoint(request, name, Action.READ_KEYS)
    try:
        return ok(services.credentials(endpoint))
    except ValidationError as exc:
        raise validation_error(exc, ENDPOINT_RENAMES) from None


@api_view("POST")
def regenerate_keys(request, name: str):
    endpoint = _endpoint(request, name, Action.READ_KEYS)
    reject_unknown(request.data, ("key_type",), "a key regeneration")
    key_type = field(request.data, "key_type", str, required=True)
    try:
        services.regenerate_key(endpoint, key_type, user=request.user)
    except ValidationError as exc:
        raise validation_error(exc, ENDPOINT_RENAMES) from None
    return ok({"name": name, "key_type": key_type, "regenerated": True})


@api_view("POST")
def endpoint_token(request, name: str):
    endpoint = _endpoint(request, name, Action.READ_KEYS)
    try:
        return ok(services.issue_token(endpoint))
    except ValidationError as exc:
        raise validation_error(exc, ENDPOINT_RENAMES) from None


@api_view("POST")
def invoke(request, name: str):
    """Score through the gateway with the endpoint's own credentials, and relay its status and answer.

    Testing through the studio is a Reader's right (TEST): the credentials never reach the caller."""
    endpoint = _endpoint(request, name, Action.TEST)
    pinned = request.GET.get("deployment_name", "")
    if pinned and not endpoint.deployments.filter(name=pinned).exists():
        raise bad_request(f"deployment_name: endpoint {name} has no deployment named {pinned!r}.", "deployment_name")
    result = scoring.score(endpoint, request.data, pinned or None)
    if result.failure:
        raise ApiError(result.status, result.failure, result.error_message)
    response = HttpResponse(
        result.content, status=result.status, content_type=result.content_type or "application/json"
    )
    if result.request_id:
        response["x-request-id"] = result.request_id
    if result.deployment:
        response["azureml-model-deployment"] = result.deployment
    return response


# --- online deployments --------------------------------------------------------------------------


def _deployment(request, endpoint_name: str, name: str, action: Action = Action.VIEW) -> Deployment:
    endpoint = _endpoint(request, endpoint_name, action)
    deployment = (
        Deployment.objects.select_related("endpoint", "flow_version__flow").filter(endpoint=endpoint, name=name).first()
    )
    if deployment is None:
        raise not_found(f"Online endpoint {endpoint_name} has no deployment named {name!r}.")
    return deployment


@api_view("GET")
def online_deployments(request, endpoint: str):
    found = _endpoint(request, endpoint)
    rows = found.deployments.select_related("endpoint", "flow_version__flow").order_by("name")
    return ok([rep.deployment_json(d) for d in rows])


@api_view("GET", "PUT", "DELETE")
def online_deployment(request, endpoint: str, name: str):
    if request.method == "PUT":
        return _put_deployment(request, _endpoint(request, endpoint, Action.DEPLOY), name)
    deployment = _deployment(request, endpoint, name, Action.DELETE if request.method == "DELETE" else Action.VIEW)
    if request.method == "DELETE":
        if deployment.state != DeploymentState.DELETING:
            try:
                services.delete_deployment(deployment, user=request.user)
            except ValidationError as exc:
                error = validation_error(exc)
                raise conflict(error.message, error.field) from None
        return ok({"name": name, "endpoint_name": endpoint, "provisioning_state": "Deleting"}, 202)
    return ok(rep.deployment_json(deployment, detail=True))


def _put_deployment(request, endpoint: Endpoint, name: str):
    """Create the deployment, or roll out new settings when one with this name exists (PUT semantics)."""
    data = request.data
    reject_unknown(data, DEPLOYMENT_FIELDS, "an online deployment")
    for key, expected in (("name", name), ("endpoint_name", endpoint.name)):
        if data.get(key, expected) != expected:
            raise bad_request(f"{key}: the body names {data[key]!r} but the URL names {expected!r}.", key)
    existing = endpoint.deployments.filter(name=name).first()
    if endpoint.deleting:
        raise conflict(f"Endpoint {endpoint.name} is being deleted.")
    if existing and existing.is_busy:
        raise conflict(f"Deployment {name} is {existing.state.lower()}; wait until it finishes.", "name")
    reference = field(data, "flow", str, required=existing is None)
    flow_version = find_flow_version(request, reference) if reference else existing.flow_version
    values = {key: data[key] for key in services.DEPLOYMENT_DEFAULTS if key in data}
    _check_override_targets(request, values.get("connection_overrides"))
    deployment = services.create_or_update_deployment(endpoint, name, flow_version, user=request.user, **values)
    deployment = _deployment(request, endpoint.name, name)
    return ok(rep.deployment_json(deployment, detail=True), 200 if existing else 201)


def _check_override_targets(request, overrides) -> None:
    """A deployment may use only connections the user can see: another project's is as if it did not exist."""
    if not isinstance(overrides, dict):
        return  # the service names the field
    targets = {target for target in overrides.values() if isinstance(target, str) and target}
    seen = set(access.visible(request.user, Connection.objects.filter(name__in=targets)).values_list("name", flat=True))
    for target in sorted(targets - seen):
        if Connection.objects.filter(name=target).exists():
            raise bad_request(f"There is no connection named {target!r}.", "connection_overrides")


@api_view("GET")
def deployment_logs(request, endpoint: str, name: str):
    """An instance's log tail (like `az ml online-deployment get-logs`), or the deployment's events.

    Needs READ_DATA (Contributor), as Azure's getLogs action is not in its Reader role: logs can hold inputs."""
    deployment = _deployment(request, endpoint, name, Action.READ_DATA)
    lines = _int_param(request, "lines", 100, 1, MAX_LOG_LINES)
    container = request.GET.get("container") or "inference-server"
    if container not in LOG_CONTAINERS:
        raise bad_request(f"container: one of {', '.join(LOG_CONTAINERS)}, not {container!r}.", "container")
    base = {"name": name, "endpoint_name": endpoint, "container": container, "lines": lines}
    if container == "events":
        events = list(deployment.events.order_by("-created_at", "-id")[:lines])[::-1]
        text = "\n".join(
            f"{e.created_at:%Y-%m-%dT%H:%M:%SZ} {e.level.upper():5} {e.phase}: {e.message}" for e in events
        )
        return ok({**base, "instance": None, "content": text, "events": [rep.event_json(e) for e in events]})
    if deployment.endpoint.provider == Provider.AZUREML:  # Azure's containers, as `az ml ... get-logs` reads them
        return ok(
            {**base, "instance": None, "content": provider_for(deployment.endpoint).logs(deployment, lines, container)}
        )
    if container == "storage-initializer":
        raise bad_request(
            "container: storage-initializer logs exist on Azure ML only; here the flow is copied.", "container"
        )
    instances = rep.current_instances(deployment)
    ordinal = _int_param(request, "instance", None, 0, 10_000)
    if ordinal is not None:
        chosen = next((i for i in instances if i.ordinal == ordinal), None)
        if chosen is None:
            known = ", ".join(str(i.ordinal) for i in instances) or "none"
            raise bad_request(
                f"instance: deployment {name} has no instance {ordinal} (instances: {known}).", "instance"
            )
    else:
        chosen = instance_logs.default_instance(
            deployment, list(deployment.instances.order_by("-generation", "ordinal"))
        )
    if chosen is None:
        return ok({**base, "instance": None, "content": ""})
    return ok({**base, "instance": chosen.ordinal, "content": instance_logs.tail(chosen.log_path, lines) or ""})


@api_view("GET")
def deployment_export(request, endpoint: str, name: str):
    """The deployment for Azure Machine Learning: a zip of `az ml` YAML, the environment's build context, the flow
    and a README (endpoints/export.py). Needs READ_DATA (Contributor): it holds the flow's code and the
    deployment's environment variables."""
    deployment = _deployment(request, endpoint, name, Action.READ_DATA)
    from endpoints import export as azure_export  # azure-ai-ml takes about a second to import

    workspace = azure_export.workspace_info_for(deployment.endpoint.project)
    try:
        content = azure_export.export_zip(deployment, workspace)
    except azure_export.ExportError as exc:
        raise conflict(str(exc)) from None
    response = HttpResponse(content, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{azure_export.export_filename(deployment)}"'
    return response


def _int_param(request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.GET.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise bad_request(f"{name}: a whole number from {low} to {high}, not {raw!r}.", name)
    return int(raw)
