"""Connections as promptflow sees them: validation, saving, YAML import and the executor's dict format.

The flows app and the runtime call promptflow_connections() and connection_type_names(); the
pages and the CLI save through save_connection(). Secret values are never logged, never put in
an exception message and never returned by anything but promptflow_connections().
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import yaml

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.views.decorators.debug import sensitive_variables

from workspace import audit
from workspace.connection_types import (
    CUSTOM_KEY_RE,
    CUSTOM_KEY_RULE,
    NAME_RE,
    NAME_RULE,
    PROMPTFLOW_CLASS,
    PROMPTFLOW_MODULE,
    ConnectionType,
    field_specs,
)
from workspace.crypto import SecretsUnreadable
from workspace.models import Connection, Project

logger = logging.getLogger(__name__)

# Values that mean "keep the saved secret" on update (promptflow's CLI uses the same markers).
NO_CHANGE = "<no-change>"
CUSTOM_FIELD = "pairs"
YAML_FIELD = "yaml"


class ConnectionSpecError(ValueError):
    """A connection that cannot be saved. `errors` maps a field name to messages naming it."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__(" ".join(message for messages in errors.values() for message in messages))


@dataclass
class ConnectionSpec:
    """What a user asked for: promptflow field names, configs and secrets kept apart.

    On update, a secret whose value is empty (or "<no-change>", or all "*") keeps the saved one.
    """

    name: str
    type: str
    configs: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (
            f"ConnectionSpec(name={self.name!r}, type={self.type!r}, configs={self.configs!r}, "
            f"secret_keys={sorted(self.secrets)!r})"
        )


def _keeps_saved(value: str | None) -> bool:
    return value is None or value == "" or value == NO_CHANGE or set(value) == {"*"}


def _type_label(connection_type: str) -> str:
    try:
        return ConnectionType(connection_type).label
    except ValueError:
        return connection_type


def _is_http_url(value: str) -> bool:
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _supported_types() -> str:
    return ", ".join(ConnectionType.values)


