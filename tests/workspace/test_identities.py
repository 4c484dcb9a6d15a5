"""Endpoint identities and their roles (workspace/identities.py): what is granted at creation, what a deployment
needs, the messages that say what is missing, and what goes away with an endpoint or an identity."""

import importlib

import pytest

from django.core.exceptions import ValidationError

from endpoints import services
from endpoints.models import Endpoint, IdentityType
from flows.models import Flow, FlowSource, FlowVersion
from workspace import identities
from workspace.models import (
    AuditEvent,
    BuiltInRole,
    ManagedIdentity,
    Membership,
    PrincipalType,
    Project,
    ProjectRole,
    RoleAssignment,
    RoleScope,
)

pytestmark = pytest.mark.django_db

CSR = BuiltInRole.CONNECTION_SECRETS_READER


@pytest.fixture
def project():
    return Project.default()


@pytest.fixture
def member(django_user_model, project):
    def make(role: str, name: str | None = None):
        user = django_user_model.objects.create_user(name or role, password="pw-identities-1")
        Membership.objects.create(project=project, user=user, role=role)
        return user

    return make


def _version(connections: bool = True) -> FlowVersion:
    flow = Flow.objects.create(name=f"flow-{connections}")
    used = [{"name": "open_ai_connection", "nodes": ["chat"], "types": ["OpenAIConnection"]}] if connections else []
    return FlowVersion.objects.create(
        flow=flow, version=1, content_hash=f"hash-{connections}", source=FlowSource.FOLDER, connections=used
    )


@pytest.mark.parametrize("role", [ProjectRole.OWNER, ProjectRole.CONTRIBUTOR])
def test_it_grants_connection_secrets_reader_when_the_deploying_user_holds_it(member, project, role):
    endpoint = services.create_endpoint("ep-granted", user=member(role))
    assignment = RoleAssignment.objects.get(principal_id=endpoint.principal_id)
    assert (assignment.role, assignment.scope, assignment.project) == (CSR, RoleScope.PROJECT, project)
    assert assignment.principal_type == PrincipalType.SYSTEM_ASSIGNED
    assert assignment.principal_name == "ep-granted"
    assert AuditEvent.objects.filter(action="role_assignment.create").exists()


def test_it_grants_nothing_for_a_user_without_the_role(member):
    """A Reader does not hold Connection Secrets Reader, so creating does not pass it on."""
    endpoint = services.create_endpoint("ep-reader", user=member(ProjectRole.READER))
    assert not RoleAssignment.objects.filter(principal_id=endpoint.principal_id).exists()


def test_it_grants_nothing_with_enforce_access_off(member):
    endpoint = services.create_endpoint(
        "ep-off", user=member(ProjectRole.OWNER), enforce_access_to_connection_secrets=False
    )
    assert not RoleAssignment.objects.exists()
    assert identities.missing_roles(endpoint, _version()) == [(CSR, RoleScope.PROJECT)]
    assert identities.missing_roles(endpoint, _version(connections=False)) == []


def test_it_says_what_is_missing_and_where_an_owner_grants_it(project):
    endpoint = services.create_endpoint("ep-x", enforce_access_to_connection_secrets=False)
    assert identities.missing_role_message(endpoint, CSR, RoleScope.PROJECT) == (
        "Endpoint identity 'ep-x' (system-assigned) lacks 'Azure Machine Learning Workspace Connection Secrets "
        "Reader' on project 'default'. An Owner can grant it at /projects/default/access/."
    )


def test_it_resolves_a_user_assigned_identity_by_name_in_the_endpoints_project(project):
    identity = identities.create_identity(project, "uai-reader")
    endpoint = services.create_endpoint(
        "ep-uai", identity_type=IdentityType.USER, user_assigned_identity="uai-reader", project=project
    )
    assert endpoint.user_assigned_identity == identity
    assert not endpoint.enforce_access_to_connection_secrets
    assert identities.principal_of(endpoint) == identities.Principal(
        identity.principal_id, PrincipalType.USER_ASSIGNED, "uai-reader"
    )
    by_resource_id = services.create_endpoint(
        "ep-uai-two",
        identity_type=IdentityType.USER,
        user_assigned_identity="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/"
        "userAssignedIdentities/uai-reader",
    )
    assert by_resource_id.user_assigned_identity == identity


def test_it_refuses_an_unknown_user_assigned_identity_naming_the_field(project):
    other = Project.objects.create(name="other")
    identities.create_identity(other, "uai-elsewhere")
    with pytest.raises(ValidationError) as caught:
        services.create_endpoint("ep-nope", identity_type=IdentityType.USER, user_assigned_identity="uai-elsewhere")
    assert list(caught.value.message_dict) == ["user_assigned_identity"]
    assert "Project 'default' has no user-assigned identity named 'uai-elsewhere'" in str(caught.value)
    assert not Endpoint.objects.exists()


