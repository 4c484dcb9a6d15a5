from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from workspace import access, audit_views, projects
from workspace.models import Notification

BELL_SIZE = 10


def notifications(request: HttpRequest) -> dict:
    """`notifications` (latest 10), `unread_notifications` (count) and `notifications_running` for the bell.

    All are lazy: a page that does not show the bell runs no query; one that does runs three.
    Also the top bar's project switcher: `current_project` and `switchable_projects` (the projects the user sees),
    `can_audit` for the Audit log link, and `can_manage_project` (Owner of the current project) for its
    Azure Machine Learning link.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {
            "notifications": [],
            "unread_notifications": 0,
            "notifications_running": False,
            "current_project": None,
            "switchable_projects": [],
            "can_audit": False,
            "can_manage_project": False,
        }
    mine = Notification.objects.filter(user=user)
    return {
        "notifications": mine[:BELL_SIZE],
        "unread_notifications": SimpleLazyObject(lambda: mine.filter(read_at=None).count()),
        # A running job's notification changes phase by phase: poll faster while there is one.
        "notifications_running": SimpleLazyObject(lambda: mine.filter(level=Notification.Level.RUNNING).exists()),
        # The top bar's project switcher (shown when the user sees more than one project).
        "current_project": SimpleLazyObject(lambda: projects.current_project(request)),
        "switchable_projects": SimpleLazyObject(lambda: list(access.visible_projects(user).order_by("name"))),
        # The Audit log link: for Owners (workspace/audit_views.py shows each the projects they own).
        "can_audit": SimpleLazyObject(lambda: user.is_superuser or bool(audit_views.owned_projects(user))),
        "can_manage_project": SimpleLazyObject(
            lambda: access.allows(user, access.Action.MANAGE_ACCESS, projects.current_project(request))
        ),
    }
