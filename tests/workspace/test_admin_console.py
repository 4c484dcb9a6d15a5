"""The admin console: every model is there with columns, filters and search; what would break state is read-only;
changes to who may do what are audited."""

import pytest

from django.apps import apps
from django.contrib import admin
from django.urls import reverse

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


@pytest.mark.parametrize("model", [Membership, ManagedIdentity, RoleAssignment])
def test_it_sends_access_changes_to_the_studio(admin_client, django_user_model, identity, model):
    """Memberships, identities and role assignments change only on the Access page, where the rules and the
    audit are: the admin lists them, links there, and cannot add, change or delete them."""
    Membership.objects.create(
        user=django_user_model.objects.create_user("mia", password="pw-mia-12345"), project=identity.project
    )
    RoleAssignment.objects.create(
        project=identity.project,
        principal_id=identity.principal_id,
        principal_type=PrincipalType.USER_ASSIGNED,
        principal_name=identity.name,
        role="acr-pull",
        scope="registry",
    )
    row = model.objects.get()
    opts = model._meta
    listing = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")).content.decode()
    assert "/projects/default/access/" in listing
    assert admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code == 403
    change = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk]))
    assert 'name="_save"' not in change.content.decode()
    delete = admin_client.post(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_delete", args=[row.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403 and model.objects.filter(pk=row.pk).exists()


def test_it_creates_a_project_and_audits_it(admin_client, admin_user):
    management = {"memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}
    response = admin_client.post(
        reverse("admin:workspace_project_add"), {"name": "alpha", "description": "", **management}
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    project = Project.objects.get(name="alpha")
    event = AuditEvent.objects.get(action="project.create")
    assert (event.actor, event.project, event.source) == (admin_user, project, "127.0.0.1")
    page = admin_client.get(reverse("admin:workspace_project_change", args=[project.pk])).content.decode()
    assert "/projects/alpha/access/" in page


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
