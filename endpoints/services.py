"""Use cases for endpoints and deployments. Validate everything first, then change rows in one
transaction, then dispatch the long work to Celery on commit."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from endpoints import sizes
from endpoints.environment_variables import environment_variable_problems
from endpoints.models import (
    AuthType,
    Deployment,
    DeploymentState,
    Endpoint,
    IdentityType,
    Phase,
    Provider,
    check_name,
)
from endpoints.providers import provider_for
from flows.models import FlowVersion
from serving import auth
from workspace import audit, azure, identities, notifications
from workspace.connections import connection_type_names
from workspace.models import ManagedIdentity, Notification, Project

KEY_NAMES = ("primary", "secondary")
NOTIFICATION_TITLE = "Prompt flow deployment"
MAX_MIRROR_PERCENT = 50


def _user(user):
    return user if getattr(user, "is_authenticated", False) else None


def _name(value: str, what: str, field: str) -> str:
    try:
        return check_name(value, what)
    except ValidationError as exc:
        raise ValidationError({field: exc.messages}) from None


def endpoint_name_problem(name: str) -> str:
    """Why `name` cannot be a new endpoint's name, or "". Names are unique whatever their case, as on Azure."""
    if not name:
        return "Enter the endpoint name."
    try:
        check_name(name, "Endpoint")
    except ValidationError as exc:
        return exc.messages[0]
    taken = Endpoint.objects.filter(name__iexact=name).values_list("name", flat=True).first()
    if taken == name:
        return f"Endpoint name {name} is already taken."
    if taken is not None:
        return f"Endpoint name {name} is already taken by endpoint {taken}: endpoint names are case-insensitive."
    return ""


def clean_tags(tags: Any, field: str = "tags") -> dict[str, str]:
    if tags in (None, ""):
        return {}
    if not isinstance(tags, dict) or not all(isinstance(k, str) and k for k in tags):
        raise ValidationError({field: "Tags must be key-value pairs with non-empty keys."})
    return {k: "" if v is None else str(v) for k, v in tags.items()}


# --- endpoints --------------------------------------------------------------------------------


def create_endpoint(
    name: str,
    *,
    auth_type: str = AuthType.KEY,
    identity_type: str = IdentityType.SYSTEM,
    user_assigned_identity: str = "",
    enforce_access_to_connection_secrets: bool = True,
    tags: dict | None = None,
    description: str = "",
    project: Project | None = None,
    provider: str = Provider.LOCAL,
    user=None,
) -> Endpoint:
    """A new endpoint in `project` (the default project when None). A user-assigned identity is named (or given
    by an Azure resource id ending in its name) and must be one of the project's. With a system-assigned
    identity and "Enforce access to connection secrets" on, the identity gets Connection Secrets Reader when
    the deploying user holds it (workspace/identities.py)."""
    project = project or Project.default()
    problem = endpoint_name_problem(name)
    if problem:
        raise ValidationError({"name": problem})
    if auth_type not in AuthType.values:
        raise ValidationError({"auth_type": f"Authentication type must be one of {', '.join(AuthType.values)}."})
    if identity_type not in IdentityType.values:
        raise ValidationError({"identity_type": f"Identity type must be one of {', '.join(IdentityType.values)}."})
    _check_provider(provider, project)
    identity = None
    if identity_type == IdentityType.USER:
        identity = _user_assigned_identity(project, user_assigned_identity)
        enforce_access_to_connection_secrets = False  # only offered for system-assigned identities
    endpoint = Endpoint(
        name=name,
        project=project,
        auth_type=auth_type,
        identity_type=identity_type,
        user_assigned_identity=identity,
        enforce_access_to_connection_secrets=enforce_access_to_connection_secrets,
        provider=provider,
        tags=clean_tags(tags),
        description=description,
        created_by=_user(user),
    )
    if provider == Provider.LOCAL:  # Azure ML makes an Azure endpoint's keys (its provider reads them there)
        endpoint.set_keys({key: auth.new_key() for key in KEY_NAMES})
    try:
        with transaction.atomic():
            problem = endpoint_name_problem(name)  # again, inside the transaction that writes it
            if problem:
                raise ValidationError({"name": problem})
            endpoint.save()
            audit.record(_user(user), "endpoint.create", name, project=project, auth_type=auth_type)
            identities.grant_on_creation(endpoint, user)
    except IntegrityError:
        raise ValidationError({"name": f"Endpoint name {name} is already taken."}) from None
    provider_for(endpoint).apply_routing(endpoint)
    return endpoint


