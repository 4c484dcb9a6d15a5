"""Plain helpers the CLI tests share (fixtures are in conftest.py)."""

from pathlib import Path

import yaml

from workspace.models import Membership, Project, ProjectRole

PASSWORD = "pw-cli-tests-123"


def member(user, role: ProjectRole, project: Project | None = None):
    """Make `user` a member of `project` (default: the default project) with `role`; returns the user."""
    Membership.objects.update_or_create(project=project or Project.default(), user=user, defaults={"role": role})
    return user


def write_yaml(folder: Path, name: str, data: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
