"""Role assignments on Azure for the identity of an endpoint that runs on Azure Machine Learning.

On Azure, what a managed online endpoint's identity may do comes from Azure RBAC, not from the studio's own role
assignments (workspace/identities.py), so the same roles are needed there, at Azure scopes:

- a user-assigned identity: Connection Secrets Reader on the workspace, AcrPull on its container registry,
  Storage Blob Data Reader on its storage account and AzureML Metrics Writer on the workspace;
- a system-assigned identity: Connection Secrets Reader on the workspace when "Enforce access to connection
  secrets" is off (on, Azure grants it itself when it creates the endpoint).

`required` says which, `commands` gives the `az role assignment create` lines for an Owner of the subscription to
run, and `grant` makes the assignments with azure-mgmt-authorization, signed in as the studio (which then needs
Role Based Access Control Administrator or User Access Administrator, docs/azure.md). Each assignment's name is
derived from its scope, role and principal, so granting again finds what an earlier grant made.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from django.urls import reverse

from endpoints.models import IdentityType
from endpoints.providers import ProviderError
from endpoints.providers.azureml import artifacts
from endpoints.providers.azureml.provider import AzureFailed, signed_in, workspace_of
from workspace import audit, azure
from workspace.models import ROLE_IDS, BuiltInRole

if TYPE_CHECKING:
    from endpoints.models import Endpoint
    from workspace.models import AzureWorkspace

# Azure's own names of the built-in roles (the studio calls the metrics writer "Workspace metrics writer").
ROLE_NAMES = {
    BuiltInRole.CONNECTION_SECRETS_READER: "Azure Machine Learning Workspace Connection Secrets Reader",
    BuiltInRole.ACR_PULL: "AcrPull",
    BuiltInRole.STORAGE_BLOB_DATA_READER: "Storage Blob Data Reader",
    BuiltInRole.METRICS_WRITER: "AzureML Metrics Writer (preview)",
}
PRINCIPAL_PLACEHOLDER = "<principal-id>"
PRINCIPAL_TYPE = "ServicePrincipal"  # what a managed identity is to Azure RBAC
ASSIGNMENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://flowdeploy/azure-role-assignments")


@dataclass(frozen=True)
class Requirement:
    """A role the endpoint's identity needs on Azure: Azure's role name, its role definition id (a GUID), the
    ARM id of the scope, and why."""

    role: str
    role_id: str
    scope: str
    why: str

    @property
    def known_scope(self) -> bool:
        """False when the scope is a placeholder (the workspace has no container registry yet)."""
        return self.scope.startswith("/")

    def definition_id(self, subscription_id: str) -> str:
        return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{self.role_id}"


def _requirement(role: BuiltInRole, scope: str, why: str) -> Requirement:
    return Requirement(ROLE_NAMES[role], ROLE_IDS[role], scope, why)


# --- what the identity needs -----------------------------------------------------------------------------


def _uses_user_identity(endpoint: Endpoint) -> bool:
    return endpoint.identity_type == IdentityType.USER and endpoint.user_assigned_identity_id is not None


def required(endpoint: Endpoint) -> list[Requirement]:
    """The roles the endpoint's identity needs on Azure, with their scopes. For a user-assigned identity the
    container registry and storage account are read from the workspace (one call to Azure); ProviderError with
    Azure's message when that fails."""
    workspace = workspace_of(endpoint)
    secrets_reader = _requirement(
        BuiltInRole.CONNECTION_SECRETS_READER,
        workspace.arm_id,
        "read the workspace's connections (promptflow's AzureML extension, when an instance starts)",
    )
    if not _uses_user_identity(endpoint):
        return [] if endpoint.enforce_access_to_connection_secrets else [secrets_reader]
    operation = f"Getting workspace {workspace.workspace_name}"
    try:
        found = signed_in(azure.ml_client, workspace).workspaces.get(workspace.workspace_name)
    except AzureError as exc:
        raise AzureFailed(operation, exc) from exc
    registry = found.container_registry or (
        f"<container registry of workspace {workspace.workspace_name}: Azure creates it with the first image build>"
    )
    return [
        secrets_reader,
        _requirement(BuiltInRole.ACR_PULL, registry, "pull the deployment's image from the workspace's registry"),
        _requirement(
            BuiltInRole.STORAGE_BLOB_DATA_READER,
            found.storage_account,
            "read the flow (the model) from the workspace's storage account",
        ),
        _requirement(BuiltInRole.METRICS_WRITER, workspace.arm_id, "write the deployment's metrics to the workspace"),
    ]


def principal_id(endpoint: Endpoint) -> str | None:
    """The Azure principal (object) id of the endpoint's identity: the user-assigned identity's
    `azure_principal_id`, or what Azure gave the endpoint's system-assigned identity; None when not known
    (not set, or the endpoint is not on Azure yet)."""
    if _uses_user_identity(endpoint):
        return endpoint.user_assigned_identity.azure_principal_id or None
    workspace = workspace_of(endpoint)
    try:
        found = signed_in(azure.ml_client, workspace).online_endpoints.get(endpoint.name)
    except ResourceNotFoundError:
        return None
    except AzureError as exc:
        raise AzureFailed(f"Getting endpoint {endpoint.name}", exc) from exc
    identity = getattr(found, "identity", None)
    return getattr(identity, "principal_id", None) or None


