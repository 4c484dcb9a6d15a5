"""Notifications in the top-bar bell. Long jobs create one and update it as they progress."""

from typing import Any

from django.utils import timezone

from workspace.models import Notification


def notify(user: Any, title: str, body: str = "", link: str = "", level: str = "info") -> Notification:
    """Create a notification for `user` (a user or a user id)."""
    if level not in Notification.Level.values:
        raise ValueError(f"level must be one of {Notification.Level.values}, not {level!r}")
    user_id = user if isinstance(user, int) else user.pk
    return Notification.objects.create(user_id=user_id, title=title, body=body, link=link, level=level)


def update(notification_id: int, *, body: str | None = None, level: str | None = None) -> None:
    """Change a notification's body and/or level (a job's progress). Unknown ids are ignored.

    A notification whose level changes to a final one (success, error) becomes unread again,
    so the bell shows that the job finished.
    """
    changes: dict[str, Any] = {}
    if body is not None:
        changes["body"] = body
    if level is not None:
        if level not in Notification.Level.values:
            raise ValueError(f"level must be one of {Notification.Level.values}, not {level!r}")
        changes["level"] = level
        if level in (Notification.Level.SUCCESS, Notification.Level.ERROR):
            changes["read_at"] = None
    if changes:
        Notification.objects.filter(pk=notification_id).update(**changes, updated_at=timezone.now())


def unread_count(user: Any) -> int:
    return Notification.objects.filter(user=user, read_at=None).count()


def latest(user: Any, limit: int = 10) -> list[Notification]:
    return list(Notification.objects.filter(user=user)[:limit])
