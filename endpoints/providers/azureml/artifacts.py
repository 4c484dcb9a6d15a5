"""A deployment as Azure Machine Learning artifacts: azure-ai-ml entities for its model, environment, endpoint and
deployment, built without any network call. The azureml provider sends them; the export (endpoints/export.py)
writes them as `az ml` YAML.

- The model is the flow snapshot, registered as a `custom_model` with the properties Azure AI Studio gives a
  prompt flow model (`azureml.promptflow.*`).
- The environment is a Docker build context of our own, not the retired prompt flow runtime images: python,
  the runtime Flowdeploy pins (runtime/requirements.txt) plus promptflow-core's `azureml-serving` extra, the
  flow's requirements, and gunicorn serving promptflow's app (`/score`, `/health`) on port 8080 with its
  AzureML extension, which reads the workspace's connections through PRT_CONFIG_OVERRIDE and the endpoint's
  identity. The flow is the model that Azure mounts under $AZUREML_MODEL_DIR. The context is deterministic, so
  its content hash is the environment's version.
- The endpoint and deployment carry the rows' settings, as the local provider applies them (the selected
  outputs, connection overrides, request timeout, data collection).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from azure.ai.ml.entities import (
    BuildContext,
    DataCollector,
    DeploymentCollection,
    Environment,
    IdentityConfiguration,
    ManagedIdentityConfiguration,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    Model,
    OnlineRequestSettings,
    ProbeSettings,
)

from endpoints import sizes
from endpoints.environment_variables import name_problem
from endpoints.models import IdentityType
from endpoints.providers.azureml import AZURE_MAX_REQUEST_TIMEOUT_MS
from runtime.environments import BASE_REQUIREMENTS, layer_requirements
from runtime.requirements_policy import base_pins

if TYPE_CHECKING:
    from endpoints.models import Deployment, Endpoint
    from flows.models import FlowVersion
    from workspace.models import AzureWorkspace

PORT = 8080
INFERENCE_CONFIG = {
    "liveness_route": {"path": "/health", "port": PORT},
    "readiness_route": {"path": "/health", "port": PORT},
    "scoring_route": {"path": "/score", "port": PORT},
}
MAX_REQUEST_TIMEOUT_MS = AZURE_MAX_REQUEST_TIMEOUT_MS
PROBE = {"initial_delay": 10, "period": 10, "timeout": 10, "failure_threshold": 30}
BASE_IMAGE = "python:3.11-slim"
# The app and extension Azure's prompt flow images start (extension_type='azureml': workspace connections, MI).
SERVING_APP = "promptflow.core._serving.app:create_app(extension_type='azureml')"
ENFORCE_SECRETS = "enforce_access_to_default_secret_stores"
RUNTIME_REQUIREMENTS = "runtime-requirements.txt"
FLOW_REQUIREMENTS = "requirements.txt"
ENVIRONMENT_VERSION_LENGTH = 16


@dataclass(frozen=True)
class WorkspaceInfo:
    """The Azure Machine Learning workspace a deployment goes to."""

    subscription_id: str
    resource_group: str
    workspace_name: str

    @classmethod
    def of(cls, workspace: AzureWorkspace) -> WorkspaceInfo:
        """The names of a project's connected workspace (workspace.models.AzureWorkspace)."""
        return cls(workspace.subscription_id, workspace.resource_group, workspace.workspace_name)

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )


# What an export without a workspace writes, for the user to replace (the README says where).
PLACEHOLDERS = WorkspaceInfo("<subscription-id>", "<resource-group>", "<workspace-name>")


class Traffic(NamedTuple):
    traffic: dict[str, int]
    mirror_traffic: dict[str, int]


# --- model -------------------------------------------------------------------------------------------------


def asset_name(text: str) -> str:
    """`text` as an Azure asset name: letters, digits, '-', '_' and '.', not starting with '-_.' nor ending in '.'."""
    name = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in text)
    return name.lstrip("-_.").rstrip(".")[:255] or "flow"


