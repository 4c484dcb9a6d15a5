"""The endpoint identity's roles, enforced for real: provisioning through the Celery worker refuses a deployment
whose identity lacks a role (naming the identity, the role, the scope and where an Owner grants it), a retry
after the grant succeeds, and the connection provider refuses an instance start once the role is revoked."""

import base64
import os
import signal
from urllib.parse import urlsplit

import httpx
import pytest
from support import wait_for

from endpoints import provisioning, services
from endpoints.connections import provider_url
from endpoints.models import Deployment, DeploymentState, IdentityType, InstanceState
from serving import launcher
from workspace import identities
from workspace.models import BuiltInRole, Membership, Project, ProjectRole, RoleAssignment, RoleScope

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CSR = BuiltInRole.CONNECTION_SECRETS_READER
CSR_LABEL = "Azure Machine Learning Workspace Connection Secrets Reader"
USER_ASSIGNED_ROLES = [
    (CSR, RoleScope.PROJECT),
    (BuiltInRole.ACR_PULL, RoleScope.REGISTRY),
    (BuiltInRole.STORAGE_BLOB_DATA_READER, RoleScope.STORAGE),
]
MISSING = {
    CSR: f"Endpoint identity 'uai-chat' (user-assigned) lacks '{CSR_LABEL}' on project 'default'.",
    BuiltInRole.ACR_PULL: "Endpoint identity 'uai-chat' (user-assigned) lacks 'AcrPull' on the environment registry "
    "of project 'default' (/projects/default/registries/environments).",
    BuiltInRole.STORAGE_BLOB_DATA_READER: "Endpoint identity 'uai-chat' (user-assigned) lacks 'Storage Blob Data "
    "Reader' on the storage of project 'default' (/projects/default/storage/flows).",
}
QUESTION = {"question": "Who am I?", "chat_history": []}


@pytest.fixture
def owner(django_user_model):
    user = django_user_model.objects.create_user("owner", password="pw-enforcement-1")
    Membership.objects.create(project=Project.default(), user=user, role=ProjectRole.OWNER)
    return user


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


def _deploy(endpoint, version, user=None) -> Deployment:
    deployment = services.create_or_update_deployment(endpoint, "blue", version, user=user, vm_size="Standard_DS1_v2")

    def settled() -> bool:
        deployment.refresh_from_db()
        return deployment.state in (DeploymentState.SUCCEEDED, DeploymentState.FAILED)

    wait_for(settled, timeout=180, message=f"{deployment} stayed {deployment.state}/{deployment.phase}")
    return deployment


def _ready(deployment: Deployment):
    return deployment.instances.get(state=InstanceState.READY, generation=deployment.live_generation)


def _grant_through_the_page(client, member: str, role: str, scope: str) -> None:
    answer = client.post(
        "/projects/default/access/add/",
        {"role": role, "assign_access_to": "managed_identity", "member": member, "scope": scope},
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]


def _fetch_connection(studio: str, instance) -> httpx.Response:
    """What the instance's next start does: fetch its connection with a token minted for that start."""
    url = urlsplit(provider_url(instance))
    auth = base64.b64encode(f"{url.username}:{url.password}".encode()).decode()
    return httpx.get(
        f"{studio}/internal/connection-provider/connections/open_ai_connection",
        headers={"Authorization": f"Basic {auth}"},
        timeout=10,
    )


@pytest.mark.parametrize("missing", [role for role, _ in USER_ASSIGNED_ROLES])
def test_a_user_assigned_identity_without_a_role_fails_the_deployment(
    celery_worker, import_flow, open_ai_connection, missing
):
    project = Project.default()
    identity = identities.create_identity(project, "uai-chat")
    for role, scope in USER_ASSIGNED_ROLES:
        if role != missing:
            identities.grant(project, identities.user_principal(identity), role, scope)
    endpoint = services.create_endpoint("ep-uai", identity_type=IdentityType.USER, user_assigned_identity="uai-chat")
    deployment = _deploy(endpoint, import_flow("chat-basic"))
    assert deployment.state == DeploymentState.FAILED
    assert deployment.failure_reason == f"{MISSING[missing]} An Owner can grant it at /projects/default/access/."
    assert not deployment.instances.exists()  # refused before anything was built or started


