"""Managed identities and the roles they hold, as in Azure's RBAC for managed online endpoints.

An endpoint runs as an identity: its system-assigned one (created and deleted with it, `Endpoint.principal_id`)
or a user-assigned one (a ManagedIdentity of its project, reusable across endpoints). What that identity may do
comes only from RoleAssignment rows, which only an Owner of the project adds or removes (Action.MANAGE_ACCESS):

- Connection Secrets Reader (scope project): needed to read the project's connections, i.e. by every deployment
  whose flow uses one; checked when a deployment is validated and again every time an instance fetches its
  connections from the studio (so a revoked role stops the next instance start).
- AcrPull (scope registry) and Storage Blob Data Reader (scope storage): a user-assigned identity needs them to
  pull the environment and read the model (a system-assigned identity gets them with the endpoint, as on Azure).
- Workspace metrics writer: can be granted; nothing checks it yet.

"Enforce access to connection secrets" (system-assigned only) grants Connection Secrets Reader at the endpoint's
creation when the deploying user holds it themselves (Contributors and Owners do); turned off, nobody grants it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from workspace import access, audit
from workspace.access import Action
from workspace.models import BuiltInRole, ManagedIdentity, PrincipalType, Project, RoleAssignment, RoleScope

if TYPE_CHECKING:
    from endpoints.models import Endpoint
    from flows.models import FlowVersion

SECRETS_READER = BuiltInRole.CONNECTION_SECRETS_READER

# The scope each role is granted at, unless the Owner chooses another.
DEFAULT_SCOPE = {
    BuiltInRole.CONNECTION_SECRETS_READER: RoleScope.PROJECT,
    BuiltInRole.ACR_PULL: RoleScope.REGISTRY,
    BuiltInRole.STORAGE_BLOB_DATA_READER: RoleScope.STORAGE,
    BuiltInRole.METRICS_WRITER: RoleScope.PROJECT,
}

ROLE_PURPOSE = {
    BuiltInRole.CONNECTION_SECRETS_READER: "read the project's connection secrets (every flow with a connection)",
    BuiltInRole.ACR_PULL: "pull the flow's environment from the environment registry",
    BuiltInRole.STORAGE_BLOB_DATA_READER: "read the flow (the model) from the project's storage",
    BuiltInRole.METRICS_WRITER: "write the endpoint's metrics to the project",
}

# What a user-assigned identity needs besides Connection Secrets Reader, as on Azure.
USER_ASSIGNED_ROLES = (
    (BuiltInRole.ACR_PULL, RoleScope.REGISTRY),
    (BuiltInRole.STORAGE_BLOB_DATA_READER, RoleScope.STORAGE),
)

IDENTITY_NAME_RULE = "3 to 64 letters, digits, '-' or '_', starting with a letter or digit."


@dataclass(frozen=True)
class Principal:
    """An identity that can hold roles: an endpoint's system-assigned one or a user-assigned one."""

    principal_id: uuid.UUID
    principal_type: str  # a PrincipalType value
    name: str

    @property
    def kind(self) -> str:
        return "system-assigned" if self.principal_type == PrincipalType.SYSTEM_ASSIGNED else "user-assigned"

    def __str__(self) -> str:
        return f"'{self.name}' ({self.kind})"


def system_principal(endpoint: Endpoint) -> Principal:
    return Principal(endpoint.principal_id, PrincipalType.SYSTEM_ASSIGNED, endpoint.name)


def user_principal(identity: ManagedIdentity) -> Principal:
    return Principal(identity.principal_id, PrincipalType.USER_ASSIGNED, identity.name)


def principal_of(endpoint: Endpoint) -> Principal:
    """The identity the endpoint runs as."""
    if endpoint.user_assigned_identity_id:
        return user_principal(endpoint.user_assigned_identity)
    return system_principal(endpoint)


# --- what an identity holds -------------------------------------------------------------------


def _project_id(project: Project | int) -> int:
    return project.pk if isinstance(project, Project) else project


def holds(project: Project | int, principal_id: uuid.UUID, role: str, scope: str = RoleScope.PROJECT) -> bool:
    """Does the principal hold `role` at `scope` in the project, now?"""
    return RoleAssignment.objects.filter(
        project_id=_project_id(project), principal_id=principal_id, role=role, scope=scope
    ).exists()


def required_roles(endpoint: Endpoint, flow_version: FlowVersion | None) -> list[tuple[str, str]]:
    """(role, scope) the endpoint's identity needs to run this flow version."""
    roles: list[tuple[str, str]] = []
    if flow_version is None or flow_version.connections:
        roles.append((SECRETS_READER, RoleScope.PROJECT))
    if endpoint.user_assigned_identity_id:
        roles.extend(USER_ASSIGNED_ROLES)
    return roles