def model_for(version: FlowVersion, path: Path | str | None = None) -> Model:
    """The flow snapshot as a model (`path`: where the snapshot is, by default the studio's copy)."""
    properties = {"azureml.promptflow.source_flow_id": version.flow.name}
    if version.is_chat:
        properties["azureml.promptflow.mode"] = "chat"
        properties["azureml.promptflow.chat_input"] = version.chat_input
        if version.chat_output:
            properties["azureml.promptflow.chat_output"] = version.chat_output
    return Model(
        name=asset_name(version.flow.name),
        version=str(version.version),
        type="custom_model",
        path=str(path if path is not None else version.snapshot_dir),
        description=f"Prompt flow {version.flow.name}, version {version.version} (content {version.content_hash}).",
        properties=properties,
    )


# --- environment -------------------------------------------------------------------------------------------


def _flow_version(subject: Deployment | FlowVersion) -> FlowVersion:
    return getattr(subject, "flow_version", subject)


def build_files(subject: Deployment | FlowVersion) -> dict[str, bytes]:
    """The build context's files by name: the same flow requirements and runtime pins give the same bytes."""
    requirements = layer_requirements(_flow_version(subject).requirements)
    files = {
        "Dockerfile": _dockerfile(bool(requirements)).encode(),
        RUNTIME_REQUIREMENTS: BASE_REQUIREMENTS.read_bytes(),
        "start.sh": START_SCRIPT.encode(),
    }
    if requirements:
        files[FLOW_REQUIREMENTS] = (requirements + "\n").encode()
    return files


def write_build_context(subject: Deployment | FlowVersion, folder: Path) -> Path:
    """Write the Docker build context of the serving image into `folder`; returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in build_files(subject).items():
        (folder / name).write_bytes(content)
    return folder


def context_hash(folder: Path) -> str:
    """A digest of every file under `folder`, by relative path and content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix().encode()
        content = path.read_bytes()
        digest.update(b"%d:%s%d:" % (len(relative), relative, len(content)))
        digest.update(content)
    return digest.hexdigest()


def environment_for(subject: Deployment | FlowVersion, context_dir: Path) -> Environment:
    """The environment built from `context_dir` (write_build_context), versioned by the context's hash."""
    version = _flow_version(subject)
    return Environment(
        name=f"{asset_name(version.flow.name)}-env",
        version=context_hash(context_dir)[:ENVIRONMENT_VERSION_LENGTH],
        build=BuildContext(path=str(context_dir)),
        inference_config=INFERENCE_CONFIG,
        description=f"promptflow's serving app for flow {version.flow.name}, on Flowdeploy's pinned runtime.",
    )


def _promptflow_core_pin() -> str:
    version = base_pins(BASE_REQUIREMENTS)["promptflow-core"]
    return f"promptflow-core[azureml-serving]=={version}"


def _dockerfile(with_requirements: bool) -> str:
    lines = [
        "# promptflow's serving app on the runtime Flowdeploy pins, plus the flow's requirements. The flow is the",
        "# model Azure mounts under $AZUREML_MODEL_DIR; start.sh finds it and serves /score and /health on 8080.",
        f"FROM {BASE_IMAGE}",
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1",
        "WORKDIR /app",
        f"COPY {RUNTIME_REQUIREMENTS} ./",
        f'RUN pip install -r {RUNTIME_REQUIREMENTS} "{_promptflow_core_pin()}"',
    ]
    if with_requirements:
        lines += [f"COPY {FLOW_REQUIREMENTS} ./", f"RUN pip install -r {FLOW_REQUIREMENTS}"]
    lines += [
        "COPY start.sh ./",
        "RUN useradd --create-home --uid 1000 flow",
        "USER flow",
        f"EXPOSE {PORT}",
        'CMD ["sh", "/app/start.sh"]',
    ]
    return "\n".join(lines) + "\n"


