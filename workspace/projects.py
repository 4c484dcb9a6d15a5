"""The pages' side of the access rule (workspace/access.py): the project a user works in, and objects fetched
for a page (404 when the user is no member of their project, 403 with the rule's message when the role is
too low)."""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest

from workspace import access
from workspace.access import AccessDenied, Action
from workspace.models import Project

SESSION_KEY = "flowdeploy_project"


def current_project(request: HttpRequest) -> Project | None:
    """The project chosen in the top bar (kept in the session) while the user still sees it; else the first
    project the user sees (for a superuser, the default project). None for a user who is no member anywhere."""
    cached = getattr(request, "_current_project", False)
    if cached is not False:
        return cached
    user = request.user
    projects = access.visible_projects(user).order_by("name")
    chosen = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
    project = projects.filter(pk=chosen).first() if chosen else None
    if project is None and getattr(user, "is_superuser", False):
        project = Project.default()
    if project is None:
        project = projects.first()
    request._current_project = project  # type: ignore[attr-defined]
    return project


def choose_project(request: HttpRequest, project_id: Any) -> Project:
    """Switch the current project; 404 for a project the user does not see."""
    try:
        project = access.visible_projects(request.user).get(pk=int(project_id))
    except (TypeError, ValueError, Project.DoesNotExist):
        raise Http404("No such project.") from None
    request.session[SESSION_KEY] = project.pk
    request._current_project = project  # type: ignore[attr-defined]
    return project


def require(request: HttpRequest, action: Action, project: Project | int | None) -> None:
    """The rule for a page: not a member answers 404, a role too low 403 with the rule's message."""
    try:
        access.require(request.user, action, project)
    except AccessDenied as exc:
        if not exc.visible:
            raise Http404(exc.message) from None
        raise


def require_on(request: HttpRequest, action: Action, obj: Model) -> None:
    require(request, action, access.project_of(obj))


def require_in_current(request: HttpRequest, action: Action) -> Project:
    """The current project, if the user may do `action` there (creating flows, connections, endpoints)."""
    project = current_project(request)
    if project is None:
        raise AccessDenied("You are not a member of any project. Ask an Owner of a project to add you.")
    require(request, action, project)
    return project


def fetch(request: HttpRequest, action: Action, queryset: QuerySet, project_field: str = "project", **lookup: Any):
    """The object for `lookup` if the user may do `action` on it: 404 when it is missing or in a project the
    user is no member of, 403 when the role is too low."""
    try:
        return access.fetch(request.user, action, queryset, project_field, **lookup)
    except queryset.model.DoesNotExist:
        raise Http404(f"No {queryset.model._meta.verbose_name} matches.") from None
    except AccessDenied as exc:
        if not exc.visible:
            raise Http404(exc.message) from None
        raise
