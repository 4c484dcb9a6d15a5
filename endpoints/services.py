"""Use cases for endpoints and deployments. Validate everything first, then change rows in one
transaction, then dispatch the long work to Celery on commit."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from endpoints import capacity, publishing, sizes
from endpoints.connections import connection_problems
from endpoints.environment_variables import environment_variable_problems
from endpoints.models import (
    AuthType,
    Deployment,
    DeploymentState,
    Endpoint,
    IdentityType,
    Phase,
    check_name,
)
from flows.models import FlowVersion
from serving import auth
from workspace import audit, notifications
from workspace.connections import connection_type_names

KEY_NAMES = ("primary", "secondary")
MAX_MIRROR_PERCENT = 50


def _user(user):
    return user if getattr(user, "is_authenticated", False) else None


def _name(value: str, what: str, field: str) -> str:
    try:
        return check_name(value, what)
    except ValidationError as exc:
        raise ValidationError({field: exc.messages}) from None


def _tags(tags: Any, field: str = "tags") -> dict[str, str]:
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
    user=None,
) -> Endpoint:
    name = _name(name, "Endpoint", "name")
    if auth_type not in AuthType.values:
        raise ValidationError({"auth_type": f"Authentication type must be one of {', '.join(AuthType.values)}."})
    if identity_type not in IdentityType.values:
        raise ValidationError({"identity_type": f"Identity type must be one of {', '.join(IdentityType.values)}."})
    if identity_type == IdentityType.USER and not user_assigned_identity:
        raise ValidationError({"user_assigned_identity": "Choose the user-assigned identity."})
    if identity_type == IdentityType.USER:
        enforce_access_to_connection_secrets = False  # only offered for system-assigned identities
    endpoint = Endpoint(
        name=name,
        auth_type=auth_type,
        identity_type=identity_type,
        user_assigned_identity=user_assigned_identity,
        enforce_access_to_connection_secrets=enforce_access_to_connection_secrets,
        tags=_tags(tags),
        description=description,
        created_by=_user(user),
    )
    endpoint.set_keys({key: auth.new_key() for key in KEY_NAMES})
    try:
        with transaction.atomic():
            endpoint.save()
            audit.record(_user(user), "endpoint.create", name, auth_type=auth_type)
    except IntegrityError:
        raise ValidationError({"name": f"Endpoint name {name!r} is already taken."}) from None
    transaction.on_commit(lambda: publishing.publish(endpoint))
    return endpoint


def update_endpoint(endpoint: Endpoint, *, tags: dict | None = None, description: str | None = None, user=None):
    if tags is not None:
        endpoint.tags = _tags(tags)
    if description is not None:
        endpoint.description = description
    endpoint.save(update_fields=["tags", "description", "updated_at"])
    audit.record(_user(user), "endpoint.update", endpoint.name)
    return endpoint


def _percentages(value: Any, field: str) -> dict[str, int]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ValidationError({field: 'Give traffic as deployment name to percent, e.g. {"blue": 90, "green": 10}.'})
    cleaned = {}
    for name, percent in value.items():
        try:
            number = int(percent)
        except (TypeError, ValueError):
            raise ValidationError({field: f"Traffic for {name!r} must be a whole number of percent."}) from None
        if not 0 <= number <= 100:
            raise ValidationError({field: f"Traffic for {name!r} must be between 0 and 100."})
        cleaned[str(name)] = number
    return cleaned


def clean_traffic(endpoint: Endpoint, traffic: Any, mirror_traffic: Any = None) -> tuple[dict, dict]:
    """Azure's rules: live traffic sums to 100 (or 0), names exist, mirror at most 50% and not to a live one.
    Returns the live and mirror splits without the zeros, or raises ValidationError naming the field."""
    live = _percentages(traffic, "traffic")
    mirror = _percentages(mirror_traffic, "mirror_traffic") if mirror_traffic is not None else endpoint.mirror_traffic
    names = set(endpoint.deployments.exclude(state=DeploymentState.DELETING).values_list("name", flat=True))
    for field, mapping in (("traffic", live), ("mirror_traffic", mirror)):
        unknown = sorted(set(mapping) - names)
        if unknown:
            raise ValidationError({field: f"Endpoint {endpoint.name} has no deployment named {unknown[0]!r}."})
    total = sum(live.values())
    if live and total not in (0, 100):
        raise ValidationError({"traffic": f"Traffic must add up to 100%, not {total}%."})
    for name, percent in mirror.items():
        if percent > MAX_MIRROR_PERCENT:
            raise ValidationError({"mirror_traffic": f"Mirror traffic is at most {MAX_MIRROR_PERCENT}% ({name})."})
        if percent and live.get(name):
            raise ValidationError(
                {"mirror_traffic": f"{name} receives live traffic; it cannot also get mirror traffic."}
            )
    return {k: v for k, v in live.items() if v}, {k: v for k, v in mirror.items() if v}


def set_traffic(endpoint: Endpoint, traffic: Any, mirror_traffic: Any = None, user=None) -> Endpoint:
    endpoint.traffic, endpoint.mirror_traffic = clean_traffic(endpoint, traffic, mirror_traffic)
    endpoint.save(update_fields=["traffic", "mirror_traffic", "updated_at"])
    audit.record(
        _user(user), "endpoint.traffic", endpoint.name, traffic=endpoint.traffic, mirror=endpoint.mirror_traffic
    )
    publishing.publish(endpoint)
    return endpoint


def credentials(endpoint: Endpoint) -> dict[str, str]:
    if endpoint.auth_type != AuthType.KEY:
        raise ValidationError({"auth_type": f"Endpoint {endpoint.name} uses tokens; get a token instead of keys."})
    keys = endpoint.get_keys()
    return {"primaryKey": keys.get("primary", ""), "secondaryKey": keys.get("secondary", "")}


def regenerate_key(endpoint: Endpoint, which: str, user=None) -> Endpoint:
    if which not in KEY_NAMES:
        raise ValidationError({"key_type": "Key type must be 'primary' or 'secondary'."})
    if endpoint.auth_type != AuthType.KEY:
        raise ValidationError({"auth_type": f"Endpoint {endpoint.name} uses tokens, not keys."})
    with transaction.atomic():
        locked = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        keys = locked.get_keys()
        keys[which] = auth.new_key()
        locked.set_keys(keys)
        locked.save(update_fields=["keys_encrypted", "updated_at"])
        audit.record(_user(user), "endpoint.regenerate_key", endpoint.name, key=which)
    publishing.publish(locked)  # the old key stops working as soon as the gateway applies this
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
        return reverse("endpoints:list")
    return reverse("endpoints:consume", args=[endpoint.name, first.name])


def issue_token(endpoint: Endpoint) -> dict:
    if endpoint.auth_type != AuthType.TOKEN:
        raise ValidationError(
            {"auth_type": f"Endpoint {endpoint.name} uses keys; tokens are for token-based endpoints."}
        )
    return auth.issue_token(endpoint.name, auth.signing_key(settings.FLOWDEPLOY_SECRET_KEY or settings.SECRET_KEY))


def _deletion_notice(user, title: str, what: str) -> int | None:
    """The long-running deletion's notification; the task moves it to its final state."""
    if not _user(user):
        return None
    note = notifications.notify(user, title, f"Deleting {what}…", link=reverse("endpoints:list"), level="running")
    return note.pk