def unknown_principal(endpoint: Endpoint) -> str:
    """Why the principal id is not known, and how to find it, in sentences a user can act on."""
    workspace = workspace_of(endpoint)
    if _uses_user_identity(endpoint):
        identity = endpoint.user_assigned_identity
        resource_id = artifacts.identity_resource_id(endpoint, artifacts.WorkspaceInfo.of(workspace))
        page = reverse("workspace:identities", args=[endpoint.project.name])
        return (
            f"User-assigned identity {identity.name} has no Azure principal ID in the studio: an Owner sets it on "
            f"the project's Managed identities page ({page}). Until then, replace {PRINCIPAL_PLACEHOLDER} with the "
            f"output of: az identity show --ids {resource_id} --query principalId -o tsv"
        )
    return (
        f"Endpoint {endpoint.name} is not on Azure ML yet: Azure gives its system-assigned identity a principal ID "
        f"when the first deployment creates the endpoint. Then replace {PRINCIPAL_PLACEHOLDER} with the output of: "
        f"az ml online-endpoint show --name {endpoint.name} --resource-group {workspace.resource_group} "
        f"--workspace-name {workspace.workspace_name} --query identity.principal_id -o tsv"
    )


# --- the Azure CLI commands -------------------------------------------------------------------------------


def command(principal: str, requirement: Requirement) -> str:
    """The `az` line that makes one assignment; the role by its definition id, so that it is unambiguous."""
    return (
        f"az role assignment create --assignee-object-id {principal} --assignee-principal-type {PRINCIPAL_TYPE} "
        f"--role {requirement.role_id} --scope {requirement.scope}"
    )


def commands(endpoint: Endpoint, requirements: list[Requirement] | None = None) -> list[str]:
    """The `az role assignment create` lines an Owner runs to make the assignments `required` lists (pass them
    when already at hand). When the principal id is not known, a first `#` line says why and how to find it, and
    the lines carry PRINCIPAL_PLACEHOLDER."""
    requirements = required(endpoint) if requirements is None else requirements
    if not requirements:
        return []
    principal = principal_id(endpoint)
    lines = [] if principal else [f"# {unknown_principal(endpoint)}"]
    return lines + [command(principal or PRINCIPAL_PLACEHOLDER, requirement) for requirement in requirements]


# --- granting on Azure ------------------------------------------------------------------------------------


def assignment_name(scope: str, role_id: str, principal: str) -> str:
    """The assignment's name (a GUID, as Azure wants): the same scope, role and principal give the same name."""
    return str(uuid.uuid5(ASSIGNMENT_NAMESPACE, f"{scope.lower()}|{role_id.lower()}|{principal.lower()}"))


def _status(pipeline_response: Any, deserialized: Any, headers: Any) -> int:
    return pipeline_response.http_response.status_code


def _assign(client: Any, workspace: AzureWorkspace, requirement: Requirement, principal: str) -> bool:
    """Make one assignment: True when this call created it, False when it was there already. Azure answers a
    duplicate 409 RoleAssignmentExists (whatever its name)."""
    from azure.mgmt.authorization.models import RoleAssignmentCreateParameters

    parameters = RoleAssignmentCreateParameters(
        role_definition_id=requirement.definition_id(workspace.subscription_id),
        principal_id=principal,
        principal_type=PRINCIPAL_TYPE,
    )
    name = assignment_name(requirement.scope, requirement.role_id, principal)
    try:
        status = client.role_assignments.create(
            requirement.scope, role_assignment_name=name, parameters=parameters, cls=_status
        )
    except AzureError as exc:
        if _already_exists(exc):
            return False
        raise
    return status == 201


def _already_exists(exc: AzureError) -> bool:
    error = getattr(exc, "error", None)
    return getattr(exc, "status_code", None) == 409 and getattr(error, "code", "") == "RoleAssignmentExists"


def grant(endpoint: Endpoint, user: Any) -> list[str]:
    """Make the assignments `required` lists, on Azure, for the endpoint's identity: one line per role saying
    whether it was granted or already present. ProviderError names the operation and gives Azure's message (and
    what was done before it); an unknown principal id is refused with unknown_principal's sentences. Callers
    check that the user may manage access (Action.MANAGE_ACCESS); each grant is audited."""
    workspace = workspace_of(endpoint)
    requirements = required(endpoint)
    if not requirements:
        return []
    principal = principal_id(endpoint)
    if not principal:
        raise ProviderError(unknown_principal(endpoint))
    client = signed_in(azure.authorization_client, workspace)
    done: list[str] = []
    for requirement in requirements:
        where = f"{requirement.role} on {requirement.scope}"
        if not requirement.known_scope:
            done.append(f"{requirement.role}: not granted, the scope is not known yet ({requirement.scope})")
            continue
        try:
            created = _assign(client, workspace, requirement, principal)
        except AzureError as exc:
            failed = AzureFailed(f"Granting {where} to principal {principal}", exc)
            _audit(user, endpoint, requirement, principal, error=str(failed))
            before = f" Before that: {'; '.join(done)}." if done else ""
            raise ProviderError(f"{failed}{before}") from exc
        if created:
            _audit(user, endpoint, requirement, principal)
        done.append(f"{where}: {'granted' if created else 'already assigned'}")
    return done


def _audit(user: Any, endpoint: Endpoint, requirement: Requirement, principal: str, error: str = "") -> None:
    audit.record(
        user,
        "azure_role_assignment.create",
        f"{requirement.scope}/providers/Microsoft.Authorization/roleAssignments/"
        f"{assignment_name(requirement.scope, requirement.role_id, principal)}",
        project=endpoint.project,
        endpoint=endpoint.name,
        principal_id=principal,
        role=requirement.role,
        role_definition_id=requirement.role_id,
        scope=requirement.scope,
        ok=not error,
        error=error,
    )