def _check_provider(provider: str, project: Project) -> None:
    if provider not in Provider.values:
        raise ValidationError({"provider": f"Provider must be one of {', '.join(Provider.values)}."})
    if provider == Provider.AZUREML and azure.project_workspace(project) is None:
        raise ValidationError(
            {
                "provider": f"Project '{project}' is not connected to an Azure ML workspace: an Owner connects it on "
                "the project's Azure Machine Learning page first."
            }
        )


def _user_assigned_identity(project: Project, name: str) -> ManagedIdentity:
    if not (name or "").strip():
        raise ValidationError({"user_assigned_identity": "Choose the user-assigned identity."})
    identity = identities.identity_named(project, name)
    if identity is None:
        raise ValidationError(
            {
                "user_assigned_identity": f"Project '{project.name}' has no user-assigned identity named "
                f"'{name}'. Create it on the project's Managed identities page "
                f"({reverse('workspace:identities', args=[project.name])}), or choose one of its identities."
            }
        )
    return identity


def update_endpoint(endpoint: Endpoint, *, tags: dict | None = None, description: str | None = None, user=None):
    if tags is not None:
        endpoint.tags = clean_tags(tags)
    if description is not None:
        endpoint.description = description
    endpoint.save(update_fields=["tags", "description", "updated_at"])
    audit.record(_user(user), "endpoint.update", endpoint.name, project=endpoint.project_id)
    return endpoint


def _row_error(message: str, deployment: str, field: str) -> ValidationError:
    """A traffic error about one deployment's share: `params` names the deployment, so a page can show the
    error beside that deployment's field (the API shows the message under `field`)."""
    return ValidationError(message.replace("%", "%%"), code=field, params={"deployment": deployment})


def _percentages(value: Any, field: str, label: str, high: int, errors: dict) -> dict[str, int]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        errors.setdefault(field, []).append(
            ValidationError('Give traffic as deployment name to percent, e.g. {"blue": 90, "green": 10}.')
        )
        return {}
    cleaned = {}
    for name, percent in value.items():
        name = str(name)
        number = whole_number(percent)
        if number is None:
            errors.setdefault(field, []).append(
                _row_error(f"{label} for {name} must be a whole number of percent, not {percent!r}.", name, field)
            )
        elif not 0 <= number <= high:
            errors.setdefault(field, []).append(
                _row_error(f"{label} for {name} must be between 0 and {high}%.", name, field)
            )
        else:
            cleaned[name] = number
    return cleaned


def clean_traffic(endpoint: Endpoint, traffic: Any, mirror_traffic: Any = None) -> tuple[dict, dict]:
    """Azure's rules: live traffic sums to 100 (or 0), names exist, mirror at most 50% and not to a live one.
    Returns the live and mirror splits without the zeros, or raises ValidationError with every problem, under
    `traffic` or `mirror_traffic`; a problem with one deployment's share carries params={"deployment": name}."""
    errors: dict[str, list] = {}
    live = _percentages(traffic, "traffic", "Traffic", 100, errors)
    if mirror_traffic is not None:
        mirror = _percentages(mirror_traffic, "mirror_traffic", "Mirror traffic", 100, errors)
    else:
        mirror = dict(endpoint.mirror_traffic)
    names = set(endpoint.deployments.exclude(state=DeploymentState.DELETING).values_list("name", flat=True))
    for field, mapping in (("traffic", live), ("mirror_traffic", mirror)):
        for unknown in sorted(set(mapping) - names):
            errors.setdefault(field, []).append(
                ValidationError(f"Endpoint {endpoint.name} has no deployment named {unknown!r}.")
            )
    total = sum(live.values())
    if "traffic" not in errors and live and total not in (0, 100):
        errors["traffic"] = [ValidationError(f"Traffic must add up to 100%, not {total}%.")]
    for name, percent in mirror.items():
        if percent > MAX_MIRROR_PERCENT:
            errors.setdefault("mirror_traffic", []).append(
                _row_error(f"Mirror traffic for {name} is at most {MAX_MIRROR_PERCENT}%.", name, "mirror_traffic")
            )
        elif percent and live.get(name):
            errors.setdefault("mirror_traffic", []).append(
                _row_error(f"{name} receives live traffic; it cannot also get mirror traffic.", name, "mirror_traffic")
            )
    if errors:
        raise ValidationError(errors)
    return {k: v for k, v in live.items() if v}, {k: v for k, v in mirror.items() if v}


