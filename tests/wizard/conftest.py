"""Users, a flow version and a draft for the wizard's view tests."""

import pytest
from roles import member

from workspace.models import ProjectRole


@pytest.fixture
def deployer(django_user_model):
    """A Contributor of the default project: may deploy there."""
    user = django_user_model.objects.create_user("deployer", password="deployer-pass-1")
    return member(user, ProjectRole.CONTRIBUTOR)


@pytest.fixture
def deployer_client(client, deployer):
    client.force_login(deployer)
    return client


@pytest.fixture
def flow_version(import_flow):
    return import_flow("web-classification-offline")


@pytest.fixture
def draft(deployer_client, flow_version):
    from wizard.models import DeploymentDraft

    response = deployer_client.post("/deployments/new/", {"flow_version": flow_version.pk})
    assert response.status_code == 302
    return DeploymentDraft.objects.get()