START_SCRIPT = f"""#!/bin/sh
# Serve the flow Azure mounted from the model, found as promptflow's Azure images find it: the folder under
# $AZUREML_MODEL_DIR that holds flow.dag.yaml (or flow.flex.yaml), unless PROMPTFLOW_PROJECT_PATH names one.
set -e
if [ -z "$PROMPTFLOW_PROJECT_PATH" ]; then
    for dir in "$AZUREML_MODEL_DIR" "$AZUREML_MODEL_DIR"/*/; do
        if [ -f "$dir/flow.dag.yaml" ] || [ -f "$dir/flow.flex.yaml" ]; then
            PROMPTFLOW_PROJECT_PATH="${{dir%/}}"
            break
        fi
    done
fi
if [ -z "$PROMPTFLOW_PROJECT_PATH" ]; then
    echo "No flow.dag.yaml under AZUREML_MODEL_DIR=$AZUREML_MODEL_DIR" >&2
    exit 1
fi
export PROMPTFLOW_PROJECT_PATH
cd "$PROMPTFLOW_PROJECT_PATH"
exec gunicorn --bind 0.0.0.0:{PORT} --worker-class gthread \\
    --workers "${{PROMPTFLOW_WORKER_NUM:-$(nproc)}}" --threads "${{PROMPTFLOW_WORKER_THREADS:-1}}" \\
    --timeout {MAX_REQUEST_TIMEOUT_MS // 1000 + 30} --keep-alive 75 \\
    "{SERVING_APP}"
"""


# --- endpoint ----------------------------------------------------------------------------------------------


def identity_resource_id(endpoint: Endpoint, workspace: WorkspaceInfo | None = None) -> str | None:
    """The ARM id of the endpoint's user-assigned identity, None when system-assigned: the identity's
    `azure_resource_id` when set, else a guess in the workspace's resource group. Without a workspace,
    placeholders stand for the subscription and resource group."""
    if endpoint.identity_type != IdentityType.USER:
        return None
    where = workspace or PLACEHOLDERS
    identity = endpoint.user_assigned_identity
    if identity is not None and identity.azure_resource_id:
        return identity.azure_resource_id
    name = identity.name if identity is not None else "<identity-name>"
    return (
        f"/subscriptions/{where.subscription_id}/resourceGroups/{where.resource_group}"
        f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )


def identity_client_id(endpoint: Endpoint) -> str | None:
    """The Azure client id of the endpoint's user-assigned identity (AZURE_CLIENT_ID), when it was entered."""
    identity = endpoint.user_assigned_identity if endpoint.identity_type == IdentityType.USER else None
    return (identity.azure_client_id or None) if identity is not None else None


def endpoint_for(endpoint: Endpoint, identity_resource_id: str | None) -> ManagedOnlineEndpoint:
    """The endpoint without its traffic (traffic_for): Azure refuses traffic to deployments not created yet."""
    properties = {}
    if endpoint.identity_type == IdentityType.USER:
        if not identity_resource_id:
            raise ValueError(f"Endpoint {endpoint.name} runs as a user-assigned identity: give its resource id.")
        identity = IdentityConfiguration(
            type="user_assigned",
            user_assigned_identities=[ManagedIdentityConfiguration(resource_id=identity_resource_id)],
        )
    else:
        identity = IdentityConfiguration(type="system_assigned")
        properties[ENFORCE_SECRETS] = "enabled" if endpoint.enforce_access_to_connection_secrets else "disabled"
    return ManagedOnlineEndpoint(
        name=endpoint.name,
        auth_mode=endpoint.auth_type,
        identity=identity,
        properties=properties,
        tags=_strings(endpoint.tags),
        description=endpoint.description or f"Endpoint {endpoint.name}, from Flowdeploy.",
    )


def traffic_for(endpoint: Endpoint) -> Traffic:
    """The endpoint's traffic and mirror traffic, without the zeroes (as azure-ai-ml strips them)."""
    return Traffic(_percentages(endpoint.traffic), _percentages(endpoint.mirror_traffic))


def _percentages(split: dict) -> dict[str, int]:
    return {str(name): int(percent) for name, percent in (split or {}).items() if int(percent)}


# --- deployment --------------------------------------------------------------------------------------------


