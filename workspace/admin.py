"""The admin console: every workspace model, read-only where editing here would break state. Changes to who may
do what (memberships, role assignments, identities) write an audit event, as they do in the studio."""

from typing import Any

from django import forms
from django.apps import apps
from django.contrib import admin
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from workspace import audit
from workspace.models import (
    DEFAULT_PROJECT,
    AuditEvent,
    Connection,
    EntraAccount,
    ManagedIdentity,
    Membership,
    Notification,
    PrincipalType,
    Project,
    ProjectRole,
    RoleAssignment,
)


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    """Read-only view of connections; they are created and edited in the studio, where values are checked."""

    list_display = ("name", "type", "target", "created_by", "updated_at")
    list_filter = ("type",)
    search_fields = ("name",)
    exclude = ("secrets_encrypted",)
    fields = ("name", "type", "configs", "saved_secrets", "created_by", "created_at", "updated_at", "studio")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Secrets")
    def saved_secrets(self, obj: Connection) -> str:
        return obj.masked_secrets

    @admin.display(description="Edit")
    def studio(self, obj: Connection) -> str:
        url = reverse("workspace:connection_edit", args=[obj.name])
        return format_html('<a href="{}">Edit in the studio</a>', url)

    def delete_model(self, request, obj: Connection) -> None:
        name, connection_type = obj.name, obj.type
        super().delete_model(request, obj)
        audit.record(request.user, "connection.delete", name, type=connection_type, via="admin")

    def delete_queryset(self, request, queryset) -> None:
        deleted = list(queryset.values_list("name", "type"))
        super().delete_queryset(request, queryset)
        for name, connection_type in deleted:
            audit.record(request.user, "connection.delete", name, type=connection_type, via="admin")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("user", "title", "level", "read_at", "created_at")
    list_filter = ("level", ("read_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("title", "body", "user__username")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    date_hierarchy = "created_at"


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor", "action", "target", "project", "source")
    list_filter = ("action", "project", "created_at")
    search_fields = ("action", "target", "actor__username", "source")
    list_select_related = ("actor", "project")
    date_hierarchy = "created_at"
    readonly_fields = ("created_at", "actor", "action", "target", "project", "source", "detail")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _audit_membership(request, action: str, membership: Membership, **detail: Any) -> None:
    """The same events as the project's Access page (workspace/members.py): member.add, member.role, member.remove."""
    target = f"{membership.user.get_username()} in {membership.project.name}"
    audit.record(request.user, action, target, request=request, project=membership.project_id, via="admin", **detail)


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    raw_id_fields = ("user",)
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "member_count", "created_at")
    list_filter = ("created_at",)
    search_fields = ("name", "description")
    date_hierarchy = "created_at"
    readonly_fields = ("created_at",)
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(members=Count("memberships"))

    @admin.display(description="Members", ordering="members")
    def member_count(self, obj: Project) -> int:
        return obj.members

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.name == DEFAULT_PROJECT:
            return ("name", "created_at")  # rows made without a project land in "default", found by its name
        return self.readonly_fields

    def save_formset(self, request, form, formset, change) -> None:
        """Memberships changed inline write the same audit events as the Membership pages."""
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        # By the form's own object: a deleted membership has no pk left to look it up by.
        before = {id(f.instance): f.initial.get("role") for f in formset.initial_forms}
        super().save_formset(request, form, formset, change)
        for membership in formset.new_objects:
            _audit_membership(request, "member.add", membership, role=membership.get_role_display())
        for membership, changed in formset.changed_objects:
            if "role" in changed:
                old = ProjectRole(before[id(membership)]).label
                _audit_membership(request, "member.role", membership, before=old, after=membership.get_role_display())
        for membership in formset.deleted_objects:
            _audit_membership(request, "member.remove", membership, role=ProjectRole(before[id(membership)]).label)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "project", "role", "created_at")
    list_filter = ("role", "project")
    search_fields = ("user__username", "user__email", "project__name")
    list_select_related = ("user", "project")
    raw_id_fields = ("user",)
    readonly_fields = ("created_at",)

    def get_readonly_fields(self, request, obj=None):
        # Changing whose membership it is, or of which project, is a removal and an addition: do those.
        return ("user", "project", "created_at") if obj is not None else self.readonly_fields

    def save_model(self, request, obj: Membership, form, change) -> None:
        before = Membership.objects.filter(pk=obj.pk).values_list("role", flat=True).first() if change else None
        super().save_model(request, obj, form, change)
        if not change:
            _audit_membership(request, "member.add", obj, role=obj.get_role_display())
        elif before != obj.role:
            old = ProjectRole(before).label if before else ""
            _audit_membership(request, "member.role", obj, before=old, after=obj.get_role_display())

    def delete_model(self, request, obj: Membership) -> None:
        super().delete_model(request, obj)
        _audit_membership(request, "member.remove", obj, role=obj.get_role_display())

    def delete_queryset(self, request, queryset) -> None:
        for membership in queryset.select_related("user", "project"):
            self.delete_model(request, membership)


