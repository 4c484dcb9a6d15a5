"""Access control (IAM) pages: role assignments (only Owners add or remove them, through Azure's "Add role
assignment" steps), members, and the project's user-assigned managed identities."""

import pytest

from endpoints import services
from endpoints.models import IdentityType
from workspace import identities
from workspace.models import (
    AuditEvent,
    BuiltInRole,
    ManagedIdentity,
    Membership,
    Project,
    ProjectRole,
    RoleAssignment,
    RoleScope,
)

pytestmark = pytest.mark.django_db

ACCESS = "/projects/default/access/"
ADD = "/projects/default/access/add/"
IDENTITIES = "/projects/default/identities/"
CSR = BuiltInRole.CONNECTION_SECRETS_READER


@pytest.fixture
def project():
    return Project.default()


@pytest.fixture
def as_role(client, django_user_model, project):
    """Sign in a new member of the default project with `role`."""

    def sign_in(role: str, name: str | None = None):
        user = django_user_model.objects.create_user(name or f"user-{role}", password="pw-access-pages-1")
        Membership.objects.create(project=project, user=user, role=role)
        client.force_login(user)
        return user

    return sign_in


@pytest.fixture
def endpoint():
    """ep-off: its system identity holds no role (Enforce access to connection secrets was off)."""
    return services.create_endpoint("ep-off", enforce_access_to_connection_secrets=False)


def test_it_walks_the_add_role_assignment_steps(client, as_role, endpoint, project):
    owner = as_role(ProjectRole.OWNER)
    page = client.get(ACCESS)
    assert page.status_code == 200
    assert 'id="add-role-assignment"' in page.content.decode()
    assert "ep-off" in page.content.decode() and "Missing" in page.content.decode()

    role_step = client.get(ADD)
    assert role_step.status_code == 200
    html = role_step.content.decode()
    assert 'id="step-role"' in html and "Azure Machine Learning Workspace Connection Secrets Reader" in html

    members_step = client.get(ADD, {"step": "members", "role": CSR})
    html = members_step.content.decode()
    assert 'id="step-members"' in html
    assert "Managed identity" in html
    assert '<option value="system:ep-off">ep-off</option>' in html
    assert '<option value="project" selected>' in html  # the role's default scope

    review = client.get(ADD, {"step": "review", "role": CSR, "assign_access_to": "managed_identity",
                              "member": "system:ep-off", "scope": "project"})  # fmt: skip
    html = review.content.decode()
    assert 'id="step-review"' in html
    assert str(endpoint.principal_id) in html
    assert (
        f"az role assignment create --assignee {endpoint.principal_id} "
        "--role &quot;Azure Machine Learning Workspace Connection Secrets Reader&quot; --scope /projects/default"
    ) in html
    assert not RoleAssignment.objects.exists()  # nothing until Review + assign

    assigned = client.post(ADD, {"role": CSR, "assign_access_to": "managed_identity", "member": "system:ep-off",
                                 "scope": "project"})  # fmt: skip
    assert assigned.status_code == 302 and assigned.url == ACCESS
    assignment = RoleAssignment.objects.get()
    assert (assignment.principal_id, assignment.role, assignment.scope) == (endpoint.principal_id, CSR, "project")
    assert assignment.created_by == owner
    listed = client.get(ACCESS).content.decode()
    assert f'id="assignment-{assignment.pk}"' in listed and "Granted" in listed
    assert AuditEvent.objects.filter(action="role_assignment.create", actor=owner).exists()


def test_it_assigns_a_role_to_a_user_assigned_identity(client, as_role, project):
    as_role(ProjectRole.OWNER)
    identity = identities.create_identity(project, "uai-pull")
    members_step = client.get(ADD, {"step": "members", "role": BuiltInRole.ACR_PULL}).content.decode()
    assert '<option value="user:uai-pull">uai-pull</option>' in members_step
    assert '<option value="registry" selected>' in members_step
    client.post(ADD, {"role": BuiltInRole.ACR_PULL, "assign_access_to": "managed_identity",
                      "member": "user:uai-pull", "scope": "registry"})  # fmt: skip
    assert identities.holds(project, identity.principal_id, BuiltInRole.ACR_PULL, RoleScope.REGISTRY)


def test_a_step_with_a_problem_is_shown_again_with_it(client, as_role, endpoint):
    as_role(ProjectRole.OWNER)
    no_role = client.get(ADD, {"step": "members"})
    assert no_role.status_code == 400 and 'id="step-role"' in no_role.content.decode()
    no_member = client.get(ADD, {"step": "review", "role": CSR, "assign_access_to": "managed_identity",
                                 "scope": "project"})  # fmt: skip
    assert no_member.status_code == 400
    assert 'id="step-members"' in no_member.content.decode() and "This field is required" in no_member.content.decode()
    gone = client.post(ADD, {"role": CSR, "assign_access_to": "managed_identity", "member": "system:ep-nope",
                             "scope": "project"})  # fmt: skip
    assert gone.status_code == 400
    assert not RoleAssignment.objects.exists()


def test_only_owners_grant_and_remove(client, as_role, endpoint, project):
    """A Contributor sees the assignments but gets 403 adding or removing one."""
    assignment, _ = identities.grant(project, identities.system_principal(endpoint), CSR)
    as_role(ProjectRole.CONTRIBUTOR)
    page = client.get(ACCESS).content.decode()
    assert 'id="add-role-assignment"' not in page and 'id="owner-only"' in page
    assert client.get(ADD).status_code == 403
    refused = client.post(ADD, {"role": CSR, "assign_access_to": "managed_identity", "member": "system:ep-off",
                                "scope": "project"})  # fmt: skip
    assert refused.status_code == 403
    assert "managing access needs Owner" in refused.content.decode()
    assert client.post(f"{ACCESS}{assignment.pk}/remove/").status_code == 403
    assert RoleAssignment.objects.count() == 1


