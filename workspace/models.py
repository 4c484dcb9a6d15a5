from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from workspace.connection_types import (
    NAME_MAX_LENGTH,
    NAME_RE,
    NAME_RULE,
    PROMPTFLOW_CLASS,
    TARGET_FIELD,
    ConnectionType,
)
from workspace.crypto import SecretsUnreadable, decrypt_json, encrypt_json

SECRET_MASK = "••••••••"


class Connection(models.Model):
    """Credentials a flow uses to reach a provider. Secrets live only in `secrets_encrypted`."""

    Type = ConnectionType

    name = models.CharField(
        max_length=NAME_MAX_LENGTH,
        unique=True,
        validators=[RegexValidator(NAME_RE, message=NAME_RULE)],
    )
    type = models.CharField(max_length=32, choices=ConnectionType.choices)
    configs = models.JSONField(default=dict, blank=True, help_text="Non-secret values, by promptflow name.")
    secrets_encrypted = models.TextField(blank=True, default="", editable=False)
    secret_keys = models.JSONField(default=list, blank=True, help_text="Names of the secret values.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Connection {self.name!r} type={self.type!r}>"

    @property
    def promptflow_class(self) -> str:
        return PROMPTFLOW_CLASS[self.type]

    @property
    def target(self) -> str:
        """The non-secret address the connection points at, for tables."""
        field = TARGET_FIELD.get(self.type)
        if field:
            return self.configs.get(field, "") or ("api.openai.com" if self.type == ConnectionType.OPEN_AI else "")
        if self.type == ConnectionType.CUSTOM:
            urls = [v for v in self.configs.values() if str(v).startswith(("http://", "https://"))]
            return urls[0] if urls else ""
        return ""

    @property
    def masked_secrets(self) -> str:
        return ", ".join(f"{key}: {SECRET_MASK}" for key in self.secret_keys) or "—"

    def get_secrets(self) -> dict[str, str]:
        """Decrypt the secrets. Raises SecretsUnreadable when the key changed."""
        return decrypt_json(self.secrets_encrypted)

    def set_secrets(self, secrets: dict[str, str]) -> None:
        self.secrets_encrypted = encrypt_json(secrets) if secrets else ""
        self.secret_keys = sorted(secrets)

    def secrets_readable(self) -> bool:
        try:
            self.get_secrets()
        except SecretsUnreadable:
            return False
        return True


class Notification(models.Model):
    """A line in a user's top-bar bell; long jobs update theirs as they progress."""

    class Level(models.TextChoices):
        INFO = "info", "Info"
        SUCCESS = "success", "Success"
        ERROR = "error", "Error"
        RUNNING = "running", "Running"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    link = models.CharField(max_length=500, blank=True, default="")
    level = models.CharField(max_length=16, choices=Level.choices, default=Level.INFO)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"])]

    def __str__(self) -> str:
        return self.title

    @property
    def unread(self) -> bool:
        return self.read_at is None

    @property
    def badge(self) -> str:
        """The CSS badge class for the level."""
        return {"success": "ok", "error": "bad", "running": "running"}.get(self.level, "info")

    def mark_read(self) -> bool:
        """Mark read once; True if this call did it (conditional update)."""
        now = timezone.now()
        done = Notification.objects.filter(pk=self.pk, read_at=None).update(read_at=now) == 1
        if done:
            self.read_at = now
        return done


class AuditEvent(models.Model):
    """Who did what to which object. `detail` never holds secrets."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=100, db_index=True)
    target = models.CharField(max_length=300, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.target}"
