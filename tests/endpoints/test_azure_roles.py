"""Role assignments on Azure for an Azure ML endpoint's identity (endpoints/providers/azureml/roles.py): what it
needs where, the az commands, granting them through azure-mgmt-authorization against the fake ARM
(tests/fake_arm.py), the endpoint page's card and Grant on Azure, and the identities' Azure ids."""

import pytest
from fake_arm import RESOURCE_GROUP, SUBSCRIPTION_ID, WORKSPACE, FakeArm, ml_client
from roles import member

from django.contrib.messages import get_messages

from endpoints import services
from endpoints.models import Endpoint, IdentityType, Provider
from endpoints.providers.azureml import artifacts, roles
from workspace.models import AuditEvent, ManagedIdentity, Project, ProjectRole

pytest_plugins = ["fake_arm"]  # the azure and fake_azure fixtures

pytestmark = pytest.mark.filterwarnings("ignore")  # azure-ai-ml's experimental-class and marshmallow warnings

RG_ID = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"
WORKSPACE_ID = f"{RG_ID}/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
REGISTRY_ID = f"{RG_ID}/providers/Microsoft.ContainerRegistry/registries/fakeregistry"
STORAGE_ID = f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/fakestorage"
IDENTITY_ID = (
    f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/identities-rg"
    "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/flow-mi"
)
PRINCIPAL = "6b1c2d3e-0000-4000-8000-00000000abcd"
CLIENT = "7c1c2d3e-0000-4000-8000-00000000abcd"
SECRETS_READER = "ea01e6af-a1c1-4350-9563-ad00f8c72ec5"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
BLOB_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
METRICS_WRITER = "635dd51f-9968-44d3-b7fb-6d9a6bd613ae"
USER_ASSIGNED_NEEDS = [
    (SECRETS_READER, WORKSPACE_ID),
    (ACR_PULL, REGISTRY_ID),
    (BLOB_READER, STORAGE_ID),
    (METRICS_WRITER, WORKSPACE_ID),
]


@pytest.fixture
def owner(django_user_model):
    return member(django_user_model.objects.create_user("roles-owner", password="pw-roles-1"), ProjectRole.OWNER)


@pytest.fixture
def contributor(django_user_model):
    user = django_user_model.objects.create_user("roles-contributor", password="pw-roles-2")
    return member(user, ProjectRole.CONTRIBUTOR)


def user_assigned(owner, *, principal: str = PRINCIPAL) -> Endpoint:
    """An Azure endpoint running as a user-assigned identity whose Azure ids are set."""
    ManagedIdentity.objects.create(
        project=Project.default(),
        name="flow-mi",
        azure_resource_id=IDENTITY_ID,
        azure_client_id=CLIENT,
        azure_principal_id=principal,
    )
    return services.create_endpoint(
        "ep-mi",
        identity_type=IdentityType.USER,
        user_assigned_identity="flow-mi",
        provider=Provider.AZUREML,
        user=owner,
    )


def system_assigned(azure: FakeArm, owner, *, enforce: bool = False, on_azure: bool = True) -> Endpoint:
    """An Azure endpoint with a system-assigned identity, created on the fake as the provider creates it."""
    endpoint = services.create_endpoint(
        "ep-sys", provider=Provider.AZUREML, enforce_access_to_connection_secrets=enforce, user=owner
    )
    if on_azure:
        entity = artifacts.endpoint_for(endpoint, None)
        ml_client(azure).online_endpoints.begin_create_or_update(entity).result()
    return endpoint


def assignment_puts(azure: FakeArm) -> dict[str, dict]:
    """The role assignments' PUT bodies by path, those Azure accepted."""
    return {r.path: r.body for r in azure.calls("PUT") if "/roleAssignments/" in r.path and r.status == 201}


def test_it_needs_four_roles_for_a_user_assigned_identity(azure, owner):
    needs = roles.required(user_assigned(owner))

    assert [(r.role_id, r.scope) for r in needs] == USER_ASSIGNED_NEEDS
    assert [r.role for r in needs] == [
        "Azure Machine Learning Workspace Connection Secrets Reader",
        "AcrPull",
        "Storage Blob Data Reader",
        "AzureML Metrics Writer (preview)",
    ]
    assert all(r.why for r in needs)


