"""A project's members and their roles, changed by its Owners (the Members part of Access control). A project
always keeps at least one Owner: the last one can be neither removed nor given another role."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from workspace import audit
from workspace.models import Membership, Project, ProjectRole


def _role(value: str) -> ProjectRole:
    if value not in ProjectRole.values:
        raise ValidationError({"role": f"Role must be one of {', '.join(ProjectRole.labels)}."})
    return ProjectRole(value)


def add_member(project: Project, username: str, role: str, *, user: Any = None) -> Membership:
    """Add an existing user to the project with a role."""
    role = _role(role)
    username = (username or "").strip()
    person = get_user_model().objects.filter(username=username, is_active=True).first() if username else None
    if person is None:
        raise ValidationError({"username": f"There is no active user named '{username}'. Users sign in first."})
    if Membership.objects.filter(project=project, user=person).exists():
        raise ValidationError(
            {"username": f"{username} is already a member of project '{project.name}'; change their role instead."}
        )
    try:
        with transaction.atomic():
            membership = Membership.objects.create(project=project, user=person, role=role)
    except IntegrityError:
        raise ValidationError({"username": f"{username} was just added by someone else."}) from None
    audit.record(user, "member.add", f"{username} in {project.name}", project=project, role=role.label)
    return membership


def _last_owner(membership: Membership) -> bool:
    owners = Membership.objects.select_for_update().filter(project_id=membership.project_id, role=ProjectRole.OWNER)
    return membership.role == ProjectRole.OWNER and list(owners.values_list("pk", flat=True)) == [membership.pk]


def change_role(membership: Membership, role: str, *, user: Any = None) -> Membership:
    role = _role(role)
    with transaction.atomic():
        locked = Membership.objects.select_for_update().select_related("user", "project").get(pk=membership.pk)
        if role != ProjectRole.OWNER and _last_owner(locked):
            raise ValidationError(
                {
                    "role": f"{locked.user} is the last Owner of project '{locked.project.name}'; make someone else "
                    "Owner first."
                }
            )
        before = locked.get_role_display()
        locked.role = role
        locked.save(update_fields=["role"])
    audit.record(
        user,
        "member.role",
        f"{locked.user} in {locked.project.name}",
        project=locked.project,
        before=before,
        after=role.label,
    )
    return locked


def remove_member(membership: Membership, *, user: Any = None) -> None:
    with transaction.atomic():
        locked = Membership.objects.select_for_update().select_related("user", "project").get(pk=membership.pk)
        if _last_owner(locked):
            raise ValidationError(
                {"role": f"{locked.user} is the last Owner of project '{locked.project.name}' and cannot be removed."}
            )
        locked.delete()
    audit.record(
        user,
        "member.remove",
        f"{locked.user} in {locked.project.name}",
        project=locked.project,
        role=locked.get_role_display(),
    )
