"""The Azure Machine Learning provider: an endpoint of a project connected to an Azure ML workspace
(workspace/azure.py) becomes a managed online endpoint, each deployment a managed online deployment.

Every long call (`begin_create_or_update`, `begin_delete`) is polled here in the Celery job, between heartbeats,
so a deletion can stop a job at its next check and the reaper sees a live job. Nothing is kept between polls
but the names, which are the rows' own: a job run again gets the same model and environment versions (content
hashed) and finds what the previous run made.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.core.polling import LROPoller

from django.db import transaction

from endpoints.connections import connection_problems
from endpoints.jobs import Job, ProvisioningFailed
from endpoints.models import Deployment, DeploymentState, Endpoint, IdentityType, Phase
from endpoints.providers import Progress, Provider, ProviderError
from endpoints.providers.azureml import artifacts
from flows.models import FlowVersion
from workspace import azure
from workspace.crypto import SecretsUnreadable
from workspace.models import AzureWorkspace, Project

POLL_SECONDS = 2.0
# azure-ai-ml's connection types (Azure's categories in snake case) as promptflow's connection classes.
PROMPTFLOW_TYPES = {
    "azure_open_ai": "AzureOpenAIConnection",
    "open_ai": "OpenAIConnection",
    "serp": "SerpConnection",
    "cognitive_search": "CognitiveSearchConnection",
    "azure_ai_search": "CognitiveSearchConnection",
    "serverless": "ServerlessConnection",
    "custom": "CustomConnection",
    "custom_keys": "CustomConnection",
}


def promptflow_type(azure_type: str | None) -> str:
    return PROMPTFLOW_TYPES.get((azure_type or "").lower(), "")


CONTAINER_TYPES = {"inference-server": "InferenceServer", "storage-initializer": "StorageInitializer"}


class AzureFailed(ProviderError):
    """An Azure operation failed: which one, and Azure's message verbatim."""

    def __init__(self, operation: str, exc: Exception):
        super().__init__(f"{operation} failed: {azure.azure_message(exc)}")


def identity_problem(endpoint: Endpoint) -> str:
    """A user-assigned identity runs the endpoint on Azure only by its Azure resource and client ids."""
    if endpoint.identity_type != IdentityType.USER or endpoint.user_assigned_identity is None:
        return ""
    identity = endpoint.user_assigned_identity
    if identity.azure_resource_id and identity.azure_client_id:
        return ""
    return (
        f"User-assigned identity {identity.name} has no Azure resource ID or client ID: an Owner enters them under "
        f"Access control (IAM) > Managed identities of project '{endpoint.project}' (az identity show prints both)."
    )


def workspace_of(endpoint: Endpoint) -> AzureWorkspace:
    workspace = azure.project_workspace(endpoint.project)
    if workspace is None:
        raise ProviderError(
            f"Endpoint {endpoint.name} runs on Azure Machine Learning, but project '{endpoint.project}' is not "
            "connected to an Azure ML workspace. An Owner connects it on the project's Azure Machine Learning page."
        )
    return workspace


def signed_in(make_client: Callable[[AzureWorkspace], Any], workspace: AzureWorkspace) -> Any:
    """A client of the workspace's credential; ProviderError when its saved secret cannot be read."""
    try:
        return make_client(workspace)
    except SecretsUnreadable as exc:
        raise ProviderError(f"The Azure workspace's saved credential cannot be used: {exc}") from exc


