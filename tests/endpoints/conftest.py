"""Users of the deployment pages' view tests."""

import pytest


@pytest.fixture
def viewer_client(client, django_user_model):
    """Signed in, with no rights beyond looking."""
    client.force_login(django_user_model.objects.create_user("viewer", password="viewer-pass-1"))
    return client
