"""Azure ML and promptflow YAML files turned into API request bodies.

What is cheap to check is checked here (the file reads, required fields are there, no unknown field,
mappings are mappings); the API checks the rest and its messages are shown as they are. Fields that
only mean something on Azure are accepted and reported as not used locally.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cli.errors import CliError

FLOW_FILE = "flow.dag.yaml"
NOT_ZIPPED = {"__pycache__", ".promptflow", ".runs", ".git", ".venv", "node_modules"}
IGNORED = {"$schema"}

ENDPOINT_FIELDS = {"name", "auth_mode", "description", "tags", "identity", "traffic", "mirror_traffic"}
ENDPOINT_AZURE_ONLY = {"public_network_access", "compute", "kind", "properties", "location"}

MODEL_FIELDS = {"name", "path", "description", "version"}
MODEL_AZURE_ONLY = {"type", "tags", "properties", "stage", "flavors"}

DEPLOYMENT_FIELDS = {
    "name",
    "endpoint_name",
    "model",
    "instance_type",
    "instance_count",
    "environment_variables",
    "request_settings",
    "tags",
    "data_collector",
    "app_insights_enabled",
    "selected_outputs",
    "connection_overrides",
}
DEPLOYMENT_AZURE_ONLY = {
    "environment",
    "code_configuration",
    "image",
    "inference_config",
    "scale_settings",
    "liveness_probe",
    "readiness_probe",
    "egress_public_network_access",
    "description",
    "properties",
    "type",
    "private_network_connection",
}
REQUEST_SETTINGS = {"request_timeout_ms", "max_concurrent_requests_per_instance"}
REQUEST_SETTINGS_AZURE_ONLY = {"max_queue_wait_ms"}
DATA_COLLECTOR_AZURE_ONLY = {"sampling_rate", "rolling_rate", "request_logging", "destination"}
TRUE_STRINGS = {"true", "yes", "1", "on"}


@dataclass
class Spec:
    """A request body, and what the file held that is not used locally."""

    body: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    source: Path | None = None


@dataclass
class InlineModel:
    """`model: {path: ./flow}` in a deployment YAML: a flow folder to upload first."""

    path: Path
    name: str | None = None


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read it: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise CliError(f"{path}: YAML error{where}: {problem}.") from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected a YAML mapping of fields, like the Azure ML YAML schema.")
    return data


def _check_fields(data: dict, known: set[str], azure_only: set[str], what: str, source: Path, prefix: str = "") -> list:
    unknown = sorted(str(k) for k in set(data) - known - azure_only - IGNORED)
    if unknown:
        name = prefix + unknown[0]
        fields = ", ".join(sorted(known | azure_only))
        raise CliError(f"{source}: unknown field {name!r} in the {what} (known fields: {fields}).")
    return [
        f"{source}: {prefix}{key!r} is not used locally (it only means something on Azure); ignored."
        for key in sorted(set(data) & azure_only)
    ]


def _mapping(data: dict, key: str, source: Path, prefix: str = "") -> dict:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CliError(f"{source}: {prefix}{key} must be a mapping of key: value.")
    return value


def _required(data: dict, key: str, source: Path, what: str) -> Any:
    value = data.get(key)
    if value in (None, ""):
        raise CliError(f"{source}: missing required field {key!r} in the {what}.")
    return value


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in TRUE_STRINGS


# --- connections ---------------------------------------------------------------------------------


def connection_spec(path: str | Path) -> Spec:
    """promptflow's connection YAML, sent as it is: the studio's parser names what is wrong."""
    source = Path(path)
    data = load_yaml(source)
    body = {str(k): (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in data.items()}
    return Spec(body, source=source)


# --- models (flows) ------------------------------------------------------------------------------


def model_spec(path: str | Path) -> tuple[str, Path, str, list[str]]:
    """Azure's model YAML: (name, flow folder, description, notes). `path` is relative to the file."""
    source = Path(path)
    data = load_yaml(source)
    notes = _check_fields(data, MODEL_FIELDS, MODEL_AZURE_ONLY, "model YAML", source)
    name = str(_required(data, "name", source, "model YAML"))
    folder = (source.parent / str(_required(data, "path", source, "model YAML"))).resolve()
    if "version" in data:
        notes.append(f"{source}: 'version' is ignored: versions are assigned on import (1, 2, ...).")
    return name, folder, str(data.get("description") or ""), notes


def zip_flow(folder: Path) -> tuple[bytes, str]:
    """The flow folder as a zip (without caches and run output), or a .zip file as it is."""
    if folder.is_file() and folder.suffix.lower() == ".zip":
        return folder.read_bytes(), folder.name
    if not folder.is_dir():
        raise CliError(f"path: there is no folder at {folder}.")
    if not (folder / FLOW_FILE).is_file():
        raise CliError(f"path: {folder} has no {FLOW_FILE}; a flow is a folder with {FLOW_FILE} at its top.")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in sorted(folder.rglob("*")):
            relative = item.relative_to(folder)
            if item.is_file() and not NOT_ZIPPED.intersection(relative.parts):
                archive.write(item, relative.as_posix())
    return buffer.getvalue(), f"{folder.name}.zip"


