from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from workspace import audit
from workspace.models import AuditEvent, Connection, Notification


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
    list_display = ("created_at", "actor", "action", "target")
    list_filter = ("action", "created_at")
    search_fields = ("action", "target", "actor__username")
    list_select_related = ("actor",)
    date_hierarchy = "created_at"
    readonly_fields = ("created_at", "actor", "action", "target", "detail")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