def test_a_user_assigned_identity_with_its_roles_deploys_and_reads_its_connection(
    celery_worker, import_flow, open_ai_connection, owner_client, live_server
):
    """Granted through the page, by an Owner: the same identity serves a second endpoint too."""
    identities.create_identity(Project.default(), "uai-chat")
    for role, scope in USER_ASSIGNED_ROLES:
        _grant_through_the_page(owner_client, "user:uai-chat", role, scope)
    version = import_flow("chat-basic")
    for name in ("ep-uai", "ep-uai-two"):
        endpoint = services.create_endpoint(name, identity_type=IdentityType.USER, user_assigned_identity="uai-chat")
        deployment = _deploy(endpoint, version)
        assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    answer = httpx.post(f"{_ready(deployment).url}/score", json=QUESTION, timeout=30)
    assert answer.json() == {"answer": "Local model, turn 1: you asked 'Who am I?'."}


def test_enforce_access_off_fails_until_an_owner_grants_then_the_retry_succeeds(
    celery_worker, import_flow, open_ai_connection, owner, owner_client, live_server
):
    endpoint = services.create_endpoint("ep-x", enforce_access_to_connection_secrets=False, user=owner)
    assert not RoleAssignment.objects.exists()
    version = import_flow("chat-basic")
    failed = _deploy(endpoint, version, user=owner)
    assert failed.state == DeploymentState.FAILED
    assert failed.failure_reason == (
        f"Endpoint identity 'ep-x' (system-assigned) lacks '{CSR_LABEL}' on project 'default'. "
        "An Owner can grant it at /projects/default/access/."
    )

    _grant_through_the_page(owner_client, "system:ep-x", CSR, RoleScope.PROJECT)
    retried = _deploy(endpoint, version, user=owner)
    assert retried.pk == failed.pk
    assert retried.state == DeploymentState.SUCCEEDED, retried.failure_reason
    answer = httpx.post(f"{_ready(retried).url}/score", json=QUESTION, timeout=30)
    assert answer.json() == {"answer": "Local model, turn 1: you asked 'Who am I?'."}


def test_a_revoked_role_stops_the_next_instance_start(
    celery_worker, import_flow, open_ai_connection, owner, owner_client, live_server, settings
):
    settings.FLOWDEPLOY_STUDIO_URL = live_server.url  # restarts from this process fetch from the live studio
    endpoint = services.create_endpoint("ep-revoked", user=owner)  # an Owner: Connection Secrets Reader granted
    deployment = _deploy(endpoint, import_flow("chat-basic"), user=owner)
    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    instance = _ready(deployment)
    assert _fetch_connection(live_server.url, instance).status_code == 200

    assignment = RoleAssignment.objects.get(principal_id=endpoint.principal_id, role=CSR)
    assert owner_client.post(f"/projects/default/access/{assignment.pk}/remove/").status_code == 302

    refused = _fetch_connection(live_server.url, instance)
    assert refused.status_code == 403
    assert refused.json() == {
        "error": {
            "code": "AuthorizationFailed",
            "message": f"Endpoint identity 'ep-revoked' (system-assigned) lacks '{CSR_LABEL}' on project 'default'. "
            "An Owner can grant it at /projects/default/access/.",
        }
    }
    # The running instance keeps what it fetched; its next start (after a crash) cannot read the secrets.
    answer = httpx.post(f"{instance.url}/score", json=QUESTION, timeout=30)
    assert answer.status_code == 200
    os.killpg(instance.pid, signal.SIGKILL)
    wait_for(lambda: not launcher.is_running(instance.pid, str(instance.id)), timeout=10)
    log_size = instance.log_path.stat().st_size

    def refused_at_start() -> bool:
        provisioning.reconcile()
        with instance.log_path.open("rb") as log:
            log.seek(log_size)
            return b"403 Forbidden" in log.read()

    wait_for(refused_at_start, timeout=90, interval=1, message="the restarted instance did not ask for its secrets")
    instance.refresh_from_db()
    assert instance.state != InstanceState.READY
