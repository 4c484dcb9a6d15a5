from django.contrib import admin

from wizard.models import DeploymentDraft


@admin.register(DeploymentDraft)
class DeploymentDraftAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "flow_version", "deployment", "updated_at"]
    list_select_related = ["owner", "flow_version__flow", "deployment__endpoint"]
    readonly_fields = ["steps", "created_at", "updated_at"]
