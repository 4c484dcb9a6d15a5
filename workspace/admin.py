"""The admin console: every workspace model, read-only where editing here would break state or skip a rule. Who
may do what (memberships, identities, role assignments) is changed on the project's Access control (IAM) page."""

from typing import Any

from django.contrib import admin
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from workspace import audit
from workspace.models import (
    DEFAULT_PROJECT,
    AuditEvent,
    AzureWorkspace,
    Connection,
    EntraAccount,
    ManagedIdentity,
    Membership,
    Notification,
    Project,
    RoleAssignment,
)


class ReadOnly:
    """For admins (and inlines) that show what the studio changes: no add, change or delete here."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


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
class AuditEventAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("created_at", "actor", "action", "target", "project", "source")
    list_filter = ("action", "project", "created_at")
    search_fields = ("action", "target", "actor__username", "source")
    list_select_related = ("actor", "project")
    date_hierarchy = "created_at"
    readonly_fields = ("created_at", "actor", "action", "target", "project", "source", "detail")


class ManagedInTheStudio(ReadOnly, admin.ModelAdmin):
    """Who may do what is changed on the project's Access control (IAM) page, where the rules are kept (the last
    Owner stays, a grant names an existing principal) and every change is audited (workspace/members.py,
    workspace/identities.py). Here it is read-only, with a link there."""

    @admin.display(description="Manage")
    def studio(self, obj: Any) -> str:
        project = obj.project if hasattr(obj, "project") else obj
        url = reverse("workspace:access", args=[project.name])
        return format_html('<a href="{}">Access control (IAM) of {}</a>', url, project.name)


class MembershipInline(ReadOnly, admin.TabularInline):
    model = Membership
    fields = ("user", "role", "created_at")
    readonly_fields = fields
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    """Projects are made here (by a site administrator); their members are managed in the studio."""

    list_display = ("name", "description", "member_count", "created_at", "studio")
    list_filter = ("created_at",)
    search_fields = ("name", "description")
    date_hierarchy = "created_at"
    readonly_fields = ("created_at", "studio")
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(members=Count("memberships"))

    @admin.display(description="Members", ordering="members")
    def member_count(self, obj: Project) -> int:
        return obj.members

    @admin.display(description="Members and roles")
    def studio(self, obj: Project) -> str:
        if obj.pk is None:
            return "Add members on the project's Access control (IAM) page once it is saved."
        return ManagedInTheStudio.studio(self, obj)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.name == DEFAULT_PROJECT:
            return ("name", *self.readonly_fields)  # rows made without a project land in "default", by its name
        return self.readonly_fields

    def save_model(self, request, obj: Project, form, change) -> None:
        super().save_model(request, obj, form, change)
        action = "project.update" if change else "project.create"
        audit.record(request.user, action, obj.name, request=request, project=obj, via="admin")


@admin.register(Membership)
class MembershipAdmin(ManagedInTheStudio):
    list_display = ("user", "project", "role", "created_at", "studio")
    list_filter = ("role", "project")
    search_fields = ("user__username", "user__email", "project__name")
    list_select_related = ("user", "project")


@admin.register(ManagedIdentity)
class ManagedIdentityAdmin(ManagedInTheStudio):
    list_display = ("name", "project", "principal_id", "client_id", "created_by", "created_at", "studio")
    list_filter = ("project",)
    search_fields = ("name", "principal_id", "client_id", "project__name")
    list_select_related = ("project", "created_by")


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(ManagedInTheStudio):
    list_display = (
        "principal_name",
        "principal_type",
        "role",
        "scope",
        "project",
        "created_by",
        "created_at",
        "studio",
    )
    list_filter = ("role", "scope", "principal_type", "project")
    search_fields = ("principal_name", "principal_id", "project__name")
    list_select_related = ("project", "created_by")


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


@admin.register(AzureWorkspace)
class AzureWorkspaceAdmin(ReadOnly, admin.ModelAdmin):
    """Read-only: a project is connected, changed and disconnected on its Azure Machine Learning page, where the
    settings are checked, a disconnect is refused while endpoints run there, and every change is audited."""

    list_display = ("project", "workspace_name", "resource_group", "region", "credential_type", "verified_at", "studio")
    list_filter = ("credential_type", ("verified_at", admin.EmptyFieldListFilter))
    search_fields = ("project__name", "workspace_name", "resource_group", "subscription_id", "client_id")
    list_select_related = ("project", "created_by")
    exclude = ("secrets_encrypted",)
    fields = (
        "project",
        "subscription_id",
        "resource_group",
        "workspace_name",
        "region",
        "credential_type",
        "tenant_id",
        "client_id",
        "saved_secrets",
        "verified_at",
        "created_by",
        "created_at",
        "updated_at",
        "studio",
    )
    readonly_fields = fields

    @admin.display(description="Secrets")
    def saved_secrets(self, obj: AzureWorkspace) -> str:
        return obj.masked_secrets

    @admin.display(description="Manage")
    def studio(self, obj: AzureWorkspace) -> str:
        url = reverse("workspace:azure", args=[obj.project.name])
        return format_html('<a href="{}">Azure Machine Learning of {}</a>', url, obj.project.name)
