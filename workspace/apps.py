from django.apps import AppConfig


class WorkspaceConfig(AppConfig):
    name = "workspace"
    verbose_name = "Workspace"

    def ready(self) -> None:
        from workspace import audit, checks  # noqa: F401  (the sign-in receivers; the settings checks)