def test_a_user_assigned_identity_needs_three_roles(project):
    identity = identities.create_identity(project, "uai-roles")
    endpoint = services.create_endpoint("ep-uai", identity_type=IdentityType.USER, user_assigned_identity="uai-roles")
    assert identities.missing_roles(endpoint, _version()) == [
        (CSR, RoleScope.PROJECT),
        (BuiltInRole.ACR_PULL, RoleScope.REGISTRY),
        (BuiltInRole.STORAGE_BLOB_DATA_READER, RoleScope.STORAGE),
    ]
    principal = identities.user_principal(identity)
    identities.grant(project, principal, BuiltInRole.ACR_PULL)  # its default scope: the registry
    assert identities.holds(project, identity.principal_id, BuiltInRole.ACR_PULL, RoleScope.REGISTRY)
    assert identities.missing_role_message(endpoint, BuiltInRole.STORAGE_BLOB_DATA_READER, RoleScope.STORAGE) == (
        "Endpoint identity 'uai-roles' (user-assigned) lacks 'Storage Blob Data Reader' on the storage of project "
        "'default' (/projects/default/storage/flows). An Owner can grant it at /projects/default/access/."
    )


def test_granting_twice_keeps_one_assignment_and_revoking_removes_it(project):
    endpoint = services.create_endpoint("ep-twice", enforce_access_to_connection_secrets=False)
    principal = identities.system_principal(endpoint)
    first, created = identities.grant(project, principal, CSR)
    again, created_again = identities.grant(project, principal, CSR)
    assert (created, created_again, first.pk) == (True, False, again.pk)
    identities.revoke(first)
    assert not identities.holds(project, endpoint.principal_id, CSR)
    assert AuditEvent.objects.filter(action="role_assignment.delete").count() == 1


def test_it_writes_the_az_command(project):
    endpoint = services.create_endpoint("ep-az")
    (assignment,) = RoleAssignment.objects.filter(principal_id=endpoint.principal_id)
    assert identities.assignment_command(assignment) == (
        f"az role assignment create --assignee {endpoint.principal_id} "
        '--role "Azure Machine Learning Workspace Connection Secrets Reader" --scope /projects/default'
    )


def test_the_system_identity_and_its_roles_go_with_the_endpoint(project):
    endpoint = services.create_endpoint("ep-gone")
    other = services.create_endpoint("ep-stays")
    endpoint.delete()
    assert list(RoleAssignment.objects.values_list("principal_name", flat=True)) == ["ep-stays"]
    Endpoint.objects.filter(pk=other.pk).delete()  # a queryset delete too
    assert not RoleAssignment.objects.exists()


def test_an_identity_in_use_is_not_deleted_and_an_unused_one_takes_its_roles_along(project):
    identity = identities.create_identity(project, "uai-used")
    endpoint = services.create_endpoint("ep-uses", identity_type=IdentityType.USER, user_assigned_identity="uai-used")
    identities.grant(project, identities.user_principal(identity), BuiltInRole.ACR_PULL)
    with pytest.raises(ValidationError, match="used by endpoint"):
        identities.delete_identity(identity)
    endpoint.delete()
    identities.delete_identity(identity)
    assert not ManagedIdentity.objects.exists()
    assert not RoleAssignment.objects.exists()


def test_it_refuses_a_bad_or_taken_identity_name(project):
    identities.create_identity(project, "uai-one")
    with pytest.raises(ValidationError) as taken:
        identities.create_identity(project, "uai-one")
    assert "already has an identity named 'uai-one'" in taken.value.message_dict["name"][0]
    with pytest.raises(ValidationError) as bad:
        identities.create_identity(project, "a/b")
    assert list(bad.value.message_dict) == ["name"]
    identities.create_identity(Project.objects.create(name="other"), "uai-one")  # names are per project


def test_the_migration_turns_names_into_identity_names():
    migration = importlib.import_module("endpoints.migrations.0006_endpoint_user_assigned_identity_fk")
    assert migration.identity_name("flow-reader") == "flow-reader"
    assert migration.identity_name("/ids/flow-reader") == "flow-reader"
    assert migration.identity_name("my id!") == "my-id"
    assert migration.identity_name("x") == "identity-x"


@pytest.mark.django_db(transaction=True)
def test_the_migration_turns_each_name_into_an_identity_of_the_endpoints_project_with_its_roles():
    """endpoints 0006 on rows saved before it: names become ManagedIdentity rows holding the three roles a
    user-assigned identity needs, so these endpoints keep starting."""
    import uuid

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("endpoints", "0005_grant_existing_identities")]
    after = [("endpoints", "0006_endpoint_user_assigned_identity_fk")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        OldEndpoint = old.get_model("endpoints", "Endpoint")
        project_id = old.get_model("workspace", "Project").objects.get_or_create(name="default")[0].pk
        for name, identity in (("ep-a", "/ids/flow-reader"), ("ep-b", "flow-reader"), ("ep-c", "")):
            kind = "user_assigned" if identity else "system_assigned"
            OldEndpoint.objects.create(
                name=name,
                project_id=project_id,
                identity_type=kind,
                user_assigned_identity=identity,
                principal_id=uuid.uuid4(),
            )
        executor = MigrationExecutor(connection)
        executor.migrate(after)
    finally:
        MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())
    identity = ManagedIdentity.objects.get()
    assert identity.name == "flow-reader"
    assert {e.name: e.user_assigned_identity for e in Endpoint.objects.all()} == {
        "ep-a": identity,
        "ep-b": identity,
        "ep-c": None,
    }
    held = set(RoleAssignment.objects.filter(principal_id=identity.principal_id).values_list("role", "scope"))
    assert held == {
        (CSR, RoleScope.PROJECT),
        (BuiltInRole.ACR_PULL, RoleScope.REGISTRY),
        (BuiltInRole.STORAGE_BLOB_DATA_READER, RoleScope.STORAGE),
    }
