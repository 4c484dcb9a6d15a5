"""A deployment exported for Azure Machine Learning: a zip of `az ml` YAML, the serving image's build context, the
flow, and a README with the commands that create them in a workspace.

    model.yml  endpoint.yml  deployment.yml  README.md  request.json (the flow's inputs, to try it with)
    environment/   environment.yml, Dockerfile, start.sh, runtime-requirements.txt, requirements.txt
    flow/          the flow snapshot (the model's path)

The YAML is what endpoints/providers/azureml/artifacts.py builds for the azureml provider, written with the
entities' own `_to_dict()`, so `az ml` and azure-ai-ml's `load_*` read it back. No secret is ever written: no
endpoint key, no connection secret (the flow reads its connections from the workspace). The deployment's
environment variables are, which is why an export needs READ_DATA (Contributor).

Importing this module imports azure-ai-ml (about a second): views import it when a request needs it.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any

import yaml

from endpoints.connections import resolve
from endpoints.models import Deployment, IdentityType
from endpoints.providers.azureml import artifacts
from endpoints.providers.azureml.artifacts import WorkspaceInfo
from flows.models import FlowVersion
from workspace import azure
from workspace.models import Project

SCHEMAS = {
    "model": "https://azuremlschemas.azureedge.net/latest/model.schema.json",
    "environment": "https://azuremlschemas.azureedge.net/latest/environment.schema.json",
    "endpoint": "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json",
    "deployment": "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json",
}
FLOW_FOLDER = "flow"
ENVIRONMENT_FOLDER = "environment"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same deployment exports to the same bytes
SECRETS_READER = "Azure Machine Learning Workspace Connection Secrets Reader"


class ExportError(Exception):
    """The deployment cannot be exported; the message says why."""


def workspace_info_for(project: Project) -> WorkspaceInfo | None:
    """The Azure Machine Learning workspace the project is connected to, if any."""
    workspace = azure.project_workspace(project)
    return WorkspaceInfo.of(workspace) if workspace is not None else None


def export_filename(deployment: Deployment) -> str:
    return f"{deployment.endpoint.name}-{deployment.name}-azureml.zip"


def export_zip(deployment: Deployment, workspace: WorkspaceInfo | None = None) -> bytes:
    buffer = io.BytesIO()
    write_zip(deployment, buffer, workspace)
    return buffer.getvalue()


def write_zip(deployment: Deployment, destination: IO[bytes], workspace: WorkspaceInfo | None = None) -> None:
    """Write the export of `deployment` to `destination`. Without `workspace`, placeholders stand for the
    subscription, resource group and workspace (the README lists them)."""
    snapshot = deployment.flow_version.snapshot_dir
    if not snapshot.is_dir():
        raise ExportError(f"The snapshot of flow {deployment.flow_version} is missing from the studio's disk.")
    with tempfile.TemporaryDirectory(prefix="flowdeploy-export-") as scratch:
        files = _files(deployment, Path(scratch), workspace)
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in sorted(files.items()):
            _add(archive, name, content)
        for path in sorted(p for p in snapshot.rglob("*") if p.is_file() and not p.is_symlink()):
            _add(archive, f"{FLOW_FOLDER}/{path.relative_to(snapshot).as_posix()}", path.read_bytes())


def _files(deployment: Deployment, scratch: Path, workspace: WorkspaceInfo | None) -> dict[str, bytes]:
    """Every file of the export but the flow's, by its name in the zip."""
    context = artifacts.write_build_context(deployment, scratch / ENVIRONMENT_FOLDER)
    environment = artifacts.environment_for(deployment, context)
    model = artifacts.model_for(deployment.flow_version)
    endpoint = artifacts.endpoint_for(
        deployment.endpoint, artifacts.identity_resource_id(deployment.endpoint, workspace)
    )
    online_deployment = artifacts.deployment_for(
        deployment,
        model,
        deployment.environment or environment,  # a custom environment is used as is
        workspace,
        artifacts.identity_client_id(deployment.endpoint),
    )
    # The entities write absolute paths; the YAML points into the zip instead, relative to each file.
    files = {f"{ENVIRONMENT_FOLDER}/{p.name}": p.read_bytes() for p in context.iterdir() if p.is_file()}
    files[f"{ENVIRONMENT_FOLDER}/environment.yml"] = _yaml("environment", environment, build={"path": "."})
    files["model.yml"] = _yaml("model", model, path=FLOW_FOLDER)
    files["endpoint.yml"] = _yaml("endpoint", endpoint)
    files["deployment.yml"] = _yaml("deployment", online_deployment)
    files["request.json"] = (json.dumps(sample_request(deployment.flow_version), indent=2) + "\n").encode()
    files["README.md"] = readme(deployment, model, environment, workspace).encode()
    return files


def sample_request(version: FlowVersion) -> dict[str, Any]:
    """A scoring request of the flow's inputs with their defaults (empty where there is none), to try it with."""
    empty = {"list": [], "object": {}, "int": 0, "double": 0.0, "bool": False}
    request: dict[str, Any] = {}
    for name, spec in version.inputs.items():
        default = (spec or {}).get("default")
        request[name] = default if default is not None else empty.get((spec or {}).get("type", "string"), "")
    return request


def _yaml(kind: str, entity: Any, **replace: Any) -> bytes:
    data = _without_none(json.loads(json.dumps(entity._to_dict())))
    data.update(replace)
    return yaml.safe_dump({"$schema": SCHEMAS[kind], **data}, sort_keys=False, allow_unicode=True).encode()


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _add(archive: zipfile.ZipFile, name: str, content: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, content)