def test_it_needs_the_secrets_reader_for_a_system_identity_only_without_enforce_access(azure, owner):
    without = system_assigned(azure, owner, enforce=False, on_azure=False)
    assert [(r.role_id, r.scope) for r in roles.required(without)] == [(SECRETS_READER, WORKSPACE_ID)]

    without.enforce_access_to_connection_secrets = True  # Azure grants it itself
    assert roles.required(without) == []
    assert roles.commands(without) == []


def test_it_gives_the_exact_az_commands(azure, owner):
    assert roles.commands(user_assigned(owner)) == [
        f"az role assignment create --assignee-object-id {PRINCIPAL} --assignee-principal-type ServicePrincipal "
        f"--role {role_id} --scope {scope}"
        for role_id, scope in USER_ASSIGNED_NEEDS
    ]


def test_it_names_the_system_identity_by_azures_principal_id(azure, owner):
    endpoint = system_assigned(azure, owner)
    principal = azure.resource("/onlineEndpoints/ep-sys")["identity"]["principalId"]

    assert roles.commands(endpoint) == [
        f"az role assignment create --assignee-object-id {principal} --assignee-principal-type ServicePrincipal "
        f"--role {SECRETS_READER} --scope {WORKSPACE_ID}"
    ]


def test_it_says_how_to_find_an_unknown_principal(azure, owner):
    lines = roles.commands(user_assigned(owner, principal=""))
    assert lines[0].startswith("# User-assigned identity flow-mi has no Azure principal ID in the studio")
    assert f"az identity show --ids {IDENTITY_ID} --query principalId" in lines[0]
    assert all("--assignee-object-id <principal-id> " in line for line in lines[1:])
    assert len(lines) == 5

    (note, line) = roles.commands(system_assigned(azure, owner, on_azure=False))
    assert note.startswith("# Endpoint ep-sys is not on Azure ML yet")
    assert "az ml online-endpoint show --name ep-sys" in note
    assert "<principal-id>" in line


def test_it_grants_each_role_on_azure(azure, owner):
    endpoint = user_assigned(owner)

    done = roles.grant(endpoint, owner)

    assert done == [f"{r.role} on {r.scope}: granted" for r in roles.required(endpoint)]
    sent = assignment_puts(azure)
    expected = {
        f"{scope}/providers/Microsoft.Authorization/roleAssignments/"
        f"{roles.assignment_name(scope, role_id, PRINCIPAL)}": {
            "properties": {
                "roleDefinitionId": f"/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/"
                f"roleDefinitions/{role_id}",
                "principalId": PRINCIPAL,
                "principalType": "ServicePrincipal",
            }
        }
        for role_id, scope in USER_ASSIGNED_NEEDS
    }
    assert sent == expected
    events = AuditEvent.objects.filter(action="azure_role_assignment.create")
    assert sorted(e.detail["role_definition_id"] for e in events) == sorted(r for r, _ in USER_ASSIGNED_NEEDS)
    assert {(e.actor, e.project, e.detail["ok"]) for e in events} == {(owner, Project.default(), True)}


def test_a_second_grant_finds_them_present(azure, owner):
    endpoint = user_assigned(owner)
    roles.grant(endpoint, owner)

    again = roles.grant(endpoint, owner)

    assert again == [f"{r.role} on {r.scope}: already assigned" for r in roles.required(endpoint)]
    assert len(azure.role_assignments) == 4
    assert AuditEvent.objects.filter(action="azure_role_assignment.create").count() == 4


def test_it_grants_the_system_identity_azures_principal(azure, owner):
    endpoint = system_assigned(azure, owner)
    principal = azure.resource("/onlineEndpoints/ep-sys")["identity"]["principalId"]

    assert roles.grant(endpoint, owner) == [
        f"Azure Machine Learning Workspace Connection Secrets Reader on {WORKSPACE_ID}: granted"
    ]
    ((body),) = assignment_puts(azure).values()
    assert body["properties"]["principalId"] == principal
    assert body["properties"]["roleDefinitionId"].endswith(f"/roleDefinitions/{SECRETS_READER}")


def test_the_endpoint_page_shows_the_roles_and_commands(azure, owner, contributor, client):
    endpoint = user_assigned(owner)
    client.force_login(owner)

    page = client.get(f"/endpoints/{endpoint.name}/").content.decode()

    assert "Role assignments on Azure" in page
    for role_id, scope in USER_ASSIGNED_NEEDS:
        assert f"--role {role_id} --scope {scope}" in page
    assert 'data-copy="az role assignment create' in page
    assert 'id="azure-roles-grant"' in page
    client.force_login(contributor)
    page = client.get(f"/endpoints/{endpoint.name}/").content.decode()
    assert "Role assignments on Azure" in page
    assert 'id="azure-roles-grant"' not in page


