"""Online endpoints through the API: create, show, update, traffic, delete, keys and tokens."""

import pytest
from api_client import error

from endpoints import services
from endpoints.models import Deployment, DeploymentState, Endpoint
from workspace.models import ManagedIdentity, Project

pytestmark = pytest.mark.django_db


def _keys(endpoint_name: str) -> list[str]:
    return list(Endpoint.objects.get(name=endpoint_name).get_keys().values())


def test_it_creates_an_endpoint_with_azures_fields(api, settings):
    settings.FLOWDEPLOY_GATEWAY_URL = "http://127.0.0.1:8001"
    body = {"name": "ep-web", "auth_mode": "aml_token", "description": "Web", "tags": {"team": "search"}}
    response = api.post("/online-endpoints", body)
    assert response.status_code == 201
    created = response.json()
    assert created["name"] == "ep-web" and created["auth_mode"] == "aml_token"
    assert created["scoring_uri"] == "http://127.0.0.1:8001/endpoints/ep-web/score"
    assert created["swagger_uri"] == "http://127.0.0.1:8001/endpoints/ep-web/swagger.json"
    assert created["tags"] == {"team": "search"}
    assert created["identity"] == {
        "type": "system_assigned",
        "principal_id": str(Endpoint.objects.get(name="ep-web").principal_id),
    }
    assert created["traffic"] == {} and created["provisioning_state"] == "Succeeded"


def test_it_creates_an_endpoint_with_a_user_assigned_identity_of_its_project(api):
    """The identity is named by an Azure-like resource id whose last segment is its name in the project."""
    chosen = ManagedIdentity.objects.create(project=Project.default(), name="flow-reader")
    identity = {"type": "user_assigned", "user_assigned_identities": [{"resource_id": "/ids/flow-reader"}]}
    response = api.post("/online-endpoints", {"name": "ep-uai", "identity": identity})
    assert response.status_code == 201, response.content
    assert response.json()["identity"] == {
        "type": "user_assigned",
        "user_assigned_identities": [
            {
                "resource_id": "/projects/default/userAssignedIdentities/flow-reader",
                "principal_id": str(chosen.principal_id),
                "client_id": str(chosen.client_id),
            }
        ],
    }
    assert Endpoint.objects.get(name="ep-uai").user_assigned_identity == chosen


def test_it_refuses_an_identity_of_another_project(api):
    ManagedIdentity.objects.create(project=Project.objects.create(name="lab"), name="flow-reader")
    identity = {"type": "user_assigned", "user_assigned_identities": [{"resource_id": "flow-reader"}]}
    response = api.post("/online-endpoints", {"name": "ep-uai", "identity": identity})
    assert response.status_code == 400
    assert error(response)["field"] == "identity.user_assigned_identities"
    assert "Project 'default' has no user-assigned identity named 'flow-reader'" in error(response)["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "1-bad"}, "name"),
        ({}, "name"),
        ({"name": "ep-x", "auth_mode": "password"}, "auth_mode"),
        ({"name": "ep-x", "identity": {"type": "managed"}}, "identity.type"),
        ({"name": "ep-x", "identity": {"type": "user_assigned"}}, "identity.user_assigned_identities"),
        ({"name": "ep-x", "tags": ["a"]}, "tags"),
        ({"name": "ep-x", "compute": "k8s"}, "compute"),
    ],
)
def test_it_names_the_field_that_is_wrong(api, body, field):
    response = api.post("/online-endpoints", body)
    assert response.status_code == 400
    assert error(response)["field"] == field


def test_it_refuses_a_name_that_is_taken_with_409(api, endpoint):
    endpoint("ep-taken")
    response = api.post("/online-endpoints", {"name": "ep-taken"})
    assert response.status_code == 409
    assert error(response)["field"] == "name"


def test_it_lists_and_shows_endpoints_without_keys(api, endpoint):
    endpoint("ep-one")
    endpoint("ep-two", auth_type="aml_token")
    listing = api.get("/online-endpoints")
    assert [e["name"] for e in listing.json()] == ["ep-one", "ep-two"]
    shown = api.get("/online-endpoints/ep-one")
    assert shown.json()["auth_mode"] == "key"
    for response in (listing, shown):
        for key in _keys("ep-one"):
            assert key not in response.content.decode()


def test_it_answers_404_for_an_unknown_endpoint(api):
    assert api.get("/online-endpoints/ep-none").status_code == 404
    assert api.post("/online-endpoints/ep-none/list-keys").status_code == 404


def test_it_updates_tags_and_description(api, endpoint):
    endpoint("ep-one")
    response = api.patch("/online-endpoints/ep-one", {"tags": {"stage": "prod"}, "description": "Live"})
    assert response.status_code == 200
    assert response.json()["tags"] == {"stage": "prod"} and response.json()["description"] == "Live"


def test_it_refuses_to_update_what_cannot_change(api, endpoint):
    endpoint("ep-one")
    response = api.patch("/online-endpoints/ep-one", {"auth_mode": "aml_token"})
    assert response.status_code == 400
    assert error(response)["field"] == "auth_mode"