# --- README --------------------------------------------------------------------------------------------------


def readme(deployment: Deployment, model: Any, environment: Any, workspace: WorkspaceInfo | None = None) -> str:
    """The steps that create the deployment in a workspace, with the exact `az ml` commands."""
    endpoint = deployment.endpoint
    version = deployment.flow_version
    sections = [
        f"# {endpoint.name}/{deployment.name} for Azure Machine Learning\n\n"
        f"Exported from Flowdeploy: flow {version.flow.name}, version {version.version} (content "
        f"{version.content_hash}), as a managed online endpoint and deployment. This archive holds no key and "
        "no connection secret.\n\n"
        f"- `model.yml`: the flow (`{FLOW_FOLDER}/`) as model {model.name}:{model.version}.\n"
        f"- `{ENVIRONMENT_FOLDER}/environment.yml`: environment {environment.name}:{environment.version}, built "
        f"from `{ENVIRONMENT_FOLDER}/Dockerfile`: promptflow's serving app on Flowdeploy's pinned runtime, not the "
        "retired prompt flow images.\n"
        "- `endpoint.yml`, `deployment.yml`: the endpoint and the deployment, with this deployment's settings.\n",
        _before_you_start(deployment, workspace),
        _connections(deployment),
        _commands(deployment, workspace),
    ]
    return "\n".join(section for section in sections if section)


def _before_you_start(deployment: Deployment, workspace: WorkspaceInfo | None) -> str:
    names = workspace or artifacts.PLACEHOLDERS
    lines = [
        "## Before you start\n",
        "- The Azure CLI with its `ml` extension: `az extension add --name ml`.",
        f"- Your workspace as the default: `az configure --defaults group={names.resource_group} "
        f"workspace={names.workspace_name}`.",
    ]
    if workspace is None:
        files = ["`deployment.yml` (`PRT_CONFIG_OVERRIDE`)"]
        if deployment.endpoint.identity_type == IdentityType.USER:
            files.append("`endpoint.yml` (the identity's resource id)")
        lines.append(
            f"- Replace `{artifacts.PLACEHOLDERS.subscription_id}`, `{artifacts.PLACEHOLDERS.resource_group}` and "
            f"`{artifacts.PLACEHOLDERS.workspace_name}` in {' and '.join(files)} with your subscription, resource "
            "group and workspace."
        )
    if deployment.endpoint.identity_type == IdentityType.USER:
        lines.append(
            "- The user-assigned identity must exist in that resource group, hold "
            f"'{SECRETS_READER}' on the workspace, and `AZURE_CLIENT_ID` in `deployment.yml` must be its client id."
        )
    return "\n".join(lines) + "\n"


def _connections(deployment: Deployment) -> str:
    version = deployment.flow_version
    if not version.connections:
        return "## Connections\n\nThe flow uses no connection.\n"
    lines = [
        "## Connections\n",
        "The flow reads these connections from the workspace, with their secrets, when the deployment starts. "
        "Create each in the workspace with this exact name (Azure AI Studio, Connections) before the deployment:\n",
    ]
    for entry in version.connections:
        target = resolve(version, deployment.connection_overrides, entry["name"]) or entry["name"]
        details = []
        if entry.get("types"):
            details.append("type " + " or ".join(entry["types"]))
        if entry.get("nodes"):
            details.append("used by " + ", ".join(entry["nodes"]))
        if target != entry["name"]:
            details.append(f"in place of the flow's `{entry['name']}`")
        lines.append(f"- `{target}`" + (f" ({'; '.join(details)})" if details else ""))
    return "\n".join(lines) + "\n"


def _commands(deployment: Deployment, workspace: WorkspaceInfo | None) -> str:
    endpoint = deployment.endpoint
    commands = [
        "az ml model create --file model.yml",
        f"az ml environment create --file {ENVIRONMENT_FOLDER}/environment.yml",
        "az ml online-endpoint create --file endpoint.yml",
    ]
    if endpoint.identity_type == IdentityType.SYSTEM and deployment.flow_version.connections:
        workspace_id = (workspace or artifacts.PLACEHOLDERS).arm_id
        commands += [
            f"principal=$(az ml online-endpoint show --name {endpoint.name} --query identity.principal_id -o tsv)",
            f'az role assignment create --assignee-object-id "$principal" --assignee-principal-type ServicePrincipal '
            f'--role "{SECRETS_READER}" --scope {workspace_id}',
        ]
    commands.append("az ml online-deployment create --file deployment.yml --all-traffic")
    text = (
        "## Deploy\n\n"
        "From the folder of this README (the environment's image is built in the workspace's registry; the "
        "deployment takes its usual 10 to 15 minutes):\n\n```sh\n" + "\n".join(commands) + "\n```\n"
    )
    if endpoint.identity_type == IdentityType.SYSTEM and deployment.flow_version.connections:
        text += (
            f"\nThe role assignment lets the endpoint's system-assigned identity read the connections' secrets"
            f"{' (enforced: the endpoint checks it)' if endpoint.enforce_access_to_connection_secrets else ''}.\n"
        )
    text += (
        "\nThen try it with the flow's inputs in `request.json` (their defaults; fill in the empty ones):\n\n```sh\n"
        f"az ml online-endpoint invoke --name {endpoint.name} --deployment-name {deployment.name} "
        "--request-file request.json\n```\n"
    )
    return text