@sensitive_variables("spec", "saved_secrets", "secrets")
def _validated(spec: ConnectionSpec, saved_secrets: dict[str, str] | None) -> tuple[dict, dict]:
    """Return (configs, secrets) to store, or raise ConnectionSpecError naming every bad field.

    saved_secrets is None on create; on update it holds the secrets saved so far.
    """
    errors: dict[str, list[str]] = {}

    def fail(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    if not spec.name:
        fail("name", "Name: enter a name for the connection.")
    elif not NAME_RE.match(spec.name):
        fail("name", f"Name {spec.name!r} is not allowed. {NAME_RULE}")
    if spec.type not in ConnectionType.values:
        fail("type", f"Type: unknown connection type {spec.type!r}. Supported types: {_supported_types()}.")
        raise ConnectionSpecError(errors)

    configs: dict[str, str] = {}
    secrets: dict[str, str] = {}
    saved = saved_secrets or {}
    label = _type_label(spec.type)

    if spec.type == ConnectionType.CUSTOM:
        for key in list(spec.configs) + list(spec.secrets):
            if not CUSTOM_KEY_RE.match(key):
                fail(CUSTOM_FIELD, f"Key {key!r} is not allowed. {CUSTOM_KEY_RULE}")
        for key in set(spec.configs) & set(spec.secrets):
            fail(CUSTOM_FIELD, f"Key {key!r} is given twice (as a secret and not).")
        for key, value in spec.configs.items():
            value = str(value).strip()
            if value == "":
                fail(CUSTOM_FIELD, f"Key {key!r}: enter a value.")
            configs[key] = value
        for key, value in spec.secrets.items():
            value = "" if value is None else str(value).strip()
            if _keeps_saved(value):
                if saved_secrets is not None and key in saved:
                    value = saved[key]
                else:
                    fail(CUSTOM_FIELD, f"Secret {key!r}: enter a value.")
                    continue
            secrets[key] = value
        if not configs and not secrets and CUSTOM_FIELD not in errors:
            fail(CUSTOM_FIELD, "Key-value pairs: a Custom connection needs at least one key-value pair.")
        if errors:
            raise ConnectionSpecError(errors)
        return configs, secrets

    known = {spec_.name for spec_ in field_specs(spec.type)}
    for key in sorted((set(spec.configs) | set(spec.secrets)) - known):
        fail(key, f"{key}: not a field of {label} connections (fields: {', '.join(sorted(known))}).")
    for spec_ in field_specs(spec.type):
        if spec_.secret:
            value = spec.secrets.get(spec_.name, spec.configs.get(spec_.name))
            value = "" if value is None else str(value).strip()
            if _keeps_saved(value):
                value = saved.get(spec_.name, "") if saved_secrets is not None else ""
            if value:
                secrets[spec_.name] = value
            elif spec_.required:
                if saved_secrets is not None:
                    fail(spec_.name, f"{spec_.label}: the saved value cannot be used; enter it again.")
                else:
                    fail(spec_.name, f"{spec_.label}: this field is required for {label} connections.")
            continue
        value = spec.configs.get(spec_.name)
        value = "" if value is None else str(value).strip()
        if not value and spec_.default:
            value = spec_.default
        if not value:
            if spec_.required:
                fail(spec_.name, f"{spec_.label}: this field is required for {label} connections.")
            continue
        if spec_.url and not _is_http_url(value):
            fail(spec_.name, f"{spec_.label}: enter an http:// or https:// URL, not {value!r}.")
        configs[spec_.name] = value
    if errors:
        raise ConnectionSpecError(errors)
    return configs, secrets


@sensitive_variables("spec", "saved_secrets", "secrets")
def save_connection(
    spec: ConnectionSpec, *, actor: Any = None, update: bool = False, project: Project | None = None
) -> Connection:
    """Create (update=False) or update (update=True) the connection `spec.name`; a new one goes to `project`
    (the default project when None), an update keeps its project.

    Raises ConnectionSpecError with messages that name the field. On update the type cannot
    change and blank secrets keep the saved values. Records an audit event (key names only).
    """
    actor = actor if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        existing = Connection.objects.select_for_update().filter(name=spec.name).first() if spec.name else None
        if update:
            if existing is None:
                raise ConnectionSpecError({"name": [f"Name: there is no connection named {spec.name!r}."]})
            if spec.type != existing.type:
                raise ConnectionSpecError(
                    {
                        "type": [
                            f"Type: connection {spec.name!r} is {_type_label(existing.type)}; "
                            "the type cannot change. Delete it and create it again."
                        ]
                    }
                )
            try:
                saved_secrets = existing.get_secrets()
            except SecretsUnreadable:
                saved_secrets = {}
            configs, secrets = _validated(spec, saved_secrets)
            changed = sorted(
                {k for k in set(configs) | set(existing.configs) if configs.get(k) != existing.configs.get(k)}
            )
            replaced = sorted(k for k in secrets if secrets[k] != saved_secrets.get(k))
            removed = sorted(set(existing.secret_keys) - set(secrets))
            existing.configs = configs
            existing.set_secrets(secrets)
            existing.save()
            audit.record(
                actor,
                "connection.update",
                existing.name,
                project=existing.project_id,
                type=existing.type,
                changed_configs=changed,
                replaced_secrets=replaced,
                removed_secrets=removed,
            )
            logger.info("Connection %s updated", existing.name)
            return existing

        if existing is not None:
            raise ConnectionSpecError({"name": [f"Name: a connection named {spec.name!r} already exists."]})
        configs, secrets = _validated(spec, None)
        connection = Connection(
            name=spec.name, type=spec.type, configs=configs, created_by=actor, project=project or Project.default()
        )
        connection.set_secrets(secrets)
        try:
            with transaction.atomic():
                connection.save()
        except IntegrityError:
            raise ConnectionSpecError({"name": [f"Name: a connection named {spec.name!r} already exists."]}) from None
        audit.record(
            actor,
            "connection.create",
            connection.name,
            project=connection.project,
            type=connection.type,
            configs=sorted(configs),
            secrets=sorted(secrets),
        )
        logger.info("Connection %s (%s) created", connection.name, connection.type)
        return connection


def delete_connection(connection: Connection, *, actor: Any = None) -> None:
    """Delete a connection and record who did it."""
    actor = actor if getattr(actor, "is_authenticated", False) else None
    name, connection_type, project = connection.name, connection.type, connection.project_id
    connection.delete()
    audit.record(actor, "connection.delete", name, project=project, type=connection_type)
    logger.info("Connection %s deleted", name)


@sensitive_variables("secrets", "value")
def to_promptflow_dict(connection: Connection) -> dict:
    """One connection in promptflow's executor dict format (with its secrets)."""
    try:
        secrets = connection.get_secrets()
    except SecretsUnreadable:
        raise SecretsUnreadable(
            f"The secrets of connection {connection.name!r} cannot be decrypted with the current "
            "FLOWDEPLOY_SECRET_KEY (or SECRET_KEY). Restore the previous key or enter them again."
        ) from None
    value = {k: v for k, v in connection.configs.items() if v not in (None, "")}
    value.update(secrets)
    return {
        "type": connection.promptflow_class,
        "name": connection.name,
        "module": PROMPTFLOW_MODULE,
        "value": value,
        "secret_keys": sorted(secrets),
    }


def promptflow_connections(names: Iterable[str] | None = None, project: Any = None) -> dict[str, dict]:
    """The named connections that exist (all when names is None), as promptflow's executor wants them.

    The result is what FlowExecutor.create(connections=...) and DictConnectionProvider accept:
    {name: {"type": "OpenAIConnection", "name": name, "module": "promptflow.connections",
    "value": {...configs and secrets...}, "secret_keys": [...]}}.
    Raises SecretsUnreadable (naming the connection) when the encryption key changed.
    """
    queryset = in_project(project)
    if names is not None:
        queryset = queryset.filter(name__in=list(names))
    return {connection.name: to_promptflow_dict(connection) for connection in queryset}


def in_project(project: Any = None) -> QuerySet[Connection]:
    """The connections of a project (a Project or its pk): a flow uses only its own project's. None: all of
    them, for callers that are not about one flow (the site administrator's tools, tests)."""
    if project is None:
        return Connection.objects.all()
    return Connection.objects.filter(project=project)


def connection_type_names(project: Any = None) -> dict[str, str]:
    """Connection name -> promptflow class name (e.g. "OpenAIConnection") in a project; no secrets."""
    return {
        name: PROMPTFLOW_CLASS[connection_type]
        for name, connection_type in in_project(project).values_list("name", "type")
        if connection_type in PROMPTFLOW_CLASS
    }


# --- promptflow's connection YAML ------------------------------------------------------------

_YAML_IGNORED = {"$schema", "module", "created_date", "last_modified_date", "expiry_time"}


def _scalar(name: str, value: Any, errors: dict[str, list[str]]) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    errors.setdefault(name, []).append(f"{name}: expected a single value, not a {type(value).__name__}.")
    return ""


@sensitive_variables("text", "data", "secrets")
def parse_promptflow_yaml(text: str) -> ConnectionSpec:
    """Read a connection YAML file as `pf connection create -f` accepts it.

    Strong types give their fields at the top level (api_key, api_base or base_url, ...); custom
    connections give `configs:` and `secrets:` mappings. Raises ConnectionSpecError naming the
    field (or the YAML line) that is wrong. Validation of values happens in save_connection().
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "the file"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConnectionSpecError({YAML_FIELD: [f"YAML: {problem} at {where}."]}) from None
    if not isinstance(data, dict):
        raise ConnectionSpecError({YAML_FIELD: ["YAML: expected a mapping with name, type and fields."]})

    errors: dict[str, list[str]] = {}
    name = _scalar("name", data.get("name"), errors).strip()
    if not name:
        errors.setdefault("name", []).append("name: missing; give the connection a name.")
    raw_type = data.get("type")
    if raw_type in (None, ""):
        errors.setdefault("type", []).append(f"type: missing; one of {_supported_types()}.")
        raise ConnectionSpecError(errors)
    connection_type = str(raw_type).strip().lower()
    if connection_type not in ConnectionType.values:
        errors.setdefault("type", []).append(
            f"type: unknown connection type {raw_type!r}; supported types are {_supported_types()}."
        )
        raise ConnectionSpecError(errors)

    configs: dict[str, str] = {}
    secrets: dict[str, str] = {}
    rest = {k: v for k, v in data.items() if k not in _YAML_IGNORED and k not in ("name", "type")}
    if connection_type == ConnectionType.CUSTOM:
        for section, target in (("configs", configs), ("secrets", secrets)):
            block = rest.pop(section, None) or {}
            if not isinstance(block, dict):
                errors.setdefault(section, []).append(f"{section}: expected a mapping of key: value.")
                continue
            for key, value in block.items():
                target[str(key)] = _scalar(f"{section}.{key}", value, errors)
    else:
        auth_mode = rest.pop("auth_mode", None)
        if auth_mode not in (None, "", "key"):
            errors.setdefault("auth_mode", []).append(f"auth_mode: only 'key' is supported here, not {auth_mode!r}.")
        if connection_type == ConnectionType.OPEN_AI and "api_base" in rest:
            if "base_url" in rest:
                errors.setdefault("api_base", []).append("api_base: give base_url or api_base, not both.")
            rest["base_url"] = rest.pop("api_base")
        specs = {spec.name: spec for spec in field_specs(connection_type)}
        for key, value in rest.items():
            spec = specs.get(str(key))
            if spec is None:
                errors.setdefault(str(key), []).append(
                    f"{key}: not a field of {connection_type} connections (fields: {', '.join(sorted(specs))})."
                )
                continue
            (secrets if spec.secret else configs)[spec.name] = _scalar(spec.name, value, errors)
        rest = {}
    for key in rest:
        errors.setdefault(str(key), []).append(
            f"{key}: not a field of custom connections; put values under configs: or secrets:."
        )
    if errors:
        raise ConnectionSpecError(errors)
    return ConnectionSpec(name=name, type=connection_type, configs=configs, secrets=secrets)
