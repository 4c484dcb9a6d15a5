from django.contrib import admin

from monitoring.models import DataCollectionPolicy, InstanceSample, RequestRecord, Span


@admin.register(DataCollectionPolicy)
class DataCollectionPolicyAdmin(admin.ModelAdmin):
    list_display = (
        "endpoint_name",
        "deployment_name",
        "sampling_percent",
        "retention_days",
        "updated_by",
        "updated_at",
    )
    list_filter = ("sampling_percent", "retention_days")
    search_fields = ("endpoint_name", "deployment_name")
    readonly_fields = ("updated_by", "updated_at")

    def save_model(self, request, obj, form, change):
        from monitoring import services

        saved = services.set_policy(
            obj.endpoint_name, obj.deployment_name, obj.sampling_percent, obj.retention_days, request.user
        )
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        from monitoring import services

        super().delete_model(request, obj)
        services.publish_policy_on_commit()

    def delete_queryset(self, request, queryset):
        from monitoring import services

        super().delete_queryset(request, queryset)
        services.publish_policy_on_commit()


class Measured(admin.ModelAdmin):
    """What the gateway, the instances and the reconciler measured: read-only, removed by retention."""

    date_hierarchy = "time"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RequestRecord)
class RequestRecordAdmin(Measured):
    list_display = ("time", "endpoint_name", "deployment_name", "status", "total_ms", "model_ms", "request_id")
    list_filter = ("status", "throttled", "timed_out", "streamed", "endpoint_name")
    search_fields = ("request_id", "endpoint_name", "deployment_name")


@admin.register(InstanceSample)
class InstanceSampleAdmin(Measured):
    list_display = ("time", "endpoint_name", "deployment_name", "instance_name", "cpu_seconds", "memory_bytes")
    list_filter = ("endpoint_name",)
    search_fields = ("endpoint_name", "deployment_name", "instance_name")


@admin.register(Span)
class SpanAdmin(Measured):
    list_display = ("start", "name", "kind", "duration_ms", "status", "endpoint_name", "deployment_name", "trace_id")
    list_filter = ("status", "kind", "endpoint_name")
    search_fields = ("trace_id", "span_id", "name", "endpoint_name", "deployment_name")
    date_hierarchy = "start"