def missing_roles(endpoint: Endpoint, flow_version: FlowVersion | None) -> list[tuple[str, str]]:
    """The (role, scope) pairs the endpoint's identity needs for this flow version and does not hold."""
    principal = principal_of(endpoint)
    return [
        (role, scope)
        for role, scope in required_roles(endpoint, flow_version)
        if not holds(endpoint.project_id, principal.principal_id, role, scope)
    ]


def access_page(project: Project) -> str:
    return reverse("workspace:access", args=[project.name])


def missing_role_message(endpoint: Endpoint, role: str, scope: str) -> str:
    """What is missing and where an Owner grants it, in one sentence a user can act on."""
    project = endpoint.project
    where = {
        RoleScope.PROJECT: f"project '{project.name}'",
        RoleScope.REGISTRY: f"the environment registry of project '{project.name}' ({scope_path(project, scope)})",
        RoleScope.STORAGE: f"the storage of project '{project.name}' ({scope_path(project, scope)})",
    }[RoleScope(scope)]
    return (
        f"Endpoint identity {principal_of(endpoint)} lacks '{BuiltInRole(role).label}' on {where}. "
        f"An Owner can grant it at {access_page(project)}."
    )


def scope_path(project: Project, scope: str) -> str:
    """A local, descriptive scope string, shaped like Azure's resource ids."""
    base = f"/projects/{project.name}"
    return {
        RoleScope.PROJECT: base,
        RoleScope.REGISTRY: f"{base}/registries/environments",
        RoleScope.STORAGE: f"{base}/storage/flows",
    }[RoleScope(scope)]


def az_command(project: Project, principal_id: uuid.UUID, role: str, scope: str) -> str:
    """The Azure CLI command that makes the same assignment, for reference."""
    return (
        f'az role assignment create --assignee {principal_id} --role "{BuiltInRole(role).label}" '
        f"--scope {scope_path(project, scope)}"
    )


def assignment_command(assignment: RoleAssignment) -> str:
    return az_command(assignment.project, assignment.principal_id, assignment.role, assignment.scope)


# --- granting and revoking --------------------------------------------------------------------


def may_read_secrets(user: Any, project: Project) -> bool:
    """Does the user hold Connection Secrets Reader on the project? Their project role implies it (Contributor,
    Owner). None is the system itself (a migration, a management command), which may."""
    return user is None or access.allows(user, Action.READ_KEYS, project)


def grant(
    project: Project, principal: Principal, role: str, scope: str | None = None, *, user: Any = None
) -> tuple[RoleAssignment, bool]:
    """Assign `role` to the principal at `scope` (the role's default scope when None). Returns the assignment
    and whether this call created it; granting what is already held changes nothing. Callers check that
    the user may manage access (views) or that the grant is automatic (endpoint creation)."""
    role = BuiltInRole(role)
    scope = RoleScope(scope or DEFAULT_SCOPE[role])
    lookup = {"project": project, "principal_id": principal.principal_id, "role": role, "scope": scope}
    assignment = RoleAssignment.objects.filter(**lookup).first()
    if assignment is not None:
        return assignment, False
    actor = user if getattr(user, "is_authenticated", False) else None
    try:
        with transaction.atomic():
            assignment = RoleAssignment.objects.create(
                **lookup, principal_type=principal.principal_type, principal_name=principal.name, created_by=actor
            )
    except IntegrityError:  # granted by someone else meanwhile
        return RoleAssignment.objects.get(**lookup), False
    audit.record(
        actor,
        "role_assignment.create",
        str(assignment),
        project=project,
        principal_id=str(principal.principal_id),
        principal=principal.name,
        role=role.label,
        scope=scope_path(project, scope),
    )
    return assignment, True


def revoke(assignment: RoleAssignment, *, user: Any = None) -> None:
    """Remove an assignment. Instances already running keep what they fetched; the next start is refused."""
    deleted, _ = RoleAssignment.objects.filter(pk=assignment.pk).delete()
    if deleted:
        audit.record(
            user,
            "role_assignment.delete",
            str(assignment),
            project=assignment.project,
            principal_id=str(assignment.principal_id),
            principal=assignment.principal_name,
            role=assignment.get_role_display(),
            scope=scope_path(assignment.project, assignment.scope),
        )


def grant_on_creation(endpoint: Endpoint, user: Any = None) -> RoleAssignment | None:
    """With "Enforce access to connection secrets" on, a new endpoint's system-assigned identity gets Connection
    Secrets Reader on its project when the deploying user holds it. Otherwise nobody grants it here."""
    if endpoint.user_assigned_identity_id or not endpoint.enforce_access_to_connection_secrets:
        return None
    if not may_read_secrets(user, endpoint.project):
        return None
    assignment, _ = grant(endpoint.project, system_principal(endpoint), SECRETS_READER, RoleScope.PROJECT, user=user)
    return assignment


def forget_principal(principal_id: uuid.UUID) -> int:
    """Delete every assignment of a principal that no longer exists (an endpoint's system identity)."""
    deleted, _ = RoleAssignment.objects.filter(principal_id=principal_id).delete()
    return deleted