def test_a_non_member_sees_nothing(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("stranger", password="pw-access-pages-1"))
    assert client.get(ACCESS).status_code == 404
    assert client.get(ADD).status_code == 404


def test_an_owner_removes_an_assignment(client, as_role, endpoint, project):
    assignment, _ = identities.grant(project, identities.system_principal(endpoint), CSR)
    as_role(ProjectRole.OWNER)
    removed = client.post(f"{ACCESS}{assignment.pk}/remove/")
    assert removed.status_code == 302
    assert not RoleAssignment.objects.exists()


def test_it_shows_the_identity_on_the_endpoint_page(client, as_role, endpoint):
    as_role(ProjectRole.READER)
    page = client.get(f"/endpoints/{endpoint.name}/")
    assert page.status_code == 200
    assert f'href="{ACCESS}" id="identity-access"' in page.content.decode()


# --- members ---------------------------------------------------------------------------------


def test_an_owner_adds_changes_and_removes_a_member(client, as_role, django_user_model, project):
    owner = as_role(ProjectRole.OWNER)
    newcomer = django_user_model.objects.create_user("newcomer", password="pw-access-pages-1")
    client.post(f"{ACCESS}members/add/", {"username": "newcomer", "role": ProjectRole.READER})
    membership = Membership.objects.get(user=newcomer)
    assert membership.role == ProjectRole.READER
    client.post(f"{ACCESS}members/{membership.pk}/role/", {f"m{membership.pk}-role": ProjectRole.CONTRIBUTOR})
    membership.refresh_from_db()
    assert membership.role == ProjectRole.CONTRIBUTOR
    client.post(f"{ACCESS}members/{membership.pk}/remove/")
    assert not Membership.objects.filter(user=newcomer).exists()
    actions = set(AuditEvent.objects.filter(actor=owner).values_list("action", flat=True))
    assert {"member.add", "member.role", "member.remove"} <= actions


def test_the_last_owner_stays(client, as_role):
    owner = as_role(ProjectRole.OWNER)
    mine = Membership.objects.get(user=owner)
    page = client.post(f"{ACCESS}members/{mine.pk}/remove/", follow=True)
    assert "is the last Owner of project &#x27;default&#x27; and cannot be removed" in page.content.decode()
    page = client.post(f"{ACCESS}members/{mine.pk}/role/", {f"m{mine.pk}-role": ProjectRole.READER}, follow=True)
    assert "make someone else Owner first" in page.content.decode()
    mine.refresh_from_db()
    assert mine.role == ProjectRole.OWNER


def test_adding_an_unknown_user_says_so(client, as_role):
    as_role(ProjectRole.OWNER)
    page = client.post(f"{ACCESS}members/add/", {"username": "nobody", "role": "reader"}, follow=True)
    assert "There is no active user named &#x27;nobody&#x27;" in page.content.decode()


def test_a_contributor_cannot_change_members(client, as_role, django_user_model, project):
    as_role(ProjectRole.CONTRIBUTOR)
    django_user_model.objects.create_user("newcomer", password="pw-access-pages-1")
    assert client.post(f"{ACCESS}members/add/", {"username": "newcomer", "role": "owner"}).status_code == 403
    assert Membership.objects.count() == 1


# --- managed identities ----------------------------------------------------------------------


def test_a_contributor_creates_and_deletes_a_user_assigned_identity(client, as_role, project):
    as_role(ProjectRole.CONTRIBUTOR)
    created = client.post(IDENTITIES, {"name": "uai-search"})
    assert created.status_code == 302
    identity = ManagedIdentity.objects.get(project=project, name="uai-search")
    page = client.get(IDENTITIES).content.decode()
    assert 'id="identity-uai-search"' in page and str(identity.principal_id) in page
    bad = client.post(IDENTITIES, {"name": "a"})
    assert bad.status_code == 400 and "3 to 64 letters" in bad.content.decode()
    client.post(f"{IDENTITIES}uai-search/delete/")
    assert not ManagedIdentity.objects.exists()


def test_a_reader_cannot_create_an_identity(client, as_role):
    as_role(ProjectRole.READER)
    assert 'id="identity-create"' not in client.get(IDENTITIES).content.decode()
    assert client.post(IDENTITIES, {"name": "uai-search"}).status_code == 403
    assert not ManagedIdentity.objects.exists()


def test_an_identity_in_use_stays(client, as_role, project):
    as_role(ProjectRole.OWNER)
    identities.create_identity(project, "uai-used")
    services.create_endpoint("ep-uai", identity_type=IdentityType.USER, user_assigned_identity="uai-used")
    page = client.post(f"{IDENTITIES}uai-used/delete/", follow=True).content.decode()
    assert "is used by endpoint(s) ep-uai" in page
    assert ManagedIdentity.objects.filter(name="uai-used").exists()


def test_the_endpoint_page_names_its_user_assigned_identity(client, as_role, project):
    as_role(ProjectRole.READER)
    identity = identities.create_identity(project, "uai-shown")
    services.create_endpoint("ep-uai", identity_type=IdentityType.USER, user_assigned_identity="uai-shown")
    html = client.get("/endpoints/ep-uai/").content.decode()
    assert "uai-shown" in html and str(identity.principal_id) in html
    assert "Enforce access to connection secrets" not in html