class Credentials:
    """Keys and tokens read from Azure, kept briefly in this process: the Test tab and the API's invoke score
    with them on every request, and reading them costs two calls to Azure. A regeneration from the studio
    forgets them at once; one made in Azure's portal is seen within KEYS_TTL seconds."""

    KEYS_TTL = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[float, dict]] = {}

    @staticmethod
    def key(endpoint: Endpoint, kind: str) -> tuple:
        return (kind, endpoint.pk, endpoint.created_at)  # a re-created endpoint of the same name is another

    def get(self, endpoint: Endpoint, kind: str, fetch: Callable[[], tuple[dict, float]]) -> dict:
        """The cached value, or fetch() -> (value, seconds it may be kept)."""
        key, now = self.key(endpoint, kind), time.monotonic()
        with self._lock:
            found = self._entries.get(key)
        if found is not None and found[0] > now:
            return found[1]
        value, ttl = fetch()
        with self._lock:
            self._entries[key] = (now + ttl, value)
        return value

    def forget(self, endpoint: Endpoint) -> None:
        with self._lock:
            for kind in ("keys", "token"):
                self._entries.pop(self.key(endpoint, kind), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


credentials = Credentials()


def wait(poller: LROPoller, check: Callable[[], None], operation: str) -> Any:
    """The poller's result, checking the job (heartbeat, cancellation) between polls."""
    try:
        while not poller.done():
            check()
            poller.wait(POLL_SECONDS)
        return poller.result()
    except AzureError as exc:
        raise AzureFailed(operation, exc) from exc


def _get_or_none(operation: str, get: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """What Azure has, None when it has nothing of that name, AzureFailed naming `operation` for any refusal."""
    try:
        return get(*args, **kwargs)
    except ResourceNotFoundError:
        return None
    except AzureError as exc:
        raise AzureFailed(operation, exc) from exc


class AzureMLProvider(Provider):
    """One instance serves one job or request: it signs in once per workspace (its MLClient keeps the token)."""

    name = "azureml"

    def __init__(self) -> None:
        self._clients: dict[int, Any] = {}

    def client(self, endpoint: Endpoint) -> Any:
        return self._client_of(workspace_of(endpoint))

    def _client_of(self, workspace: AzureWorkspace) -> Any:
        if workspace.pk not in self._clients:
            self._clients[workspace.pk] = signed_in(azure.ml_client, workspace)
        return self._clients[workspace.pk]

    def capacity_problem(self, vm_size: str, instance_count: int, excluding: Deployment | None = None) -> str:
        return ""  # Azure checks the subscription's quota itself; its refusal is shown as it words it

    def validate(self, job: Job) -> list[str]:
        deployment = job.deployment
        identity = identity_problem(deployment.endpoint)
        if identity:
            return [identity]
        return self.connection_problems(
            deployment.flow_version, deployment.connection_overrides, deployment.endpoint.project
        )

    def connection_types(self, project: Project) -> dict[str, str]:
        """The workspace's connections (on Azure a flow reads them by name), with their promptflow types ("" for
        a category promptflow has no class for)."""
        workspace = azure.project_workspace(project)
        if workspace is None:
            return {}
        try:
            found = list(self._client_of(workspace).connections.list())
        except AzureError as exc:
            raise AzureFailed(f"Listing the connections of Azure ML workspace {workspace.workspace_name}", exc) from exc
        return {connection.name: promptflow_type(connection.type) for connection in found}

    def connection_problems(
        self,
        flow_version: FlowVersion,
        overrides: dict[str, str],
        project: Project,
        known: dict[str, str] | None = None,
    ) -> list[str]:
        workspace = azure.project_workspace(project)
        name = workspace.workspace_name if workspace else "(not connected)"
        return connection_problems(
            flow_version,
            overrides,
            self.connection_types(project) if known is None else known,
            where=f"Azure ML workspace {name}",
            advice="On Azure a flow reads the workspace's connections by name: create it there "
            "(az ml connection create), or override it with another of the workspace's connections.",
        )

    def build_environment(self, job: Job):
        deployment = job.deployment
        client = self.client(deployment.endpoint)
        if deployment.environment:
            return self._custom_environment(job, client)
        with tempfile.TemporaryDirectory(prefix="flowdeploy-azure-env-") as folder:
            context = artifacts.write_build_context(deployment, Path(folder) / "environment")
            environment = artifacts.environment_for(deployment, context)
            job.advance(
                Phase.BUILDING_ENVIRONMENT,
                f"Registering environment {environment.name}:{environment.version} on Azure ML: a Docker build "
                "context (python, the pinned flow runtime, the flow's requirements.txt); Azure builds its image "
                "when the deployment first needs it.",
            )
            found = _get_or_none(
                f"Getting environment {environment.name}:{environment.version}",
                client.environments.get,
                name=environment.name,
                version=environment.version,
            )
            if found is not None:
                return found
            try:
                return client.environments.create_or_update(environment)
            except AzureError as exc:
                raise AzureFailed(f"Registering environment {environment.name}:{environment.version}", exc) from exc

    def _custom_environment(self, job: Job, client) -> str:
        """The user's environment, used as is once Azure confirms it exists."""
        reference = job.deployment.environment
        job.advance(Phase.BUILDING_ENVIRONMENT, f"Using the custom environment {reference} as is.")
        if reference.startswith("/"):
            return reference
        name, _, version = reference.removeprefix("azureml:").partition(":")
        name, _, label = name.partition("@")
        try:
            found = client.environments.get(name=name, version=version or None, label=label or None)
        except ResourceNotFoundError:
            workspace = workspace_of(job.deployment.endpoint).workspace_name
            raise ProvisioningFailed(
                f"Environment {reference} is not in Azure ML workspace {workspace}. Register it there first "
                "(az ml environment create), or leave Environment empty."
            ) from None
        except AzureError as exc:
            raise AzureFailed(f"Getting environment {reference}", exc) from exc
        return found.id or reference

    def register_model(self, job: Job):
        version = job.deployment.flow_version
        if not version.snapshot_dir.is_dir():
            raise ProvisioningFailed(f"The snapshot of flow {version} is missing from {version.snapshot_dir}.")
        model = artifacts.model_for(version)
        job.advance(
            Phase.REGISTERING_MODEL,
            f"Registering flow {version.flow.name}, version {version.version} ({version.short_hash}) as model "
            f"{model.name}:{model.version} on Azure ML.",
        )
        client = self.client(job.deployment.endpoint)
        found = _get_or_none(
            f"Getting model {model.name}:{model.version}", client.models.get, name=model.name, version=model.version
        )
        if found is not None:
            return found
        try:
            return client.models.create_or_update(model)
        except AzureError as exc:
            raise AzureFailed(f"Registering model {model.name}:{model.version}", exc) from exc

    def create_deployment(self, job: Job, environment, model) -> LROPoller:
        deployment = job.deployment
        endpoint = deployment.endpoint
        client = self.client(endpoint)
        info = artifacts.WorkspaceInfo.of(workspace_of(endpoint))
        job.advance(
            Phase.CREATING_DEPLOYMENT,
            f"Creating deployment {deployment.name} on Azure ML: {deployment.instance_count} x {deployment.vm_size}.",
        )
        self._ensure_endpoint(job, client, info)
        client_id = artifacts.identity_client_id(endpoint)
        entity = artifacts.deployment_for(deployment, model, environment, info, client_id)
        try:
            return client.online_deployments.begin_create_or_update(entity)
        except AzureError as exc:
            raise AzureFailed(f"Creating deployment {deployment.name}", exc) from exc

    def _ensure_endpoint(self, job: Job, client, info: artifacts.WorkspaceInfo) -> None:
        endpoint = job.deployment.endpoint
        found = _get_or_none(f"Getting endpoint {endpoint.name}", client.online_endpoints.get, endpoint.name)
        if found is None or found.provisioning_state == "Failed":
            job.deployment.event(f"Creating endpoint {endpoint.name} on Azure ML.")
            entity = artifacts.endpoint_for(endpoint, artifacts.identity_resource_id(endpoint, info))
            try:
                poller = client.online_endpoints.begin_create_or_update(entity)
            except AzureError as exc:
                raise AzureFailed(f"Creating endpoint {endpoint.name}", exc) from exc
            found = wait(poller, lambda: job.check(every=1.0), f"Creating endpoint {endpoint.name}")
        Endpoint.objects.filter(pk=endpoint.pk).update(
            azure_scoring_uri=found.scoring_uri or "", azure_swagger_uri=found.openapi_uri or ""
        )
        endpoint.azure_scoring_uri, endpoint.azure_swagger_uri = found.scoring_uri or "", found.openapi_uri or ""

    def wait_until_ready(self, job: Job, created: LROPoller, environment) -> None:
        deployment = job.deployment
        job.advance(
            Phase.PROBING,
            f"Waiting for Azure ML to report deployment {deployment.name} Succeeded (its instances pass their "
            "readiness probe on /health).",
        )
        wait(created, lambda: job.check(every=1.0), f"Creating deployment {deployment.name}")

    def go_live(self, job: Job, created) -> None:
        deployment = job.deployment
        deployment.endpoint.refresh_from_db()
        self._set_traffic(deployment.endpoint, lambda: job.check(every=1.0))

    def _set_traffic(self, endpoint: Endpoint, check: Callable[[], None]) -> None:
        client = self.client(endpoint)
        operation = f"Setting the traffic of endpoint {endpoint.name}"
        try:
            remote = client.online_endpoints.get(endpoint.name)
        except AzureError as exc:
            raise AzureFailed(operation, exc) from exc
        traffic = artifacts.traffic_for(endpoint)
        if (dict(remote.traffic or {}), dict(remote.mirror_traffic or {})) == tuple(traffic):
            return
        remote.traffic, remote.mirror_traffic = traffic.traffic, traffic.mirror_traffic
        try:
            poller = client.online_endpoints.begin_create_or_update(remote)
        except AzureError as exc:
            raise AzureFailed(operation, exc) from exc
        wait(poller, check, operation)

    def stop_unpublished(self, deployment: Deployment) -> None:
        """Nothing to stop: a managed deployment that failed stays in the workspace as Failed (as Azure AI Studio
        leaves it), and an update that failed leaves Azure serving what it served."""

    def stop_unserving(self, deployment: Deployment) -> None:
        """Nothing to stop: Azure replaces a deployment's instances itself."""

    def remove_deployment(self, deployment: Deployment, keep: Callable[[], None], progress: Progress) -> None:
        endpoint = deployment.endpoint
        client = self.client(endpoint)
        progress(f"Deleting {deployment} on Azure ML.")
        endpoint.refresh_from_db()
        if (
            deployment.live_generation
            and _get_or_none(f"Getting endpoint {endpoint.name}", client.online_endpoints.get, endpoint.name)
            is not None
        ):
            self._set_traffic(endpoint, keep)  # Azure refuses to delete a deployment that has traffic
        operation = f"Deleting deployment {deployment.name}"
        try:
            poller = client.online_deployments.begin_delete(name=deployment.name, endpoint_name=endpoint.name)
        except ResourceNotFoundError:
            return  # already gone: a deletion run again
        except AzureError as exc:
            raise AzureFailed(operation, exc) from exc
        _wait_deleted(poller, keep, operation)

    def remove_endpoint(
        self, endpoint: Endpoint, deployments: list[Deployment], keep: Callable[[], None], progress: Progress
    ) -> None:
        client = self.client(endpoint)
        progress(f"Deleting endpoint {endpoint.name} and its {len(deployments)} deployment(s) on Azure ML.")
        operation = f"Deleting endpoint {endpoint.name}"
        try:
            poller = client.online_endpoints.begin_delete(name=endpoint.name)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise AzureFailed(operation, exc) from exc
        _wait_deleted(poller, keep, operation)

    def apply_routing(self, endpoint: Endpoint) -> None:
        """Traffic changes are long on Azure: a task applies them. Before a deployment went live, Azure has
        no endpoint yet (the first deployment creates it): nothing to apply."""
        from endpoints import tasks

        if endpoint.deployments.filter(live_generation__gt=0).exists():
            transaction.on_commit(lambda: tasks.apply_routing.delay(endpoint.pk))

    def apply_routing_now(self, endpoint: Endpoint) -> None:
        """Apply the endpoint's traffic on Azure; the outcome is an event of each of its deployments, which the
        Details and Logs tabs show (Azure's refusal in its words)."""
        traffic = artifacts.traffic_for(endpoint)
        try:
            self._set_traffic(endpoint, lambda: None)
        except ProviderError as exc:
            message, level = str(exc), "error"
        else:
            message, level = f"Azure ML applied the traffic: {traffic.traffic or 'none'}.", "info"
            if traffic.mirror_traffic:
                message = message[:-1] + f", mirror {traffic.mirror_traffic}."
        for deployment in endpoint.deployments.exclude(state=DeploymentState.DELETING):
            deployment.event(message, level=level)

    def withdraw(self, endpoint_name: str) -> None:
        """Azure revokes the keys when it deletes the endpoint (remove_endpoint)."""

    # --- keys, tokens and logs ---------------------------------------------------------------

    def keys(self, endpoint: Endpoint) -> dict[str, str]:
        def fetch() -> tuple[dict, float]:
            try:
                found = self.client(endpoint).online_endpoints.get_keys(endpoint.name)
            except AzureError as exc:
                raise AzureFailed(f"Getting the keys of endpoint {endpoint.name}", exc) from exc
            return {"primary": found.primary_key or "", "secondary": found.secondary_key or ""}, credentials.KEYS_TTL

        return credentials.get(endpoint, "keys", fetch)

    def regenerate_key(self, endpoint: Endpoint, which: str) -> None:
        operation = f"Regenerating the {which} key of endpoint {endpoint.name}"
        client = self.client(endpoint)
        try:
            poller = client.online_endpoints.begin_regenerate_keys(endpoint.name, key_type=which)
        except AzureError as exc:
            raise AzureFailed(operation, exc) from exc
        credentials.forget(endpoint)
        wait(poller, lambda: None, operation)
        credentials.forget(endpoint)  # a read between the two saw the old key

    def token(self, endpoint: Endpoint) -> dict:
        """A token, reused until Azure says to refresh it (at most KEYS_TTL when it does not say)."""

        def fetch() -> tuple[dict, float]:
            try:
                found = self.client(endpoint).online_endpoints.get_keys(endpoint.name)
            except AzureError as exc:
                raise AzureFailed(f"Getting a token for endpoint {endpoint.name}", exc) from exc
            refresh = found.refresh_after_time_utc
            keep = refresh - time.time() if isinstance(refresh, int | float) else credentials.KEYS_TTL
            token = {
                "accessToken": found.access_token,
                "tokenType": found.token_type or "Bearer",
                "expiryTimeUtc": found.expiry_time_utc,
                "refreshAfterTimeUtc": refresh,
            }
            return token, max(0.0, keep)

        return credentials.get(endpoint, "token", fetch)

    def logs(self, deployment: Deployment, lines: int, container: str = "inference-server") -> str:
        if container not in CONTAINER_TYPES:
            raise ValueError(f"Container: one of {', '.join(CONTAINER_TYPES)}, not {container!r}.")
        client = self.client(deployment.endpoint)
        try:
            return client.online_deployments.get_logs(
                name=deployment.name, endpoint_name=deployment.endpoint.name, lines=lines, container_type=container
            )
        except AzureError as exc:
            raise AzureFailed(f"Getting the logs of {deployment}", exc) from exc

    def remote_state(self, deployment: Deployment) -> str:
        """What Azure says of the deployment now (Creating, Succeeded, Failed...), or "" when it has none."""
        found = _get_or_none(
            f"Getting deployment {deployment}",
            self.client(deployment.endpoint).online_deployments.get,
            name=deployment.name,
            endpoint_name=deployment.endpoint.name,
        )
        return found.provisioning_state if found is not None else ""


def _wait_deleted(poller: LROPoller, keep: Callable[[], None], operation: str) -> None:
    try:
        wait(poller, keep, operation)
    except AzureFailed as failed:
        if isinstance(failed.__cause__, ResourceNotFoundError):
            return
        raise
