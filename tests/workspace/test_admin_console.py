"""The admin console: every model is there with columns, filters and search; what would break state is read-only;
changes to who may do what are audited."""

import pytest

from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from workspace import audit
from workspace.models import (
    DEFAULT_PROJECT,
    AuditEvent,
    EntraAccount,
    ManagedIdentity,
    Membership,
    PrincipalType,
    Project,
    RoleAssignment,
)

pytestmark = pytest.mark.django_db

APPS = ("workspace", "flows", "endpoints", "monitoring", "api")
MODELS = [model for label in APPS for model in apps.get_app_config(label).get_models()]


def _id(model) -> str:
    return f"{model._meta.app_label}.{model.__name__}"


@pytest.mark.parametrize("model", MODELS, ids=_id)
def test_it_registers_every_model_with_columns_filters_and_search(model):
    model_admin = admin.site._registry.get(model)
    assert model_admin is not None, f"{_id(model)} is not in the admin"
    assert tuple(model_admin.list_display) != ("__str__",) and len(model_admin.list_display) >= 3
    assert model_admin.list_filter, f"{_id(model)} has no filters"
    assert model_admin.search_fields, f"{_id(model)} has no search"


@pytest.mark.parametrize("model", MODELS, ids=_id)
def test_it_lists_and_searches_every_model(admin_client, model):
    """Each list page loads, searched and filtered (bad search or filter fields would fail here)."""
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url, {"q": "12"}).status_code == 200


def test_it_keeps_an_instances_pid_and_a_deployments_state_read_only(rf, admin_user):
    from endpoints.models import Deployment, Instance

    request = rf.get("/")
    request.user = admin_user
    for model, field in ((Instance, "pid"), (Deployment, "state")):
        model_admin = admin.site._registry[model]
        assert not model_admin.has_change_permission(request) or field in model_admin.get_readonly_fields(request)


def test_it_keeps_the_audit_log_read_only(admin_client, admin_user):
    event = AuditEvent.objects.create(actor=admin_user, action="x.y", target="t")
    assert admin_client.get(reverse("admin:workspace_auditevent_add")).status_code == 403
    change = admin_client.get(reverse("admin:workspace_auditevent_change", args=[event.pk])).content.decode()
    assert 'name="_save"' not in change
    assert admin_client.post(reverse("admin:workspace_auditevent_delete", args=[event.pk])).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_it_masks_connection_secrets(admin_client, make_connection):
    from tests.workspace.conftest import DEFAULT_API_KEY

    connection = make_connection(name="gpt")
    html = admin_client.get(reverse("admin:workspace_connection_change", args=[connection.pk])).content.decode()
    assert DEFAULT_API_KEY not in html and "api_key: ••••••••" in html


@pytest.fixture
def identity(admin_user):
    return ManagedIdentity.objects.create(project=Project.default(), name="flow-runner", created_by=admin_user)