def test_grant_on_azure_needs_an_owner(azure, owner, contributor, client):
    endpoint = user_assigned(owner)
    url = f"/endpoints/{endpoint.name}/azure-roles/grant/"
    client.force_login(contributor)

    assert client.post(url).status_code == 403
    assert assignment_puts(azure) == {}

    client.force_login(owner)
    response = client.post(url)
    assert response.status_code == 302
    assert response["Location"] == f"/endpoints/{endpoint.name}/"
    (message,) = get_messages(response.wsgi_request)
    assert message.level_tag == "success"
    assert f"AcrPull on {REGISTRY_ID}: granted" in str(message)
    assert len(assignment_puts(azure)) == 4
    assert client.get(url).status_code == 405


def test_grant_on_azure_shows_azures_refusal(azure, owner, client):
    endpoint = user_assigned(owner)
    refusal = (
        "The client 'studio' with object id 'x' does not have authorization to perform action "
        "'Microsoft.Authorization/roleAssignments/write' over scope '...' or the scope is invalid."
    )
    azure.fail_next(
        lambda method, path: "/roleassignments/" in path.lower(), "AuthorizationFailed", refusal, status=403
    )
    client.force_login(owner)

    response = client.post(f"/endpoints/{endpoint.name}/azure-roles/grant/", follow=True)

    page = response.content.decode()
    assert (
        f"Granting Azure Machine Learning Workspace Connection Secrets Reader on {WORKSPACE_ID} to principal "
        f"{PRINCIPAL} failed: (AuthorizationFailed) The client &#x27;studio&#x27;"
    ) in page
    assert azure.role_assignments == []
    event = AuditEvent.objects.get(action="azure_role_assignment.create")
    assert not event.detail["ok"] and "AuthorizationFailed" in event.detail["error"]


def test_the_identities_page_saves_the_azure_ids(azure, owner, client):
    identity = ManagedIdentity.objects.create(project=Project.default(), name="flow-mi")
    client.force_login(owner)
    prefix = f"azure-{identity.pk}"

    page = client.get("/projects/default/identities/").content.decode()
    assert 'id="identity-azure-flow-mi"' in page
    response = client.post(
        "/projects/default/identities/flow-mi/azure/",
        {
            f"{prefix}-azure_resource_id": IDENTITY_ID,
            f"{prefix}-azure_client_id": CLIENT.upper(),
            f"{prefix}-azure_principal_id": PRINCIPAL,
        },
    )

    assert response.status_code == 302
    identity.refresh_from_db()
    assert (identity.azure_resource_id, identity.azure_client_id, identity.azure_principal_id) == (
        IDENTITY_ID,
        CLIENT,
        PRINCIPAL,
    )
    event = AuditEvent.objects.get(action="identity.azure_ids")
    assert event.project == Project.default()
    assert event.detail["changed"] == ["azure_resource_id", "azure_client_id", "azure_principal_id"]
    # The endpoint then uses that resource on Azure.
    endpoint = services.create_endpoint(
        "ep-mi", identity_type=IdentityType.USER, user_assigned_identity="flow-mi", provider=Provider.AZUREML
    )
    assert artifacts.identity_resource_id(endpoint, artifacts.PLACEHOLDERS) == IDENTITY_ID


def test_the_identities_page_refuses_a_malformed_resource_id(azure, owner, contributor, client):
    identity = ManagedIdentity.objects.create(project=Project.default(), name="flow-mi")
    prefix = f"azure-{identity.pk}"
    data = {f"{prefix}-azure_resource_id": "/subscriptions/nope/flow-mi", f"{prefix}-azure_principal_id": PRINCIPAL}
    client.force_login(owner)

    response = client.post("/projects/default/identities/flow-mi/azure/", data)

    assert response.status_code == 400
    page = response.content.decode()
    assert "Azure resource ID &#x27;/subscriptions/nope/flow-mi&#x27; is not valid" in page
    identity.refresh_from_db()
    assert (identity.azure_resource_id, identity.azure_principal_id) == ("", "")
    client.force_login(contributor)
    assert client.post("/projects/default/identities/flow-mi/azure/", data).status_code == 403