def prt_config_override(workspace: WorkspaceInfo, endpoint_name: str, deployment_name: str) -> str:
    """PRT_CONFIG_OVERRIDE as Azure AI Studio sets it: promptflow's AzureML extension reads the workspace's
    connections with it."""
    return (
        f"deployment.subscription_id={workspace.subscription_id},"
        f"deployment.resource_group={workspace.resource_group},"
        f"deployment.workspace_name={workspace.workspace_name},"
        f"deployment.endpoint_name={endpoint_name},"
        f"deployment.deployment_name={deployment_name}"
    )


def environment_variables_for(
    deployment: Deployment, workspace: WorkspaceInfo | None = None, identity_client_id: str | None = None
) -> dict[str, str]:
    """The deployment's variables, and what Flowdeploy adds for promptflow's serving app on Azure."""
    version = deployment.flow_version
    endpoint = deployment.endpoint
    env = {str(k): str(v) for k, v in deployment.environment_variables.items() if name_problem(str(k)) is None}
    if deployment.selected_outputs and set(deployment.selected_outputs) != set(version.outputs):
        env["PROMPTFLOW_RESPONSE_INCLUDED_FIELDS"] = json.dumps(deployment.selected_outputs)
    # A connection override is promptflow's name override: a variable named after the flow's connection
    # (spaces as '_'), whose value names the workspace connection to use instead.
    for used, target in sorted(deployment.connection_overrides.items()):
        if target and target != used and used in version.connection_names():
            env[used.replace(" ", "_")] = target
    size = sizes.SIZES.get(deployment.vm_size)
    if size is not None:  # the same workers and threads as an instance of this size here
        env["PROMPTFLOW_WORKER_NUM"] = str(size.workers)
        env["PROMPTFLOW_WORKER_THREADS"] = str(size.threads)
    env["PRT_CONFIG_OVERRIDE"] = prt_config_override(workspace or PLACEHOLDERS, endpoint.name, deployment.name)
    if endpoint.identity_type == IdentityType.USER:
        identity = endpoint.user_assigned_identity
        if identity_client_id:
            env["AZURE_CLIENT_ID"] = identity_client_id
        else:
            name = identity.name if identity is not None else "the user-assigned identity"
            env.setdefault("AZURE_CLIENT_ID", f"<client-id of {name}>")
    return env


def asset_reference(asset: Model | Environment | str) -> str:
    """How a deployment names a model or an environment: its id once registered, else `azureml:name:version`."""
    if isinstance(asset, str):
        return asset
    return asset.id or f"azureml:{asset.name}:{asset.version}"


def deployment_for(
    deployment: Deployment,
    model: Model | str,
    environment: Environment | str,
    workspace_info: WorkspaceInfo | None = None,
    identity_client_id: str | None = None,
) -> ManagedOnlineDeployment:
    """The deployment of `model` in `environment` (entities, or their ids) with the row's settings."""
    collector = None
    if deployment.data_collection:
        from monitoring.services import policy_for

        rate = policy_for(deployment.endpoint.name, deployment.name).sampling_rate
        collector = DataCollector(
            collections={
                "model_inputs": DeploymentCollection(enabled="true"),
                "model_outputs": DeploymentCollection(enabled="true"),
            },
            sampling_rate=rate if rate < 1 else None,  # the wizard's Sampling rate; Azure's default is all
        )
    return ManagedOnlineDeployment(
        name=deployment.name,
        endpoint_name=deployment.endpoint.name,
        model=asset_reference(model),
        environment=asset_reference(environment),
        instance_type=deployment.vm_size,
        instance_count=deployment.instance_count,
        environment_variables=environment_variables_for(deployment, workspace_info, identity_client_id),
        request_settings=OnlineRequestSettings(
            request_timeout_ms=min(deployment.request_timeout_ms, MAX_REQUEST_TIMEOUT_MS),
            max_concurrent_requests_per_instance=deployment.max_concurrent_requests_per_instance,
        ),
        liveness_probe=ProbeSettings(**PROBE),
        readiness_probe=ProbeSettings(**PROBE),
        data_collector=collector,
        app_insights_enabled=deployment.app_insights_enabled,
        tags=_strings(deployment.tags),
    )


def _strings(tags: dict) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in (tags or {}).items()}
