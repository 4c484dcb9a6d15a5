from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from flows.importing import FlowImportError, content_hash, import_folder
from flows.models import Flow, FlowSource


class Command(BaseCommand):
    help = "Import the bundled sample flows; a sample whose files did not change is left alone."

    def handle(self, *args, **options) -> None:
        root = settings.FLOWDEPLOY_SAMPLES_DIR
        owner = get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
        failures = 0
        for folder in sorted(p for p in root.iterdir() if (p / "flow.dag.yaml").is_file()):
            flow = Flow.objects.filter(name=folder.name).first()
            latest = flow.latest_version() if flow else None
            if latest and latest.content_hash == content_hash(folder):
                self.stdout.write(f"  {folder.name}: up to date (version {latest.version})")
                continue
            try:
                version = import_folder(folder, folder.name, owner, FlowSource.SAMPLE, f"sample {folder.name}")
            except FlowImportError as exc:
                failures += 1
                self.stderr.write(f"  {folder.name}: refused: {exc}")
                continue
            self.stdout.write(f"  {folder.name}: imported version {version.version}")
        if failures:
            raise SystemExit(1)