def test_it_adds_a_role_assignment_and_audits_it(admin_client, admin_user, identity):
    """The principal is named by id; its kind and name are filled in; the grant is an audit event."""
    response = admin_client.post(
        reverse("admin:workspace_roleassignment_add"),
        {
            "project": identity.project_id,
            "principal_id": str(identity.principal_id),
            "role": "connection-secrets-reader",
            "scope": "project",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    assignment = RoleAssignment.objects.get()
    assert (assignment.principal_type, assignment.principal_name, assignment.created_by) == (
        PrincipalType.USER_ASSIGNED,
        "flow-runner",
        admin_user,
    )
    event = AuditEvent.objects.get(action="role_assignment.create")
    assert (event.actor, event.project_id, event.source) == (admin_user, identity.project_id, "127.0.0.1")
    assert event.detail["principal"] == "flow-runner" and event.detail["via"] == "admin"


def test_it_refuses_a_role_assignment_for_an_unknown_principal(admin_client):
    response = admin_client.post(
        reverse("admin:workspace_roleassignment_add"),
        {
            "project": Project.default().pk,
            "principal_id": "00000000-0000-0000-0000-000000000001",
            "role": "acr-pull",
            "scope": "registry",
        },
    )
    assert response.status_code == 200
    assert "has this principal id" in response.content.decode()
    assert not RoleAssignment.objects.exists()
    assert not AuditEvent.objects.exclude(action=audit.SIGN_IN).exists()  # admin_client's sign-in only


def test_it_deletes_role_assignments_and_audits_each(admin_client, admin_user, identity):
    assignments = [
        RoleAssignment.objects.create(
            project=identity.project,
            principal_id=identity.principal_id,
            principal_type=PrincipalType.USER_ASSIGNED,
            principal_name=identity.name,
            role=role,
            scope="project",
        )
        for role in ("acr-pull", "metrics-writer")
    ]
    change = admin_client.get(reverse("admin:workspace_roleassignment_change", args=[assignments[0].pk]))
    assert 'name="_save"' not in change.content.decode()  # an assignment is removed and added, never changed
    admin_client.post(reverse("admin:workspace_roleassignment_delete", args=[assignments[0].pk]), {"post": "yes"})
    admin_client.post(
        reverse("admin:workspace_roleassignment_changelist"),
        {"action": "delete_selected", "_selected_action": [assignments[1].pk], "post": "yes"},
    )
    assert not RoleAssignment.objects.exists()
    events = AuditEvent.objects.filter(action="role_assignment.delete")
    assert sorted(e.detail["role"] for e in events) == ["AcrPull", "Workspace metrics writer"]
    assert {e.project_id for e in events} == {identity.project_id}


def test_it_audits_memberships_added_on_the_project_page(admin_client, django_user_model):
    member = django_user_model.objects.create_user("mia", password="pw-mia-12345")
    project = Project.objects.create(name="alpha")
    response = admin_client.post(
        reverse("admin:workspace_project_change", args=[project.pk]),
        {
            "name": "alpha",
            "description": "",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-user": str(member.pk),
            "memberships-0-role": "owner",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert Membership.objects.get(project=project).user == member
    event = AuditEvent.objects.get(action="member.add")
    assert (event.project, event.target, event.detail["role"]) == (project, "mia in alpha", "Owner")
    response = admin_client.post(
        reverse("admin:workspace_project_change", args=[project.pk]),
        {
            "name": "alpha",
            "description": "",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
            "memberships-0-id": str(Membership.objects.get().pk),
            "memberships-0-project": str(project.pk),
            "memberships-0-user": str(member.pk),
            "memberships-0-role": "reader",
            "memberships-0-DELETE": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert not Membership.objects.exists()
    removed = AuditEvent.objects.get(action="member.remove")
    assert (removed.project, removed.detail["role"]) == (project, "Owner")


def test_it_audits_membership_changes(admin_client, django_user_model):
    member = django_user_model.objects.create_user("mia", password="pw-mia-12345")
    membership = Membership.objects.create(user=member, project=Project.default(), role="reader")
    url = reverse("admin:workspace_membership_change", args=[membership.pk])
    assert admin_client.post(url, {"role": "contributor"}).status_code == 302
    admin_client.post(reverse("admin:workspace_membership_delete", args=[membership.pk]), {"post": "yes"})
    events = AuditEvent.objects.exclude(action=audit.SIGN_IN).order_by("id")
    assert [(e.action, e.detail) for e in events] == [
        ("member.role", {"before": "Reader", "after": "Contributor", "via": "admin"}),
        ("member.remove", {"role": "Contributor", "via": "admin"}),
    ]


def test_it_keeps_the_default_projects_name(admin_client):
    project = Project.default()
    html = admin_client.get(reverse("admin:workspace_project_change", args=[project.pk])).content.decode()
    assert 'name="name"' not in html and DEFAULT_PROJECT in html


def test_it_shows_entra_accounts_without_add_or_change(admin_client, django_user_model):
    user = django_user_model.objects.create_user("ada@contoso.example")
    account = EntraAccount.objects.create(user=user, object_id="oid-1", tenant_id="t")
    assert admin_client.get(reverse("admin:workspace_entraaccount_add")).status_code == 403
    html = admin_client.get(reverse("admin:workspace_entraaccount_change", args=[account.pk])).content.decode()
    assert "oid-1" in html and 'name="_save"' not in html
