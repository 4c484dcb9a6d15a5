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
    list_display = ("name", "project", "version_count", "created_by", "created_at")
    list_filter = ("project", "created_at")
    search_fields = ("name", "description")
    list_select_related = ("project", "created_by")
    # The name is in snapshots' paths and deployments' URLs, and the project decides who sees its deployments.
    readonly_fields = ("name", "project", "created_by", "created_at")
    inlines = [FlowVersionInline]

    def has_add_permission(self, request) -> bool:
        return False  # flows come from imports, which validate them

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

    def has_add_permission(self, request) -> bool:
        return False  # runs are started from the flow's Test page, which queues them


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

    def has_add_permission(self, request) -> bool:
        return False  # bulk runs are started from the flow's Bulk test page, which queues them


@admin.register(BulkRunLine)
class BulkRunLineAdmin(admin.ModelAdmin):
    list_display = ("__str__", "index", "status", "duration")
    list_filter = ("status",)
    search_fields = ("run__name", "run__flow_version__flow__name")
    readonly_fields = [f.name for f in BulkRunLine._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
