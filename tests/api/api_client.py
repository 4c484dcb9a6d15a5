"""The test client speaking JSON with a bearer token, and small helpers the API tests share."""

import json

from django.contrib.auth.models import Permission

from workspace.models import Membership, Project, ProjectRole

PASSWORD = "pw-api-tests-123"


class Api:
    """The django test client, with a bearer token and JSON bodies."""

    def __init__(self, client, token: str | None) -> None:
        self.client = client
        self.token = token

    def call(self, method: str, path: str, body=None, headers=None, **extra):
        headers = dict(headers or {})
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        kwargs = {"headers": headers, **extra}
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/json")
        return getattr(self.client, method.lower())("/api/v1" + path, **kwargs)

    def get(self, path, **kwargs):
        return self.call("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.call("POST", path, body, **kwargs)

    def put(self, path, body=None, **kwargs):
        return self.call("PUT", path, body, **kwargs)

    def patch(self, path, body=None, **kwargs):
        return self.call("PATCH", path, body, **kwargs)

    def delete(self, path, **kwargs):
        return self.call("DELETE", path, **kwargs)


def error(response) -> dict:
    return response.json()["error"]


def grant(user, *permissions: str) -> None:
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def member(user, role: ProjectRole, project: Project | None = None):
    """Make `user` a member of `project` (default: the default project) with `role`; returns the user."""
    Membership.objects.update_or_create(project=project or Project.default(), user=user, defaults={"role": role})
    return user