def set_traffic(endpoint: Endpoint, traffic: Any, mirror_traffic: Any = None, user=None) -> Endpoint:
    endpoint.traffic, endpoint.mirror_traffic = clean_traffic(endpoint, traffic, mirror_traffic)
    endpoint.save(update_fields=["traffic", "mirror_traffic", "updated_at"])
    audit.record(
        _user(user),
        "endpoint.traffic",
        endpoint.name,
        project=endpoint.project_id,
        traffic=endpoint.traffic,
        mirror=endpoint.mirror_traffic,
    )
    provider_for(endpoint).apply_routing(endpoint)
    return endpoint


def credentials(endpoint: Endpoint) -> dict[str, str]:
    if endpoint.auth_type != AuthType.KEY:
        raise ValidationError({"auth_type": f"Endpoint {endpoint.name} uses tokens; get a token instead of keys."})
    keys = provider_for(endpoint).keys(endpoint)
    return {"primaryKey": keys.get("primary", ""), "secondaryKey": keys.get("secondary", "")}


def regenerate_key(endpoint: Endpoint, which: str, user=None) -> Endpoint:
    if which not in KEY_NAMES:
        raise ValidationError({"key_type": "Key type must be 'primary' or 'secondary'."})
    if endpoint.auth_type != AuthType.KEY:
        raise ValidationError({"auth_type": f"Endpoint {endpoint.name} uses tokens, not keys."})
    provider_for(endpoint).regenerate_key(endpoint, which)
    audit.record(_user(user), "endpoint.regenerate_key", endpoint.name, project=endpoint.project_id, key=which)
    if _user(user):
        notifications.notify(
            user,
            "Keys regenerated",
            f"The {which} key of endpoint {endpoint.name} was regenerated; the old one no longer works.",
            link=_consume_link(endpoint),
            level="success",
        )
    endpoint.refresh_from_db()
    return endpoint


def _consume_link(endpoint: Endpoint) -> str:
    first = endpoint.deployments.order_by("name").first()
    if first is None:
        return reverse("endpoints:endpoint", args=[endpoint.name])
    return reverse("endpoints:consume", args=[endpoint.name, first.name])


def issue_token(endpoint: Endpoint) -> dict:
    if endpoint.auth_type != AuthType.TOKEN:
        raise ValidationError(
            {"auth_type": f"Endpoint {endpoint.name} uses keys; tokens are for token-based endpoints."}
        )
    return provider_for(endpoint).token(endpoint)


def _deletion_notice(user, title: str, what: str) -> int | None:
    """The long-running deletion's notification; the task moves it to its final state."""
    if not _user(user):
        return None
    note = notifications.notify(user, title, f"Deleting {what}…", link=reverse("endpoints:list"), level="running")
    return note.pk


def delete_endpoint(endpoint: Endpoint, user=None) -> None:
    from django.utils import timezone

    from endpoints import tasks

    with transaction.atomic():
        notice = _deletion_notice(user, "Delete endpoint", f"endpoint {endpoint.name}")
        Endpoint.objects.filter(pk=endpoint.pk).update(deleting=True, deletion_notification_id=notice)
        # heartbeat_at: when the deletion was asked for, so the reconciler can resume one whose task was lost.
        endpoint.deployments.update(state=DeploymentState.DELETING, phase=Phase.DELETING, heartbeat_at=timezone.now())
        audit.record(_user(user), "endpoint.delete", endpoint.name, project=endpoint.project_id)
        transaction.on_commit(lambda: tasks.delete_endpoint.delay(endpoint.pk, notice))


# --- deployments ------------------------------------------------------------------------------

