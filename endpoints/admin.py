"""The admin shows endpoints and deployments but does not create, delete or reshape them: those go through
endpoints.services (keys, validation, provisioning, routing), as the studio, the API and the CLI do. An
endpoint's description and tags are the only things edited here, saved through services.update_endpoint."""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from endpoints import services
from endpoints.models import Deployment, DeploymentEvent, Endpoint, Instance


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows whose changes must go through the services: shown, never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class DeploymentInline(admin.TabularInline):
    model = Deployment
    fields = ("name", "flow_version", "state", "phase", "vm_size", "instance_count")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class EndpointAdminForm(forms.ModelForm):
    class Meta:
        model = Endpoint
        fields = ("description", "tags")

    def clean(self):
        data = super().clean()
        try:
            data["tags"] = services.clean_tags(data.get("tags"))
        except ValidationError as exc:
            self.add_error(None, exc)
        return data


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointAdminForm
    list_display = ("name", "project", "auth_type", "identity_type", "traffic", "provider", "created_by", "created_at")
    list_filter = ("project", "auth_type", "identity_type", "provider")
    search_fields = ("name", "description", "principal_id")
    list_select_related = ("project", "created_by")
    fields = (
        "name",
        "project",
        "description",
        "tags",
        "auth_type",
        "identity_type",
        "user_assigned_identity",
        "principal_id",
        "enforce_access_to_connection_secrets",
        "traffic",
        "mirror_traffic",
        "provider",
        "routing_version",
        "deleting",
        "created_by",
        "created_at",
        "updated_at",
    )
    readonly_fields = tuple(f for f in fields if f not in ("description", "tags"))
    inlines = [DeploymentInline]

    def has_add_permission(self, request):
        return False  # an endpoint needs keys, a checked name and routing: create it in the studio or the API

    def has_delete_permission(self, request, obj=None):
        return False  # deleting stops instances and revokes keys: use Delete endpoint in the studio

    def save_model(self, request, obj, form, change):
        services.update_endpoint(
            obj, tags=form.cleaned_data["tags"], description=form.cleaned_data["description"], user=request.user
        )


class InstanceInline(admin.TabularInline):
    model = Instance
    fields = ("ordinal", "generation", "state", "port", "pid", "restarts", "started_at", "ready_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class EventInline(admin.TabularInline):
    model = DeploymentEvent
    fields = ("created_at", "phase", "level", "message")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "flow_version", "state", "phase", "vm_size", "instance_count", "created_at")
    list_filter = ("state", "phase", "vm_size", "endpoint__project")
    search_fields = ("name", "endpoint__name", "flow_version__flow__name")
    list_select_related = ("endpoint", "flow_version__flow")
    inlines = [InstanceInline, EventInline]


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "state", "port", "pid", "restarts", "started_at")
    list_filter = ("state",)
    search_fields = ("id", "deployment__name", "deployment__endpoint__name", "pid", "port")
    list_select_related = ("deployment__endpoint",)


@admin.register(DeploymentEvent)
class DeploymentEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "deployment", "phase", "level", "message")
    list_filter = ("level", "phase")
    search_fields = ("message", "deployment__name")