# --- online endpoints ----------------------------------------------------------------------------


def endpoint_spec(path: str | Path) -> Spec:
    source = Path(path)
    data = load_yaml(source)
    notes = _check_fields(data, ENDPOINT_FIELDS, ENDPOINT_AZURE_ONLY, "online endpoint YAML", source)
    body = {key: data[key] for key in ENDPOINT_FIELDS if key in data and data[key] is not None}
    for key in ("tags", "identity", "traffic", "mirror_traffic"):
        _mapping(data, key, source)
    if "identity" in body:
        _check_fields(body["identity"], {"type", "user_assigned_identities"}, set(), "identity", source, "identity.")
    if "tags" in body:
        body["tags"] = {str(k): "" if v is None else str(v) for k, v in body["tags"].items()}
    return Spec(body, notes, source)


def parse_traffic(text: str, option: str) -> dict[str, int]:
    """`blue=90 green=10` (or comma separated) as {"blue": 90, "green": 10}."""
    traffic: dict[str, int] = {}
    for item in text.replace(",", " ").split():
        name, sep, percent = item.partition("=")
        if not sep or not name or not percent.strip().isdigit():
            raise CliError(f"{option}: expected name=percent pairs like 'blue=90 green=10', not {item!r}.")
        traffic[name] = int(percent)
    return traffic


# --- online deployments --------------------------------------------------------------------------


def model_reference(value: Any, source: Path) -> str | InlineModel:
    if isinstance(value, dict):
        _check_fields(value, {"path", "name", "version", "description"}, {"type"}, "model", source, "model.")
        if not value.get("path"):
            raise CliError(f"{source}: model.path: give the flow folder, relative to the YAML file.")
        return InlineModel((source.parent / str(value["path"])).resolve(), value.get("name"))
    if not isinstance(value, str):
        raise CliError(f"{source}: model: give name:version, name@latest or a mapping with path.")
    if value.startswith("azureml://"):
        raise CliError(f"{source}: model: registry references ({value}) are not available locally; use name:version.")
    reference = value.removeprefix("azureml:")
    if ":" not in reference and "@" not in reference:
        raise CliError(
            f"{source}: model: {value!r} names no version; give name:version, name@latest or {{path: ./flow}}."
        )
    return reference


def deployment_spec(path: str | Path, require_model: bool = True) -> tuple[Spec, str | InlineModel | None]:
    """Azure's managed online deployment YAML as the API's body, and the model it names."""
    source = Path(path)
    data = load_yaml(source)
    what = "online deployment YAML"
    notes = _check_fields(data, DEPLOYMENT_FIELDS, DEPLOYMENT_AZURE_ONLY, what, source)
    body: dict[str, Any] = {}
    for key in ("name", "endpoint_name"):
        if data.get(key) not in (None, ""):
            body[key] = str(data[key])
    model = None
    if data.get("model") not in (None, ""):
        model = model_reference(data["model"], source)
    elif require_model:
        _required(data, "model", source, what)
    if "instance_type" in data:
        body["vm_size"] = data["instance_type"]
    for key in ("instance_count", "app_insights_enabled", "selected_outputs"):
        if data.get(key) is not None:
            body[key] = data[key]
    if isinstance(body.get("app_insights_enabled"), str):
        body["app_insights_enabled"] = _truthy(body["app_insights_enabled"])
    for key in ("environment_variables", "tags", "connection_overrides"):
        if key in data:
            body[key] = {str(k): "" if v is None else str(v) for k, v in _mapping(data, key, source).items()}
    if "selected_outputs" in body and not isinstance(body["selected_outputs"], list):
        raise CliError(f"{source}: selected_outputs must be a list of the flow's output names.")
    settings = _mapping(data, "request_settings", source)
    notes += _check_fields(
        settings, REQUEST_SETTINGS, REQUEST_SETTINGS_AZURE_ONLY, "request_settings", source, "request_settings."
    )
    body.update({key: settings[key] for key in REQUEST_SETTINGS if settings.get(key) is not None})
    if "data_collector" in data:
        collector = _mapping(data, "data_collector", source)
        notes += _check_fields(
            collector, {"collections"}, DATA_COLLECTOR_AZURE_ONLY, "data_collector", source, "data_collector."
        )
        collections = _mapping(collector, "collections", source, "data_collector.")
        enabled = []
        for name, settings_ in collections.items():
            if not isinstance(settings_, dict):
                raise CliError(f"{source}: data_collector.collections.{name} must be a mapping with enabled.")
            enabled.append(_truthy(settings_.get("enabled", False)))
        body["data_collection"] = any(enabled)
    return Spec(body, notes, source), model
