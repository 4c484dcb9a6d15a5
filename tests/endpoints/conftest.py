"""Users of the deployment pages' view tests."""

import pytest
from roles import member

from workspace.models import ProjectRole


@pytest.fixture
def viewer_client(client, django_user_model):
    """Signed in as a Reader of the default project: no rights beyond looking and testing."""
    user = django_user_model.objects.create_user("viewer", password="viewer-pass-1")
    client.force_login(member(user, ProjectRole.READER))
    return client
