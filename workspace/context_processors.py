from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from workspace.models import Notification

BELL_SIZE = 10


def notifications(request: HttpRequest) -> dict:
    """`notifications` (latest 10) and `unread_notifications` (count) for the bell.

    Both are lazy: a page that does not show the bell runs no query; one that does runs two.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"notifications": [], "unread_notifications": 0}
    mine = Notification.objects.filter(user=user)
    return {
        "notifications": mine[:BELL_SIZE],
        "unread_notifications": SimpleLazyObject(lambda: mine.filter(read_at=None).count()),
    }
