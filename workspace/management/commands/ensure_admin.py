import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin from FLOWDEPLOY_ADMIN_USER and _PASSWORD, or with a generated password."

    def handle(self, *args, **options) -> None:
        username = os.environ.get("FLOWDEPLOY_ADMIN_USER") or "admin"
        password = os.environ.get("FLOWDEPLOY_ADMIN_PASSWORD")
        saved = settings.DATA_DIR / "admin-password.txt"
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if password:
            self._save(user, username, password)
            self.stdout.write(f"Sign in as '{username}' with FLOWDEPLOY_ADMIN_PASSWORD.")
            return
        if user and saved.exists():
            self.stdout.write(f"Sign in as '{username}' with the generated password: {saved.read_text().strip()}")
            return
        if user:
            self.stdout.write(f"Sign in as '{username}' with the password you set before.")
            return
        password = secrets.token_urlsafe(12)
        self._save(user, username, password)
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(password + "\n")
        saved.chmod(0o600)
        self.stdout.write(f"Sign in as '{username}' with the generated password: {password}")
        self.stdout.write(f"(kept in {saved}; set FLOWDEPLOY_ADMIN_PASSWORD to choose your own)")

    def _save(self, user, username: str, password: str) -> None:
        if user is None:
            get_user_model().objects.create_superuser(username=username, email="", password=password)
            return
        user.set_password(password)
        user.is_staff = user.is_superuser = True
        user.save()