def delete_endpoint(endpoint: Endpoint, user=None) -> None:
    from endpoints import tasks

    with transaction.atomic():
        Endpoint.objects.filter(pk=endpoint.pk).update(deleting=True)
        endpoint.deployments.update(state=DeploymentState.DELETING, phase=Phase.DELETING)
        audit.record(_user(user), "endpoint.delete", endpoint.name)
        notice = _deletion_notice(user, "Delete endpoint", f"endpoint {endpoint.name}")
        transaction.on_commit(lambda: tasks.delete_endpoint.delay(endpoint.pk, notice))


# --- deployments ------------------------------------------------------------------------------

DEPLOYMENT_DEFAULTS = {
    "vm_size": sizes.DEFAULT_SIZE,
    "instance_count": 1,
    "environment_variables": {},
    "selected_outputs": [],
    "connection_overrides": {},
    "request_timeout_ms": 90_000,
    "max_concurrent_requests_per_instance": 8,
    "data_collection": False,
    "app_insights_enabled": False,
    "tags": {},
}


def _int(value: Any, field: str, label: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError({field: f"{label} must be a whole number."}) from None
    if not low <= number <= high:
        raise ValidationError({field: f"{label} must be between {low} and {high}."})
    return number


def clean_deployment_settings(flow_version: FlowVersion, values: dict, existing: Deployment | None = None) -> dict:
    """Every deployment setting checked, with errors naming the field; unknown fields are refused."""
    unknown = sorted(set(values) - set(DEPLOYMENT_DEFAULTS))
    if unknown:
        raise ValidationError({unknown[0]: f"Unknown deployment setting {unknown[0]!r}."})
    base = {k: getattr(existing, k) for k in DEPLOYMENT_DEFAULTS} if existing else dict(DEPLOYMENT_DEFAULTS)
    data = {**base, **{k: v for k, v in values.items() if v is not None}}
    if data["vm_size"] not in sizes.SIZES:
        raise ValidationError({"vm_size": f"Virtual machine must be one of {', '.join(sizes.SIZES)}."})
    data["instance_count"] = _int(
        data["instance_count"], "instance_count", "Instance count", 1, settings.FLOWDEPLOY_MAX_INSTANCES
    )
    data["request_timeout_ms"] = _int(
        data["request_timeout_ms"], "request_timeout_ms", "Request timeout (ms)", 1000, 3_600_000
    )
    data["max_concurrent_requests_per_instance"] = _int(
        data["max_concurrent_requests_per_instance"],
        "max_concurrent_requests_per_instance",
        "Max concurrent requests per instance",
        1,
        1000,
    )
    env = data["environment_variables"] or {}
    problems = environment_variable_problems(env)
    if problems:
        raise ValidationError({"environment_variables": problems})
    data["environment_variables"] = dict(env)
    outputs = list(data["selected_outputs"] or [])
    missing = [name for name in outputs if name not in flow_version.outputs]
    if missing:
        raise ValidationError({"selected_outputs": f"The flow has no output named {missing[0]!r}."})
    data["selected_outputs"] = outputs
    overrides = data["connection_overrides"] or {}
    if not isinstance(overrides, dict):
        raise ValidationError({"connection_overrides": "Connection overrides map a flow connection to another one."})
    used = set(flow_version.connection_names())
    existing_connections = connection_type_names()
    for name, target in overrides.items():
        if name not in used:
            raise ValidationError({"connection_overrides": f"The flow uses no connection named {name!r}."})
        if target not in existing_connections:
            raise ValidationError({"connection_overrides": f"There is no connection named {target!r}."})
    data["connection_overrides"] = {k: v for k, v in overrides.items() if v and v != k}
    data["tags"] = _tags(data["tags"])
    data["data_collection"] = bool(data["data_collection"])
    data["app_insights_enabled"] = bool(data["app_insights_enabled"])
    return data


def check_scale(deployment: Deployment, instance_count: Any) -> int:
    """The instance count a scale of this deployment may roll out, or ValidationError naming the field."""
    data = clean_deployment_settings(deployment.flow_version, {"instance_count": instance_count}, deployment)
    if deployment.is_busy:
        raise ValidationError(
            {"name": f"Deployment {deployment.name} is {deployment.state.lower()}; wait until it finishes."}
        )
    shortfall = capacity.shortfall_for(data["vm_size"], data["instance_count"], excluding=deployment)
    if shortfall:
        raise ValidationError({"instance_count": shortfall})
    return data["instance_count"]


def create_or_update_deployment(
    endpoint: Endpoint, name: str, flow_version: FlowVersion, user=None, **values: Any
) -> Deployment:
    """Create the deployment, or roll out new settings to an existing one with the same name."""
    from endpoints import tasks

    name = _name(name, "Deployment", "name")
    existing = endpoint.deployments.filter(name=name).first()
    if existing and existing.is_busy:
        raise ValidationError({"name": f"Deployment {name} is {existing.state.lower()}; wait until it finishes."})
    if endpoint.deleting:
        raise ValidationError({"endpoint": f"Endpoint {endpoint.name} is being deleted."})
    data = clean_deployment_settings(flow_version, values, existing)
    problems = connection_problems(flow_version, data["connection_overrides"])
    if problems:
        raise ValidationError({"connection_overrides": problems})
    shortfall = capacity.shortfall_for(data["vm_size"], data["instance_count"], excluding=existing)
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
        audit.record(_user(user), f"deployment.{action}", str(deployment), flow=str(flow_version))
        transaction.on_commit(lambda: _dispatch_provisioning(deployment, tasks))
    return deployment


def _dispatch_provisioning(deployment: Deployment, tasks) -> None:
    result = tasks.provision.delay(deployment.pk)
    Deployment.objects.filter(pk=deployment.pk).update(task_id=result.id or "")


def delete_deployment(deployment: Deployment, user=None) -> None:
    from endpoints import tasks

    endpoint = deployment.endpoint
    others = endpoint.deployments.exclude(pk=deployment.pk).exclude(state=DeploymentState.DELETING)
    if endpoint.traffic.get(deployment.name) and others.exists():
        raise ValidationError(
            {
                "traffic": f"{deployment.name} still receives {endpoint.traffic[deployment.name]}% of the traffic; "
                "move it to another deployment first."
            }
        )
    with transaction.atomic():
        Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.DELETING, phase=Phase.DELETING)
        traffic = {k: v for k, v in endpoint.traffic.items() if k != deployment.name}
        mirror = {k: v for k, v in endpoint.mirror_traffic.items() if k != deployment.name}
        Endpoint.objects.filter(pk=endpoint.pk).update(traffic=traffic, mirror_traffic=mirror)
        audit.record(_user(user), "deployment.delete", str(deployment))
        notice = _deletion_notice(user, "Delete deployment", f"deployment {deployment}")
        transaction.on_commit(lambda: tasks.delete_deployment.delay(deployment.pk, notice))
