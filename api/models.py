"""Personal access tokens for the JSON API and the `flowdeploy` command.

A token is `fdp_` and 32 random bytes (url-safe base64). Only its SHA-256 digest is stored; the
first characters (`prefix`) are kept to show the user which token is which and to find the
candidates whose digests are then compared in constant time.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "fdp_"
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
TOUCH_EVERY = timedelta(minutes=1)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PersonalAccessTokenQuerySet(models.QuerySet):
    def usable(self) -> "PersonalAccessTokenQuerySet":
        now = timezone.now()
        return self.filter(revoked=False, user__is_active=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class PersonalAccessToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="api_tokens", on_delete=models.CASCADE)
    name = models.CharField(max_length=100, default="flowdeploy")
    prefix = models.CharField(max_length=PREFIX_LENGTH, db_index=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)

    objects = PersonalAccessTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "personal access token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def __repr__(self) -> str:  # never the digest
        return f"<PersonalAccessToken {self.prefix}… user={self.user_id} revoked={self.revoked}>"

    @classmethod
    def issue(
        cls, user, name: str = "flowdeploy", expires_in: timedelta | None = None
    ) -> tuple["PersonalAccessToken", str]:
        """Create a token for `user`; returns the row and the token itself, which is never stored."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = cls.objects.create(
            user=user,
            name=name[:100] or "flowdeploy",
            prefix=token[:PREFIX_LENGTH],
            digest=token_digest(token),
            expires_at=timezone.now() + expires_in if expires_in else None,
        )
        return row, token

    @classmethod
    def authenticate(cls, token: str) -> "PersonalAccessToken | None":
        """The usable token row matching `token`, or None. Digests are compared in constant time."""
        if not token.startswith(TOKEN_PREFIX) or len(token) < PREFIX_LENGTH:
            return None
        presented = token_digest(token)
        found = None
        for candidate in cls.objects.usable().select_related("user").filter(prefix=token[:PREFIX_LENGTH]):
            if hmac.compare_digest(presented, candidate.digest):
                found = candidate
        if found is not None:
            found.touch()
        return found

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    def touch(self) -> None:
        """Record use, at most once a minute (a conditional update, so concurrent requests write once)."""
        now = timezone.now()
        stale = models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=now - TOUCH_EVERY)
        if PersonalAccessToken.objects.filter(stale, pk=self.pk).update(last_used_at=now):
            self.last_used_at = now

    def revoke(self) -> bool:
        return PersonalAccessToken.objects.filter(pk=self.pk, revoked=False).update(revoked=True) == 1
