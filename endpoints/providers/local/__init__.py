"""The local provider: a deployment's instances are gunicorn processes on this machine, serving the flow with
promptflow's app in the flow runtime (serving/launcher.py), behind the studio's scoring gateway.

Its capacity is this machine's memory (capacity.py); its environments are the base runtime plus the flow's
requirements (flows/execution.py); its routing is what the gateway reads from Redis (endpoints/publishing.py).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import transaction

from endpoints import publishing
from endpoints.jobs import Job, ProvisioningFailed, beating
from endpoints.models import LIVE_INSTANCE_STATES, Deployment, Endpoint, Instance, InstanceState, Phase
from endpoints.providers import Progress, Provider
from endpoints.providers.local import capacity, instances
from flows.execution import EnvironmentBuildError, flow_environment
from serving import auth
from workspace import identities
from workspace.connections import connection_type_names


class LocalProvider(Provider):
    name = "local"

    def capacity_problem(self, vm_size: str, instance_count: int, excluding: Deployment | None = None) -> str:
        return capacity.shortfall_for(vm_size, instance_count, excluding=excluding)

    def validate(self, job: Job) -> list[str]:
        """The connections, then the identity's roles, then capacity: the first that fails is the reason."""
        deployment = job.deployment
        endpoint = deployment.endpoint
        problems = self.connection_problems(deployment.flow_version, deployment.connection_overrides, endpoint.project)
        if problems:
            return problems
        # The roles the endpoint's identity holds now: reading connection secrets, and for a user-assigned
        # identity also pulling the environment and reading the model (workspace/identities.py).
        missing = identities.missing_roles(endpoint, deployment.flow_version)
        if missing:
            return [identities.missing_role_message(endpoint, role, scope) for role, scope in missing]
        shortfall = capacity.shortfall(deployment)
        return [shortfall] if shortfall else []

    def connection_types(self, project) -> dict[str, str]:
        return connection_type_names(project)

    def build_environment(self, job: Job):
        version = job.deployment.flow_version
        detail = "the base runtime"
        if version.requirements.strip():
            detail += " plus the flow's requirements.txt"
        job.advance(Phase.BUILDING_ENVIRONMENT, f"Preparing {detail} ({version.environment}).")
        # pip can take minutes: keep the heartbeat fresh, and stop waiting as soon as the deployment is deleted
        try:
            return beating(job.check, flow_environment, version.requirements)
        except EnvironmentBuildError as exc:
            raise ProvisioningFailed(f"The environment could not be built. {exc}") from exc

    def register_model(self, job: Job) -> None:
        version = job.deployment.flow_version
        if not version.snapshot_dir.is_dir():
            raise ProvisioningFailed(f"The snapshot of flow {version} is missing from {version.snapshot_dir}.")
        job.advance(
            Phase.REGISTERING_MODEL,
            f"Using flow {version.flow.name}, version {version.version} ({version.short_hash}).",
        )

    def create_deployment(self, job: Job, environment, model) -> list[Instance]:
        deployment = job.deployment
        job.advance(
            Phase.CREATING_DEPLOYMENT,
            f"Starting {deployment.instance_count} instance(s) of {deployment.vm_size} "
            f"({deployment.size.workers} worker(s) each).",
        )
        return instances.create_instances(job, environment)

    def wait_until_ready(self, job: Job, created: list[Instance], environment) -> None:
        job.advance(Phase.PROBING, "Waiting for every instance to answer its readiness probe.")
        instances.probe(job, created, environment)

    def go_live(self, job: Job, created: list[Instance]) -> None:
        deployment = job.deployment
        previous = list(
            deployment.instances.filter(generation__lt=deployment.generation).exclude(state=InstanceState.STOPPED)
        )
        version = publishing.publish(deployment.endpoint)
        if not previous:
            return
        Instance.objects.filter(pk__in=[i.pk for i in previous]).update(state=InstanceState.DRAINING)
        deployment.event(
            f"Traffic moved to generation {deployment.generation}; draining {len(previous)} old instance(s)."
        )
        # The drain waits for requests in flight (up to the request timeout): the heartbeat goes on meanwhile,
        # so the reaper does not take a draining job for dead. A drain once begun is finished.
        beating(job.beat, instances.retire, deployment, previous, version)

    def stop_unpublished(self, deployment: Deployment) -> None:
        if deployment.live_generation != deployment.generation:
            instances.stop_instances(deployment.instances.filter(generation=deployment.generation))

    def stop_unserving(self, deployment: Deployment) -> None:
        if deployment.live_generation != deployment.generation:
            instances.stop_instances(deployment.instances.filter(generation=deployment.generation))
        else:  # it died while draining: the new generation serves, the old one is no longer routed
            instances.stop_instances(deployment.instances.filter(generation__lt=deployment.generation))

    def remove_deployment(self, deployment: Deployment, keep: Callable[[], None], progress: Progress) -> None:
        endpoint = deployment.endpoint
        progress(f"Deleting {deployment}: draining requests in flight.")
        version = publishing.publish(endpoint)
        live = list(deployment.instances.filter(state__in=LIVE_INSTANCE_STATES))
        timeout = deployment.request_timeout_ms / 1000 + 5
        beating(keep, publishing.wait_until_drained, endpoint, version, live, timeout)
        progress(f"Deleting {deployment}: stopping {len(live)} instance(s).")
        beating(keep, instances.stop_all_instances, deployment)

    def remove_endpoint(
        self, endpoint: Endpoint, deployments: list[Deployment], keep: Callable[[], None], progress: Progress
    ) -> None:
        for deployment in deployments:
            progress(f"Deleting endpoint {endpoint.name}: stopping {deployment.name}.")
            beating(keep, instances.stop_all_instances, deployment)

    def apply_routing(self, endpoint: Endpoint) -> None:
        transaction.on_commit(lambda: publishing.publish(endpoint))

    def withdraw(self, endpoint_name: str) -> None:
        publishing.withdraw(endpoint_name)

    def keys(self, endpoint: Endpoint) -> dict[str, str]:
        return endpoint.get_keys()

    def regenerate_key(self, endpoint: Endpoint, which: str) -> None:
        with transaction.atomic():
            locked = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
            keys = locked.get_keys()
            keys[which] = auth.new_key()
            locked.set_keys(keys)
            locked.save(update_fields=["keys_encrypted", "updated_at"])
        publishing.publish(locked)  # the old key stops working as soon as the gateway applies this

    def token(self, endpoint: Endpoint) -> dict:
        return auth.issue_token(endpoint.name, auth.signing_key(settings.FLOWDEPLOY_SECRET_KEY or settings.SECRET_KEY))