@admin.register(ManagedIdentity)
class ManagedIdentityAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "principal_id", "client_id", "created_by", "created_at")
    list_filter = ("project",)
    search_fields = ("name", "principal_id", "client_id", "project__name")
    list_select_related = ("project", "created_by")
    readonly_fields = ("principal_id", "client_id", "created_by", "created_at")

    def get_readonly_fields(self, request, obj=None):
        # Endpoints and role assignments name the identity: it keeps its name and project once made.
        return ("name", "project", *self.readonly_fields) if obj is not None else self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # endpoints may run as it and its role assignments must go with it: delete it in the studio

    def save_model(self, request, obj: ManagedIdentity, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if not change:
            audit.record(
                request.user,
                "identity.create",
                obj.name,
                request=request,
                project=obj.project_id,
                principal_id=str(obj.principal_id),
                kind="user-assigned",
                via="admin",
            )


class RoleAssignmentForm(forms.ModelForm):
    """Name the principal by its id; its kind and name are looked up in the project (an endpoint's
    system-assigned identity or one of the project's user-assigned identities)."""

    class Meta:
        model = RoleAssignment
        fields = ("project", "principal_id", "role", "scope")
        help_texts = {
            "principal_id": "The principal id of an endpoint's system-assigned identity or of a "
            "user-assigned identity of the project."
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        project, principal_id = data.get("project"), data.get("principal_id")
        if project is None or principal_id is None:
            return data
        identity = ManagedIdentity.objects.filter(project=project, principal_id=principal_id).first()
        endpoint = (
            apps.get_model("endpoints", "Endpoint").objects.filter(project=project, principal_id=principal_id).first()
        )
        if identity is not None:
            self.instance.principal_type, self.instance.principal_name = PrincipalType.USER_ASSIGNED, identity.name
        elif endpoint is not None:
            self.instance.principal_type, self.instance.principal_name = PrincipalType.SYSTEM_ASSIGNED, endpoint.name
        else:
            self.add_error(
                "principal_id", f"No endpoint or user-assigned identity of project '{project}' has this principal id."
            )
        return data


def _assignment_detail(assignment: RoleAssignment) -> dict[str, Any]:
    return {
        "principal_id": str(assignment.principal_id),
        "principal": assignment.principal_name,
        "role": assignment.get_role_display(),
        "scope": assignment.get_scope_display(),
        "via": "admin",
    }


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(admin.ModelAdmin):
    """Add and remove; never change (an assignment is a fact: remove it and add another)."""

    form = RoleAssignmentForm
    list_display = ("principal_name", "principal_type", "role", "scope", "project", "created_by", "created_at")
    list_filter = ("role", "scope", "principal_type", "project")
    search_fields = ("principal_name", "principal_id", "project__name")
    list_select_related = ("project", "created_by")

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("project", "principal_id", "role", "scope")
        return (
            "project",
            "principal_name",
            "principal_type",
            "principal_id",
            "role",
            "scope",
            "created_by",
            "created_at",
        )

    def save_model(self, request, obj: RoleAssignment, form, change) -> None:
        obj.created_by = request.user
        super().save_model(request, obj, form, change)
        audit.record(
            request.user,
            "role_assignment.create",
            str(obj),
            request=request,
            project=obj.project_id,
            **_assignment_detail(obj),
        )

    def delete_model(self, request, obj: RoleAssignment) -> None:
        detail, project_id, target = _assignment_detail(obj), obj.project_id, str(obj)
        super().delete_model(request, obj)
        audit.record(request.user, "role_assignment.delete", target, request=request, project=project_id, **detail)

    def delete_queryset(self, request, queryset) -> None:
        for assignment in queryset.select_related("project"):
            self.delete_model(request, assignment)


@admin.register(EntraAccount)
class EntraAccountAdmin(admin.ModelAdmin):
    """Made by the first "Sign in with Microsoft"; the object id is how the next sign-in finds the user."""

    list_display = ("user", "object_id", "tenant_id", "last_sign_in")
    list_filter = ("tenant_id", ("last_sign_in", admin.EmptyFieldListFilter))
    search_fields = ("user__username", "user__email", "object_id")
    list_select_related = ("user",)
    readonly_fields = ("user", "object_id", "tenant_id", "last_sign_in")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
