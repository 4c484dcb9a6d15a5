"""Rights for test users: a role in a project (workspace/access.py), the one thing that gives a person rights."""

from workspace.models import Membership, Project, ProjectRole


def member(user, role: str = ProjectRole.READER, project: Project | None = None):
    """Make `user` a member of `project` (the default project) with `role`; returns the user."""
    Membership.objects.update_or_create(
        user=user, project=project or Project.default(), defaults={"role": ProjectRole(role)}
    )
    user.__dict__.pop("_project_roles", None)
    return user
