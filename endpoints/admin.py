from django.contrib import admin

from endpoints.models import Deployment, DeploymentEvent, Endpoint, Instance


class DeploymentInline(admin.TabularInline):
    model = Deployment
    fields = ("name", "flow_version", "state", "phase", "vm_size", "instance_count")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ("name", "auth_type", "identity_type", "traffic", "provider", "created_by", "created_at")
    list_filter = ("auth_type", "identity_type", "provider")
    search_fields = ("name", "description")
    exclude = ("keys_encrypted",)
    readonly_fields = ("routing_version", "traffic", "mirror_traffic", "deleting")
    inlines = [DeploymentInline]


class InstanceInline(admin.TabularInline):
    model = Instance
    fields = ("ordinal", "generation", "state", "port", "pid", "restarts", "started_at", "ready_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


class EventInline(admin.TabularInline):
    model = DeploymentEvent
    fields = ("created_at", "phase", "level", "message")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("__str__", "flow_version", "state", "phase", "vm_size", "instance_count", "created_at")
    list_filter = ("state", "phase", "vm_size")
    search_fields = ("name", "endpoint__name", "flow_version__flow__name")
    readonly_fields = ("state", "phase", "failure_reason", "generation", "live_generation", "heartbeat_at", "task_id")
    inlines = [InstanceInline, EventInline]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "state", "port", "pid", "restarts", "started_at")
    list_filter = ("state",)
    readonly_fields = [f.name for f in Instance._meta.fields]


@admin.register(DeploymentEvent)
class DeploymentEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "deployment", "phase", "level", "message")
    list_filter = ("level", "phase")
    search_fields = ("message", "deployment__name")
    readonly_fields = [f.name for f in DeploymentEvent._meta.fields]
