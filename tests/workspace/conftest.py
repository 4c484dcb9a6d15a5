from pathlib import Path

import pytest
from roles import member

from django.conf import settings

from workspace.connections import ConnectionSpec, save_connection
from workspace.models import ProjectRole

# SQLite's test database lives in DATA_DIR; make sure the folder exists on a fresh checkout.
Path(settings.DATABASES["default"].get("TEST", {}).get("NAME") or settings.DATA_DIR).parent.mkdir(
    parents=True, exist_ok=True
)

# The secrets make_connection saves by default; test modules look for these exact strings.
DEFAULT_API_KEY = "sk-test-OPENAI-5ecret-0001"
DEFAULT_CUSTOM_SECRET = "custom-5ecret-value-0005"


@pytest.fixture
def viewer(django_user_model):
    """A Reader of the default project: sees connections, may not change them."""
    return member(django_user_model.objects.create_user("viewer", password="pw-viewer-123"), ProjectRole.READER)


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def editor(django_user_model):
    """A Contributor of the default project: may add, change and delete connections, without being Owner."""
    user = django_user_model.objects.create_user("editor", password="pw-editor-123")
    return member(user, ProjectRole.CONTRIBUTOR)


@pytest.fixture
def editor_client(client, editor):
    client.force_login(editor)
    return client


@pytest.fixture
def make_connection():
    """Save a connection through the service; secrets default to the DEFAULT_* values above."""

    def make(name="gpt", type="open_ai", configs=None, secrets=None, actor=None):
        if secrets is None:
            secrets = {"api_key": DEFAULT_API_KEY} if type != "custom" else {"token": DEFAULT_CUSTOM_SECRET}
        spec = ConnectionSpec(name=name, type=type, configs=configs or {}, secrets=secrets)
        return save_connection(spec, actor=actor)

    return make
