from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from runtime.environments import EnvironmentBuildError, base_key, ensure_base


class Command(BaseCommand):
    help = "Build the base flow runtime (promptflow and friends) if it is not built yet."

    def handle(self, *args, **options) -> None:
        root = Path(settings.FLOWDEPLOY_RUNTIME_DIR)
        target = root / f"base-{base_key()}"
        if not (target / ".complete").exists():
            self.stdout.write(f"Building the flow runtime in {target} (a few minutes, once)...")
        try:
            env = ensure_base(root, timeout=settings.FLOWDEPLOY_ENV_BUILD_TIMEOUT)
        except EnvironmentBuildError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Flow runtime ready: {env.path}")
