from django.contrib import admin

from monitoring.models import DataCollectionPolicy


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
