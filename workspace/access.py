"""Who may do what: the one access rule that every page, API call and CLI command goes through.

A person's rights come from their role in the project that owns the object (Membership): Reader looks and
tests through the studio, Contributor also deploys, changes and deletes, sees keys and connection secrets and
reads what requests carried (instance logs, collected data, traces' inputs and outputs),
Owner also manages access (members, role assignments, the audit log). A superuser (the site administrator)
is Owner of every project. Reading files from the server's own disk (a folder import) is for superusers only.

Pages and the API turn AccessDenied into 403 (or 404 when the object is not visible to the user at all, so
that names of other projects' objects do not leak). The CLI reaches everything through the API.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet

from workspace.models import Membership, Project, ProjectRole


class Action(StrEnum):
    VIEW = "view"
    TEST = "test"
    DEPLOY = "deploy"
    DELETE = "delete"
    READ_KEYS = "read_keys"
    READ_DATA = "read_data"
    MANAGE_ACCESS = "manage_access"
    IMPORT_FOLDER = "import_folder"


RANK = {ProjectRole.READER: 1, ProjectRole.CONTRIBUTOR: 2, ProjectRole.OWNER: 3}

MINIMUM_ROLE = {
    Action.VIEW: ProjectRole.READER,
    Action.TEST: ProjectRole.READER,
    Action.DEPLOY: ProjectRole.CONTRIBUTOR,
    Action.DELETE: ProjectRole.CONTRIBUTOR,
    Action.READ_KEYS: ProjectRole.CONTRIBUTOR,
    # What requests carried (instance logs, collected inputs and outputs, trace inputs and outputs): as in Azure,
    # whose Reader role can neither get an online deployment's logs nor read the blobs data is collected to.
    Action.READ_DATA: ProjectRole.CONTRIBUTOR,
    Action.MANAGE_ACCESS: ProjectRole.OWNER,
    Action.IMPORT_FOLDER: ProjectRole.CONTRIBUTOR,
}

DOING = {
    Action.VIEW: "looking at this",
    Action.TEST: "testing",
    Action.DEPLOY: "creating or changing things",
    Action.DELETE: "deleting",
    Action.READ_KEYS: "seeing keys and connection secrets",
    Action.READ_DATA: "reading what requests carried (instance logs, collected data, trace inputs and outputs)",
    Action.MANAGE_ACCESS: "managing access",
    Action.IMPORT_FOLDER: "importing a folder from the server",
}

ROLES_FROM = {
    ProjectRole.READER: "Reader, Contributor or Owner",
    ProjectRole.CONTRIBUTOR: "Contributor or Owner",
    ProjectRole.OWNER: "Owner",
}


class AccessDenied(PermissionDenied):
    """The user may see the object's project but not do this there; the message says what is missing."""

    def __init__(self, message: str, *, visible: bool = True):
        super().__init__(message)
        self.message = message
        self.visible = visible


def role_in(user: Any, project: Project | int | None) -> ProjectRole | None:
    """The user's role in the project: Owner for a superuser, their membership's role, else None."""
    if project is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return None
    if user.is_superuser:
        return ProjectRole.OWNER
    project_id = project.pk if isinstance(project, Project) else project
    cache = user.__dict__.setdefault("_project_roles", {})
    if project_id not in cache:
        role = Membership.objects.filter(user=user, project_id=project_id).values_list("role", flat=True).first()
        cache[project_id] = ProjectRole(role) if role else None
    return cache[project_id]


def allows(user: Any, action: Action, project: Project | int | None) -> bool:
    if action == Action.IMPORT_FOLDER and not getattr(user, "is_superuser", False):
        return False
    role = role_in(user, project)
    return role is not None and RANK[role] >= RANK[MINIMUM_ROLE[action]]


def require(user: Any, action: Action, project: Project | int | None) -> None:
    """Return when the user may do `action` in `project`; raise AccessDenied saying what is missing."""
    if allows(user, action, project):
        return
    role = role_in(user, project)
    name = project.name if isinstance(project, Project) else Project.objects.filter(pk=project).first()
    if role is None:
        raise AccessDenied(f"You are not a member of project '{name}'.", visible=False)
    if action == Action.IMPORT_FOLDER:
        raise AccessDenied("Importing a folder from the server's disk is for site administrators (superusers).")
    needed = MINIMUM_ROLE[action]
    raise AccessDenied(
        f"You are {role.label} of project '{name}'; {DOING[action]} needs {ROLES_FROM[needed]}. "
        "Ask an Owner of the project to change your role."
    )


def project_of(obj: Model) -> Project | int | None:
    """The project that owns a flow, flow version, run, connection, identity, endpoint, deployment or instance."""
    if isinstance(obj, Project):
        return obj
    for path in ("project_id", "endpoint.project_id", "flow.project_id", "flow_version.flow.project_id"):
        value: Any = obj
        try:
            for part in path.split("."):
                value = getattr(value, part)
        except AttributeError:
            continue
        return value
    if hasattr(obj, "deployment"):
        return project_of(obj.deployment)
    raise TypeError(f"{type(obj).__name__} belongs to no project")


def require_on(user: Any, action: Action, obj: Model) -> None:
    require(user, action, project_of(obj))


def can(user: Any, action: Action | str, obj: Model) -> bool:
    """For templates and representations: may the user do `action` on `obj`?"""
    return allows(user, Action(action), project_of(obj))


def visible_projects(user: Any) -> QuerySet[Project]:
    """The projects the user is a member of (every project for a superuser)."""
    if not getattr(user, "is_authenticated", False):
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user)


def visible(user: Any, queryset: QuerySet, project_field: str = "project") -> QuerySet:
    """Narrow a queryset of flows, connections, endpoints, deployments... to the user's projects."""
    if getattr(user, "is_superuser", False):
        return queryset
    return queryset.filter(**{f"{project_field}__in": visible_projects(user)})


def fetch(user: Any, action: Action, queryset: QuerySet, project_field: str = "project", **lookup: Any) -> Model:
    """The object for `lookup` if the user may do `action` on it. Not visible (or missing) raises
    DoesNotExist, so pages and the API answer 404 without saying whether it exists; visible but not
    allowed raises AccessDenied (403)."""
    obj = visible(user, queryset, project_field).get(**lookup)
    require_on(user, action, obj)
    return obj