def test_it_sets_traffic_and_mirror_traffic(api, endpoint, flow_version, redis_url):
    ep = endpoint("ep-one")
    version = flow_version()
    for name in ("blue", "green", "red"):
        Deployment.objects.create(endpoint=ep, name=name, flow_version=version, state=DeploymentState.SUCCEEDED)
    response = api.patch(
        "/online-endpoints/ep-one", {"traffic": {"blue": 90, "green": 10}, "mirror_traffic": {"red": 20}}
    )
    assert response.status_code == 200
    assert response.json()["traffic"] == {"blue": 90, "green": 10}
    assert response.json()["mirror_traffic"] == {"red": 20}
    response = api.patch("/online-endpoints/ep-one", {"traffic": {"blue": 50, "green": 40}})
    assert response.status_code == 400
    assert error(response)["field"] == "traffic" and "100%" in error(response)["message"]
    response = api.patch("/online-endpoints/ep-one", {"mirror_traffic": {"blue": 10}})
    assert error(response)["field"] == "mirror_traffic"


def test_it_derives_the_provisioning_state_from_the_deployments(api, endpoint, flow_version):
    ep = endpoint("ep-one")
    version = flow_version()
    Deployment.objects.create(endpoint=ep, name="blue", flow_version=version, state=DeploymentState.SUCCEEDED)
    Deployment.objects.create(endpoint=ep, name="green", flow_version=version, state=DeploymentState.UPDATING)
    assert api.get("/online-endpoints/ep-one").json()["provisioning_state"] == "Updating"
    Deployment.objects.filter(name="green").update(state=DeploymentState.FAILED)
    assert api.get("/online-endpoints/ep-one").json()["provisioning_state"] == "Succeeded"
    Deployment.objects.filter(name="blue").update(state=DeploymentState.FAILED)
    assert api.get("/online-endpoints/ep-one").json()["provisioning_state"] == "Failed"


def test_it_deletes_an_endpoint_in_the_background(api, endpoint, django_capture_on_commit_callbacks):
    endpoint("ep-one")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.delete("/online-endpoints/ep-one")
    assert response.status_code == 202
    assert response.json() == {"name": "ep-one", "provisioning_state": "Deleting"}
    assert len(callbacks) == 1
    assert api.get("/online-endpoints/ep-one").json()["provisioning_state"] == "Deleting"
    response = api.patch("/online-endpoints/ep-one", {"description": "x"})
    assert response.status_code == 409


def test_it_lists_keys_only_through_list_keys(api, endpoint):
    endpoint("ep-one")
    response = api.post("/online-endpoints/ep-one/list-keys")
    assert response.status_code == 200
    assert set(response.json()) == {"primaryKey", "secondaryKey"}
    assert sorted(response.json().values()) == sorted(_keys("ep-one"))


def test_it_regenerates_a_key(api, endpoint, redis_url):
    endpoint("ep-one")
    before = api.post("/online-endpoints/ep-one/list-keys").json()
    response = api.post("/online-endpoints/ep-one/regenerate-keys", {"key_type": "secondary"})
    assert response.status_code == 200
    assert before["secondaryKey"] not in response.content.decode()
    after = api.post("/online-endpoints/ep-one/list-keys").json()
    assert after["primaryKey"] == before["primaryKey"] and after["secondaryKey"] != before["secondaryKey"]


def test_it_names_a_wrong_key_type(api, endpoint):
    endpoint("ep-one")
    response = api.post("/online-endpoints/ep-one/regenerate-keys", {"key_type": "tertiary"})
    assert response.status_code == 400
    assert error(response)["field"] == "key_type"


def test_it_issues_a_token_for_a_token_endpoint(api, endpoint):
    endpoint("ep-tok", auth_type="aml_token")
    response = api.post("/online-endpoints/ep-tok/token")
    assert response.status_code == 200
    token = response.json()
    assert token["tokenType"] == "Bearer" and token["accessToken"]
    assert token["expiryTimeUtc"] > token["refreshAfterTimeUtc"]


def test_it_tells_which_credential_an_endpoint_uses(api, endpoint):
    endpoint("ep-tok", auth_type="aml_token")
    endpoint("ep-key")
    response = api.post("/online-endpoints/ep-tok/list-keys")
    assert response.status_code == 400 and error(response)["field"] == "auth_mode"
    response = api.post("/online-endpoints/ep-key/token")
    assert response.status_code == 400 and error(response)["field"] == "auth_mode"


def test_it_lets_a_reader_read_but_not_write_or_see_keys(reader_api, endpoint):
    endpoint("ep-one")
    assert reader_api.get("/online-endpoints/ep-one").status_code == 200
    assert reader_api.get("/online-endpoints").status_code == 200
    for response in (
        reader_api.post("/online-endpoints", {"name": "ep-mine"}),
        reader_api.patch("/online-endpoints/ep-one", {"description": "x"}),
        reader_api.delete("/online-endpoints/ep-one"),
        reader_api.post("/online-endpoints/ep-one/list-keys"),
        reader_api.post("/online-endpoints/ep-one/regenerate-keys", {"key_type": "primary"}),
        reader_api.post("/online-endpoints/ep-one/token"),
    ):
        assert response.status_code == 403, response.content
        assert "needs Contributor or Owner" in error(response)["message"]


def test_it_lets_a_contributor_create_one_and_see_its_keys(contributor_api):
    created = contributor_api.post("/online-endpoints", {"name": "ep-mine"})
    assert created.status_code == 201 and created.json()["project"] == "default"
    assert set(contributor_api.post("/online-endpoints/ep-mine/list-keys").json()) == {"primaryKey", "secondaryKey"}


def test_it_records_who_created_an_endpoint(api, staff):
    api.post("/online-endpoints", {"name": "ep-one"})
    assert Endpoint.objects.get(name="ep-one").created_by == staff
    assert services  # the API calls the same services as the wizard
