"""Rows as the API shows them: snake_case fields named like the az CLI's YAML, never a secret or a key."""

from __future__ import annotations

from endpoints.models import (
    ACTIVE_STATES,
    Deployment,
    DeploymentEvent,
    DeploymentState,
    Endpoint,
    IdentityType,
    Instance,
    InstanceState,
)
from flows.models import Flow, FlowVersion
from workspace.models import Connection, Project, ProjectRole

EVENTS_IN_SHOW = 50


def timestamp(value) -> str | None:
    return value.isoformat() if value else None


def project_json(project: Project, role: ProjectRole) -> dict:
    return {"name": project.name, "description": project.description, "role": role.label}


def connection_json(connection: Connection) -> dict:
    """No secret values, whatever the caller's role: `secret_keys` only names them."""
    return {
        "name": connection.name,
        "project": connection.project.name,
        "type": connection.type,
        "configs": dict(connection.configs),
        "secret_keys": list(connection.secret_keys),
        "target": connection.target,
        "created_at": timestamp(connection.created_at),
        "updated_at": timestamp(connection.updated_at),
    }


def flow_json(flow: Flow, versions: list[FlowVersion] | None = None) -> dict:
    versions = sorted(flow.versions.all() if versions is None else versions, key=lambda v: v.version)
    latest = versions[-1] if versions else None
    return {
        "name": flow.name,
        "project": flow.project.name,
        "description": flow.description,
        "latest_version": latest.version if latest else None,
        "versions": [
            {
                "version": v.version,
                "content_hash": v.content_hash,
                "source": v.source,
                "created_at": timestamp(v.created_at),
            }
            for v in versions
        ],
        "created_at": timestamp(flow.created_at),
    }


def flow_version_json(version: FlowVersion) -> dict:
    return {
        "name": version.flow.name,
        "version": version.version,
        "id": str(version),
        "content_hash": version.content_hash,
        "source": version.source,
        "source_detail": version.source_detail,
        "inputs": version.inputs,
        "outputs": version.outputs,
        "nodes": version.nodes,
        "connections": version.connections,
        "chat_input": version.chat_input,
        "chat_output": version.chat_output,
        "chat_history": version.chat_history,
        "requirements": version.requirements,
        "environment": version.environment,
        "created_at": timestamp(version.created_at),
    }


def provisioning_state(endpoint: Endpoint, deployments: list[Deployment]) -> str:
    """Azure shows one state per endpoint; here it follows from its deployments."""
    if endpoint.deleting:
        return "Deleting"
    states = [d.state for d in deployments]
    if any(state in ACTIVE_STATES for state in states):
        return "Creating" if all(state == DeploymentState.CREATING for state in states) else "Updating"
    if states and all(state == DeploymentState.FAILED for state in states):
        return "Failed"
    return "Succeeded"


def scoring_uri(endpoint: Endpoint) -> str:
    return endpoint.scoring_uri


def endpoint_json(endpoint: Endpoint, deployments: list[Deployment] | None = None) -> dict:
    deployments = list(endpoint.deployments.all()) if deployments is None else deployments
    identity: dict = {"type": endpoint.identity_type}
    chosen = endpoint.user_assigned_identity
    if endpoint.identity_type == IdentityType.USER and chosen is not None:
        identity["user_assigned_identities"] = [
            {
                "resource_id": f"/projects/{endpoint.project.name}/userAssignedIdentities/{chosen.name}",
                "principal_id": str(chosen.principal_id),
                "client_id": str(chosen.client_id),
            }
        ]
    else:
        identity["principal_id"] = str(endpoint.principal_id)
    return {
        "name": endpoint.name,
        "project": endpoint.project.name,
        "description": endpoint.description,
        "auth_mode": endpoint.auth_type,
        "scoring_uri": scoring_uri(endpoint),
        "swagger_uri": endpoint.swagger_uri,
        "traffic": dict(endpoint.traffic),
        "mirror_traffic": dict(endpoint.mirror_traffic),
        "tags": dict(endpoint.tags),
        "identity": identity,
        "enforce_access_to_connection_secrets": endpoint.enforce_access_to_connection_secrets,
        "provider": endpoint.provider,
        "provisioning_state": provisioning_state(endpoint, deployments),
        "deployments": sorted(d.name for d in deployments),
        "created_at": timestamp(endpoint.created_at),
        "updated_at": timestamp(endpoint.updated_at),
    }


def instance_json(instance: Instance) -> dict:
    return {
        "ordinal": instance.ordinal,
        "generation": instance.generation,
        "state": instance.state,
        "restarts": instance.restarts,
        "started_at": timestamp(instance.started_at),
        "ready_at": timestamp(instance.ready_at),
        "last_exit": instance.last_exit,
    }


def event_json(event: DeploymentEvent) -> dict:
    return {
        "id": event.id,
        "time": timestamp(event.created_at),
        "phase": event.phase,
        "level": event.level,
        "message": event.message,
    }


def current_instances(deployment: Deployment) -> list[Instance]:
    """The instances that are not stopped, newest generation first within an ordinal."""
    return list(deployment.instances.exclude(state=InstanceState.STOPPED).order_by("-generation", "ordinal"))


def deployment_json(deployment: Deployment, detail: bool = False) -> dict:
    endpoint = deployment.endpoint
    data = {
        "name": deployment.name,
        "endpoint_name": endpoint.name,
        "flow": str(deployment.flow_version),
        "vm_size": deployment.vm_size,
        "instance_count": deployment.instance_count,
        "environment_variables": dict(deployment.environment_variables),
        "environment": deployment.environment,
        "selected_outputs": list(deployment.selected_outputs),
        "connection_overrides": dict(deployment.connection_overrides),
        "request_timeout_ms": deployment.request_timeout_ms,
        "max_concurrent_requests_per_instance": deployment.max_concurrent_requests_per_instance,
        "data_collection": deployment.data_collection,
        "app_insights_enabled": deployment.app_insights_enabled,
        "tags": dict(deployment.tags),
        "provisioning_state": deployment.state,
        "phase": deployment.phase,
        "failure_reason": deployment.failure_reason,
        "traffic": endpoint.traffic.get(deployment.name, 0),
        "mirror_traffic": endpoint.mirror_traffic.get(deployment.name, 0),
        "generation": deployment.generation,
        "live_generation": deployment.live_generation,
        "created_at": timestamp(deployment.created_at),
        "updated_at": timestamp(deployment.updated_at),
    }
    if detail:
        data["instances"] = [instance_json(i) for i in current_instances(deployment)]
        events = list(deployment.events.order_by("-created_at", "-id")[:EVENTS_IN_SHOW])
        data["events"] = [event_json(e) for e in reversed(events)]
    return data
