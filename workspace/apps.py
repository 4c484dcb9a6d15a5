from django.apps import AppConfig


class WorkspaceConfig(AppConfig):
    name = "workspace"
    verbose_name = "Workspace"

    def ready(self) -> None:
        from workspace import audit  # noqa: F401  (connects the sign-in and sign-out receivers)