# --- user-assigned identities -----------------------------------------------------------------


def identity_named(project: Project, value: str) -> ManagedIdentity | None:
    """The project's user-assigned identity named `value`; an Azure resource id
    (.../userAssignedIdentities/<name>) names it by its last segment."""
    name = (value or "").strip().rstrip("/").rpartition("/")[2]
    return ManagedIdentity.objects.filter(project=project, name=name).first() if name else None


def create_identity(project: Project, name: str, *, user: Any = None) -> ManagedIdentity:
    """A new user-assigned identity in the project; ValidationError under `name` for a bad or taken name."""
    name = (name or "").strip()
    identity = ManagedIdentity(project=project, name=name)
    try:
        identity.full_clean(exclude=["created_by"], validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise ValidationError({"name": exc.message_dict.get("name", exc.messages)}) from None
    if ManagedIdentity.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": f"Project '{project.name}' already has an identity named '{name}'."})
    identity.created_by = user if getattr(user, "is_authenticated", False) else None
    try:
        with transaction.atomic():
            identity.save()
    except IntegrityError:
        raise ValidationError({"name": f"Project '{project.name}' already has an identity named '{name}'."}) from None
    audit.record(
        user, "identity.create", name, project=project, principal_id=str(identity.principal_id), kind="user-assigned"
    )
    return identity


def delete_identity(identity: ManagedIdentity, *, user: Any = None) -> None:
    """Delete a user-assigned identity and its role assignments; refused while an endpoint uses it."""
    using = list(identity.endpoints.values_list("name", flat=True))
    if using:
        raise ValidationError(
            {
                "name": f"Identity '{identity.name}' is used by endpoint(s) {', '.join(using)}; "
                "delete those endpoints first."
            }
        )
    with transaction.atomic():
        assignments = forget_principal(identity.principal_id)
        identity.delete()
    audit.record(
        user,
        "identity.delete",
        identity.name,
        project=identity.project,
        principal_id=str(identity.principal_id),
        role_assignments_removed=assignments,
    )


AZURE_ID_FIELDS = ("azure_resource_id", "azure_client_id", "azure_principal_id")


def set_azure_ids(
    identity: ManagedIdentity, *, resource_id: str, client_id: str, principal_id: str, user: Any = None
) -> list[str]:
    """Save the identity's ids in Azure (its ARM resource id, client id and principal id; blank: unknown), for
    the endpoints of a project connected to an Azure ML workspace. Returns the fields that changed; raises
    ValidationError mapping each bad field to a message naming it. Audited with the new values (none is secret)."""
    values = {
        "azure_resource_id": (resource_id or "").strip().rstrip("/"),
        "azure_client_id": (client_id or "").strip().lower(),
        "azure_principal_id": (principal_id or "").strip().lower(),
    }
    errors: dict[str, list[str]] = {}
    for name, value in values.items():
        field = ManagedIdentity._meta.get_field(name)
        try:
            field.clean(value, identity)
        except ValidationError as exc:
            errors[name] = [f"{field.verbose_name} {value!r} is not valid: {message}" for message in exc.messages]
    if errors:
        raise ValidationError(errors)
    changed = [name for name, value in values.items() if getattr(identity, name) != value]
    if changed:
        for name in changed:
            setattr(identity, name, values[name])
        identity.save(update_fields=changed)
        audit.record(user, "identity.azure_ids", identity.name, project=identity.project, changed=changed, **values)
    return changed


# --- the "Add role assignment" flow's choices ----------------------------------------------------


def member_choices(project: Project) -> list[tuple[str, list[tuple[str, str]]]]:
    """The identities of the project an Owner can assign a role to, grouped as Azure's "Select managed
    identities" pane groups them: `system:<endpoint name>` and `user:<identity name>`."""
    from endpoints.models import Endpoint

    endpoints = Endpoint.objects.filter(project=project, deleting=False, user_assigned_identity=None).order_by("name")
    identities = ManagedIdentity.objects.filter(project=project).order_by("name")
    return [
        ("Endpoint (system-assigned)", [(f"system:{e.name}", e.name) for e in endpoints]),
        ("User-assigned managed identity", [(f"user:{i.name}", i.name) for i in identities]),
    ]


def principal_for_member(project: Project, member: str) -> Principal | None:
    """The principal a member choice (`system:<endpoint>` or `user:<identity>`) names in the project."""
    from endpoints.models import Endpoint

    kind, _, name = (member or "").partition(":")
    if kind == "system":
        endpoint = Endpoint.objects.filter(project=project, name=name, deleting=False).first()
        return system_principal(endpoint) if endpoint else None
    if kind == "user":
        identity = ManagedIdentity.objects.filter(project=project, name=name).first()
        return user_principal(identity) if identity else None
    return None
