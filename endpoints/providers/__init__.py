"""Providers turn a Deployment row into running capacity: `local` runs instance processes on this machine,
`azureml` creates Azure Machine Learning managed online endpoints and deployments.

The provisioning state machine (endpoints/provisioning.py) owns the phases, the claim, the events and the
notifications; a provider does the work of each phase for its endpoints. `provider_for(endpoint)` picks it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from endpoints.connections import connection_problems
from endpoints.jobs import Job, ProvisioningFailed
from endpoints.models import Deployment, Endpoint
from endpoints.models import Provider as ProviderName
from flows.models import FlowVersion
from workspace.models import Project

Progress = Callable[[str], None]


class ProviderError(ProvisioningFailed):
    """The provider's service failed an operation (Azure said no, or could not be reached): the message says
    which operation and what the service answered. A job fails with it; a page or API call shows it (502)."""


class Provider(ABC):
    """The verbs every provider implements. Each phase method advances the job itself (job.advance) with a
    message saying what it does there, and raises ProvisioningFailed with a reason the user can act on."""

    name: str = ""

    @abstractmethod
    def capacity_problem(self, vm_size: str, instance_count: int, excluding: Deployment | None = None) -> str:
        """Why this many instances of this size cannot run, or ""."""

    @abstractmethod
    def validate(self, job: Job) -> list[str]:
        """What stops the deployment where it runs (its connections, its identity's roles, capacity), each a
        sentence."""

    @abstractmethod
    def connection_types(self, project: Project) -> dict[str, str]:
        """The connections a flow of `project` can use where this provider runs it: name -> promptflow type."""

    def connection_problems(
        self,
        flow_version: FlowVersion,
        overrides: dict[str, str],
        project: Project,
        known: dict[str, str] | None = None,
    ) -> list[str]:
        """What stops the flow from getting its connections here; `known`: connection_types(project), if at hand."""
        return connection_problems(flow_version, overrides, self.connection_types(project) if known is None else known)

    @abstractmethod
    def build_environment(self, job: Job) -> Any:
        """BuildingEnvironment: what the deployment runs in; returns it for create_deployment."""

    @abstractmethod
    def register_model(self, job: Job) -> Any:
        """RegisteringModel: the flow version the deployment serves; returns it for create_deployment."""

    @abstractmethod
    def create_deployment(self, job: Job, environment: Any, model: Any) -> Any:
        """Start the deployment's new generation; returns what wait_until_ready and go_live need."""

    @abstractmethod
    def wait_until_ready(self, job: Job, created: Any, environment: Any) -> None:
        """Probing: until the new generation answers its readiness probe, or ProvisioningFailed saying why not."""

    @abstractmethod
    def go_live(self, job: Job, created: Any) -> None:
        """After the deployment's generation was marked live: route traffic to it, retire what it replaces."""

    @abstractmethod
    def stop_unpublished(self, deployment: Deployment) -> None:
        """Stop what the deployment's current generation started, when that generation never went live."""

    @abstractmethod
    def stop_unserving(self, deployment: Deployment) -> None:
        """What a dead job left behind: stop the generation that does not serve (the reaper)."""

    @abstractmethod
    def remove_deployment(self, deployment: Deployment, keep: Callable[[], None], progress: Progress) -> None:
        """Delete the deployment's capacity (it is already out of the endpoint's routing)."""

    @abstractmethod
    def remove_endpoint(
        self, endpoint: Endpoint, deployments: list[Deployment], keep: Callable[[], None], progress: Progress
    ) -> None:
        """Delete the endpoint's deployments' capacity and the endpoint itself (its keys stop working first)."""

    @abstractmethod
    def apply_routing(self, endpoint: Endpoint) -> None:
        """Make the endpoint's traffic, keys and deployments as the rows say."""

    def apply_routing_now(self, endpoint: Endpoint) -> None:
        """apply_routing's work, when it is long (a task runs it)."""
        self.apply_routing(endpoint)

    @abstractmethod
    def withdraw(self, endpoint_name: str) -> None:
        """The endpoint's keys and routing stop working at once (its deletion has begun)."""

    @abstractmethod
    def keys(self, endpoint: Endpoint) -> dict[str, str]:
        """{"primary": ..., "secondary": ...} of a key-based endpoint."""

    @abstractmethod
    def regenerate_key(self, endpoint: Endpoint, which: str) -> None:
        """A new `which` key ("primary" or "secondary"); the old one stops working."""

    @abstractmethod
    def token(self, endpoint: Endpoint) -> dict:
        """A token for a token-based endpoint: accessToken, tokenType, expiryTimeUtc, refreshAfterTimeUtc."""


def provider_for(endpoint: Endpoint) -> Provider:
    return provider_named(endpoint.provider)


def provider_named(name: str) -> Provider:
    if name == ProviderName.LOCAL:
        from endpoints.providers.local import LocalProvider

        return LocalProvider()
    if name == ProviderName.AZUREML:
        from endpoints.providers.azureml.provider import AzureMLProvider

        return AzureMLProvider()
    raise LookupError(f"Provider {name!r} is not one of this studio's ({', '.join(ProviderName.values)}).")