DEPLOYMENT_DEFAULTS = {
    "vm_size": sizes.DEFAULT_SIZE,
    "instance_count": 1,
    "environment_variables": {},
    "environment": "",
    "selected_outputs": [],
    "connection_overrides": {},
    "request_timeout_ms": 90_000,
    "max_concurrent_requests_per_instance": 8,
    "data_collection": False,
    "app_insights_enabled": False,
    "tags": {},
}


def whole_number(value: Any) -> int | None:
    """`value` as an int when it is a whole number (an int, an integral float, or digits in a string), else None:
    2.5, "2.5", "", "two" and True are not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value.strip())
    return None


def instance_count_message() -> str:
    return f"Instance count must be a whole number from 1 to {settings.FLOWDEPLOY_MAX_INSTANCES}."


def clean_instance_count(value: Any) -> int:
    """The one rule for an instance count, for the wizard (and its live check), Scale, the API and the CLI:
    a whole number from 1 to FLOWDEPLOY_MAX_INSTANCES, with the same message for every value outside it."""
    number = whole_number(value)
    if number is None or not 1 <= number <= settings.FLOWDEPLOY_MAX_INSTANCES:
        raise ValidationError(instance_count_message(), code="instance_count")
    return number


def _int(value: Any, label: str, low: int, high: int) -> int:
    number = whole_number(value)
    if number is None:
        raise ValidationError(f"{label} must be a whole number.")
    if not low <= number <= high:
        raise ValidationError(f"{label} must be between {low} and {high}.")
    return number


def clean_deployment_settings(
    flow_version: FlowVersion,
    values: dict,
    existing: Deployment | None = None,
    connections: dict[str, str] | None = None,
) -> dict:
    """Every deployment setting checked, with every problem at once, each under its field; unknown fields are
    refused. `connections`: those the deployment can use where it runs (by default, this studio's)."""
    errors: dict[str, list[str]] = {}

    def check(field: str, cleaner) -> None:
        try:
            data[field] = cleaner(data[field])
        except ValidationError as exc:
            errors.setdefault(field, []).extend(exc.messages)

    for name in sorted(set(values) - set(DEPLOYMENT_DEFAULTS)):
        errors[name] = [f"Unknown deployment setting {name!r}."]
    base = {k: getattr(existing, k) for k in DEPLOYMENT_DEFAULTS} if existing else dict(DEPLOYMENT_DEFAULTS)
    data = {**base, **{k: v for k, v in values.items() if v is not None and k in DEPLOYMENT_DEFAULTS}}
    if data["vm_size"] not in sizes.SIZES:
        errors["vm_size"] = [f"Virtual machine must be one of {', '.join(sizes.SIZES)}."]
    check("instance_count", clean_instance_count)
    check("request_timeout_ms", lambda v: _int(v, "Request timeout (ms)", 1000, 3_600_000))
    check(
        "max_concurrent_requests_per_instance",
        lambda v: _int(v, "Max concurrent requests per instance", 1, 1000),
    )
    env = data["environment_variables"] or {}
    problems = environment_variable_problems(env)
    if problems:
        errors["environment_variables"] = list(problems)
    else:
        data["environment_variables"] = dict(env)
    outputs = list(data["selected_outputs"] or [])
    missing = [name for name in outputs if name not in flow_version.outputs]
    if missing:
        errors["selected_outputs"] = [f"The flow has no output named {missing[0]!r}."]
    data["selected_outputs"] = outputs
    overrides = data["connection_overrides"] or {}
    if not isinstance(overrides, dict):
        errors["connection_overrides"] = ["Connection overrides map a flow connection to another one."]
    else:
        used = set(flow_version.connection_names())
        # Targets are checked where they were given; kept ones (a scale) were checked then, and Validating
        # checks them again where the deployment runs.
        given = "connection_overrides" in values
        existing_connections = connection_type_names() if connections is None else connections
        for name, target in overrides.items():
            if name not in used:
                errors.setdefault("connection_overrides", []).append(f"The flow uses no connection named {name!r}.")
            elif given and target not in existing_connections:
                errors.setdefault("connection_overrides", []).append(f"There is no connection named {target!r}.")
        data["connection_overrides"] = {k: v for k, v in overrides.items() if v and v != k}
    check("tags", clean_tags)
    check("environment", clean_custom_environment)
    data["data_collection"] = bool(data["data_collection"])
    data["app_insights_enabled"] = bool(data["app_insights_enabled"])
    if errors:
        raise ValidationError(errors)
    return data


CUSTOM_ENVIRONMENT = re.compile(
    r"^(azureml:[A-Za-z0-9][A-Za-z0-9_.-]{0,254}(:[A-Za-z0-9_.-]{1,30}|@latest)"
    r"|/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/workspaces/[^/]+"
    r"/environments/[^/]+/versions/[^/]+)$",
    re.IGNORECASE,
)


def clean_custom_environment(value: Any) -> str:
    """A custom Azure ML environment reference, or "" for the environment built from the flow."""
    value = "" if value is None else value
    value = value.strip() if isinstance(value, str) else value
    if not isinstance(value, str) or (value and not CUSTOM_ENVIRONMENT.match(value)):
        raise ValidationError(
            f"Environment: azureml:<name>:<version>, azureml:<name>@latest or an environment's ARM id, not {value!r}; "
            "leave it empty for the environment built from the flow's requirements."
        )
    return value


def check_scale(deployment: Deployment, instance_count: Any) -> int:
    """The instance count a scale of this deployment may roll out, or ValidationError naming the field."""
    data = clean_deployment_settings(deployment.flow_version, {"instance_count": instance_count}, deployment)
    if deployment.is_busy:
        raise ValidationError(
            {"name": f"Deployment {deployment.name} is {deployment.state.lower()}; wait until it finishes."}
        )
    shortfall = provider_for(deployment.endpoint).capacity_problem(
        data["vm_size"], data["instance_count"], excluding=deployment
    )
    if shortfall:
        raise ValidationError({"instance_count": shortfall})
    return data["instance_count"]


def scale_deployment(deployment: Deployment, instance_count: Any, user=None) -> Deployment:
    """Roll out the same flow version with another instance count."""
    count = check_scale(deployment, instance_count)
    return create_or_update_deployment(
        deployment.endpoint,
        deployment.name,
        deployment.flow_version,
        user=user,
        notice=f"Scaling {deployment} to {count} instance(s): provisioning started.",
        instance_count=count,
    )


def create_or_update_deployment(
    endpoint: Endpoint, name: str, flow_version: FlowVersion, user=None, notice: str = "", **values: Any
) -> Deployment:
    """Create the deployment, or roll out new settings to an existing one with the same name.

    The user gets a "Prompt flow deployment" notification (`notice`, or what is being done) that the
    provisioning job moves through its phases to success or failure."""
    from endpoints import tasks

    name = _name(name, "Deployment", "name")
    existing = endpoint.deployments.filter(name=name).first()
    if existing and existing.is_busy:
        raise ValidationError({"name": f"Deployment {name} is {existing.state.lower()}; wait until it finishes."})
    if endpoint.deleting:
        raise ValidationError({"endpoint": f"Endpoint {endpoint.name} is being deleted."})
    if flow_version.flow.project_id != endpoint.project_id:
        raise ValidationError(
            {
                "flow": f"Flow {flow_version.flow.name} is in project '{flow_version.flow.project}', endpoint "
                f"{endpoint.name} in project '{endpoint.project}': a deployment serves a flow of its endpoint's "
                "project, with that project's connections. Import the flow there, or deploy it to an endpoint of "
                "its own project."
            }
        )
    provider = provider_for(endpoint)
    connections = provider.connection_types(endpoint.project)
    data = clean_deployment_settings(flow_version, values, existing, connections)
    if data["environment"] and endpoint.provider != Provider.AZUREML:
        raise ValidationError(
            {
                "environment": f"Endpoint {endpoint.name} runs on this machine, where a flow runs in the pinned "
                "runtime plus its requirements.txt: a custom environment is for Azure Machine Learning endpoints."
            }
        )
    problems = provider.connection_problems(flow_version, data["connection_overrides"], endpoint.project, connections)
    if problems:
        raise ValidationError({"connection_overrides": problems})
    shortfall = provider.capacity_problem(data["vm_size"], data["instance_count"], excluding=existing)
    if shortfall:
        raise ValidationError({"instance_count": shortfall})
    with transaction.atomic():
        if existing:
            deployment = Deployment.objects.select_for_update().get(pk=existing.pk)
            if deployment.is_busy:
                raise ValidationError(
                    {"name": f"Deployment {name} is {deployment.state.lower()}; wait until it finishes."}
                )
            for key, value in data.items():
                setattr(deployment, key, value)
            deployment.flow_version = flow_version
            deployment.generation += 1
            deployment.state = DeploymentState.UPDATING
            deployment.failure_reason = ""
            deployment.phase = Phase.QUEUED
            deployment.save()
            action = "updated"
        else:
            try:
                with transaction.atomic():
                    deployment = Deployment.objects.create(
                        endpoint=endpoint,
                        name=name,
                        flow_version=flow_version,
                        created_by=_user(user),
                        state=DeploymentState.CREATING,
                        phase=Phase.QUEUED,
                        **data,
                    )
            except IntegrityError:
                raise ValidationError({"name": f"Deployment {name} was just created by someone else."}) from None
            action = "created"
        deployment.event(f"Deployment {action} with flow {flow_version}; provisioning is queued.")
        verb = "Creating" if action == "created" else "Updating"
        _provisioning_notice(deployment, user, notice or f"{verb} {deployment}: provisioning started.")
        audit.record(
            _user(user),
            f"deployment.{action}",
            str(deployment),
            project=endpoint.project_id,
            flow=str(flow_version),
        )
        transaction.on_commit(lambda: _dispatch_provisioning(deployment, tasks))
    return deployment


def _provisioning_notice(deployment: Deployment, user, body: str) -> None:
    if not _user(user):
        return
    note = notifications.notify(
        user, NOTIFICATION_TITLE, body, link=deployment.get_absolute_url(), level=Notification.Level.RUNNING
    )
    Deployment.objects.filter(pk=deployment.pk).update(notification_id=note.pk)
    deployment.notification_id = note.pk


def _dispatch_provisioning(deployment: Deployment, tasks) -> None:
    result = tasks.provision.delay(deployment.pk)
    Deployment.objects.filter(pk=deployment.pk).update(task_id=result.id or "")


def deployment_delete_problem(deployment: Deployment) -> str:
    """Why this deployment cannot be deleted now, or "". As on Azure, a deployment that receives live traffic
    while another deployment could take it is not deleted: its traffic goes to 0 first. The endpoint's only
    deployment takes its traffic with it (the endpoint then has none)."""
    endpoint = deployment.endpoint
    share = endpoint.traffic.get(deployment.name)
    if not share:
        return ""
    others = endpoint.deployments.exclude(pk=deployment.pk).exclude(state=DeploymentState.DELETING)
    if not others.exists():
        return ""
    return (
        f"Deployment {deployment.name} still receives {share}% of the live traffic of endpoint {endpoint.name}, "
        "and a deployment with traffic cannot be deleted. Set its traffic to 0% first (Traffic allocation, "
        "on the Details tab: give its share to another deployment), then delete it."
    )


def delete_deployment(deployment: Deployment, user=None) -> None:
    from endpoints import tasks

    endpoint = deployment.endpoint
    problem = deployment_delete_problem(deployment)
    if problem:
        raise ValidationError({"traffic": problem})
    from django.utils import timezone

    with transaction.atomic():
        notice = _deletion_notice(user, "Delete deployment", f"deployment {deployment}")
        # The deployment row first, then the endpoint's, as a provisioning job going live does (no deadlock).
        # heartbeat_at: when the deletion was asked for, so the reconciler can resume one whose task was lost.
        Deployment.objects.filter(pk=deployment.pk).update(
            state=DeploymentState.DELETING,
            phase=Phase.DELETING,
            heartbeat_at=timezone.now(),
            deletion_notification_id=notice,
        )
        locked = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        traffic = {k: v for k, v in locked.traffic.items() if k != deployment.name}
        mirror = {k: v for k, v in locked.mirror_traffic.items() if k != deployment.name}
        Endpoint.objects.filter(pk=endpoint.pk).update(traffic=traffic, mirror_traffic=mirror)
        audit.record(_user(user), "deployment.delete", str(deployment), project=deployment.endpoint.project_id)
        transaction.on_commit(lambda: tasks.delete_deployment.delay(deployment.pk, notice))
