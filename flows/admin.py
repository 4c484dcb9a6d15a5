from django.contrib import admin

from flows.models import BulkRun, BulkRunLine, Flow, FlowVersion, TestRun


class FlowVersionInline(admin.TabularInline):
    model = FlowVersion
    fields = ("version", "short_hash", "source", "environment", "created_by", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin):
    list_display = ("name", "version_count", "created_by", "created_at")
    search_fields = ("name", "description")
    inlines = [FlowVersionInline]

    @admin.display(description="Versions")
    def version_count(self, obj: Flow) -> int:
        return obj.versions.count()


@admin.register(FlowVersion)
class FlowVersionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "short_hash", "source", "is_chat", "environment", "created_by", "created_at")
    list_filter = ("source", "created_at")
    search_fields = ("flow__name", "content_hash", "source_detail")
    readonly_fields = [f.name for f in FlowVersion._meta.fields]

    @admin.display(boolean=True, description="Chat")
    def is_chat(self, obj: FlowVersion) -> bool:
        return obj.is_chat

    def has_add_permission(self, request) -> bool:
        return False  # versions come from imports, which validate them


@admin.register(TestRun)
class TestRunAdmin(admin.ModelAdmin):
    list_display = ("id", "flow_version", "status", "duration", "created_by", "created_at")
    list_filter = ("status", "created_at")
    search_fields = ("id", "flow_version__flow__name")
    readonly_fields = [f.name for f in TestRun._meta.fields]


class BulkRunLineInline(admin.TabularInline):
    model = BulkRunLine
    fields = ("index", "status", "inputs", "outputs", "error", "duration")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(BulkRun)
class BulkRunAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "status",
        "total_lines",
        "completed_lines",
        "failed_lines",
        "created_by",
        "created_at",
    )
    list_filter = ("status", "created_at")
    search_fields = ("name", "flow_version__flow__name")
    readonly_fields = [f.name for f in BulkRun._meta.fields]
    inlines = [BulkRunLineInline]
