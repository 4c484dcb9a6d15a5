"""Projects in the API: GET /projects, where a new flow, connection or endpoint goes, and `project` in answers."""

import io
import zipfile

import pytest
from api_client import PASSWORD, Api, error, member

from api import views
from api.models import PersonalAccessToken
from endpoints.models import Endpoint
from flows.models import Flow, FlowSource, FlowVersion
from workspace.models import Connection, Project, ProjectRole

pytestmark = pytest.mark.django_db

OPEN_AI = {"name": "gpt", "type": "open_ai", "api_key": "sk-projects-test", "api_base": "http://127.0.0.1:9999/v1"}


@pytest.fixture
def lab(db):
    return Project.objects.create(name="lab", description="Experiments")


@pytest.fixture
def as_user(client, django_user_model):
    """as_user("ann", {"lab": "contributor"}) -> an Api with the token of a user with those roles."""

    def make(username: str, roles: dict[str, str]) -> Api:
        user = django_user_model.objects.create_user(username, password=PASSWORD)
        for name, role in roles.items():
            project = Project.objects.get_or_create(name=name)[0]
            member(user, ProjectRole(role), project)
        return Api(client, PersonalAccessToken.issue(user)[1])

    return make


@pytest.fixture
def fake_import(monkeypatch):
    """The importer stands in for promptflow's validation (tested in tests/flows): it makes the rows."""

    def import_zip(upload, name, user, source_detail="", project=None):
        flow, _ = Flow.objects.get_or_create(name=name, defaults={"project": project})
        number = flow.versions.count() + 1
        return FlowVersion.objects.create(
            flow=flow, version=number, content_hash=f"h{number}", source=FlowSource.UPLOAD, inputs={}, outputs={}
        )

    monkeypatch.setattr(views.importing, "import_zip", import_zip)


def _upload(api: Api, name: str, project: str | None = None):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("flow.dag.yaml", "inputs: {}\n")
    buffer.seek(0)
    buffer.name = f"{name}.zip"
    data = {"file": buffer, "name": name, **({"project": project} if project else {})}
    return api.client.post("/api/v1/flows", data=data, headers={"Authorization": f"Bearer {api.token}"})


def test_it_lists_the_users_projects_and_roles(lab, as_user):
    api = as_user("ann", {"lab": "contributor", "default": "reader"})
    Project.objects.create(name="secret")
    assert api.get("/projects").json() == [
        {"name": "default", "description": "", "role": "Reader"},
        {"name": "lab", "description": "Experiments", "role": "Contributor"},
    ]


def test_it_lists_every_project_as_owner_for_a_superuser(lab, client, admin_user):
    api = Api(client, PersonalAccessToken.issue(admin_user)[1])
    Project.default()
    assert [(p["name"], p["role"]) for p in api.get("/projects").json()] == [("default", "Owner"), ("lab", "Owner")]


def test_it_creates_in_the_named_project(lab, as_user):
    api = as_user("ann", {"lab": "contributor", "default": "contributor"})
    response = api.post("/online-endpoints", {"name": "ep-lab", "project": "lab"})
    assert response.status_code == 201 and response.json()["project"] == "lab"
    assert Endpoint.objects.get(name="ep-lab").project == lab
    assert api.post("/connections", {**OPEN_AI, "project": "lab"}).json()["project"] == "lab"
    assert Connection.objects.get(name="gpt").project == lab


def test_it_creates_in_the_users_only_project_by_default(lab, as_user):
    api = as_user("ann", {"lab": "owner"})
    assert api.post("/online-endpoints", {"name": "ep-lab"}).json()["project"] == "lab"
    assert api.post("/connections", OPEN_AI).json()["project"] == "lab"


def test_it_creates_in_the_default_project_for_a_user_of_several(lab, as_user):
    api = as_user("ann", {"lab": "owner", "default": "contributor"})
    assert api.post("/online-endpoints", {"name": "ep-one"}).json()["project"] == "default"


def test_it_answers_404_naming_the_field_for_a_project_that_is_not_the_users(lab, as_user):
    api = as_user("ann", {"default": "owner"})
    for name in ("lab", "nowhere"):
        response = api.post("/online-endpoints", {"name": "ep-x", "project": name})
        assert response.status_code == 404
        assert error(response)["field"] == "project" and repr(name) in error(response)["message"]
    assert not Endpoint.objects.exists()


def test_it_refuses_a_reader_of_the_project_with_403(lab, as_user):
    api = as_user("ann", {"lab": "reader"})
    response = api.post("/connections", {**OPEN_AI, "project": "lab"})
    assert response.status_code == 403
    assert "You are Reader of project 'lab'" in error(response)["message"]
    assert not Connection.objects.exists()


def test_it_imports_a_new_flow_into_the_project_and_new_versions_stay_there(lab, as_user, fake_import):
    api = as_user("ann", {"lab": "contributor", "default": "contributor"})
    assert _upload(api, "web", "lab").status_code == 201
    assert api.get("/flows/web").json()["project"] == "lab"
    assert _upload(api, "web").status_code == 201
    assert Flow.objects.get(name="web").project == lab and Flow.objects.get(name="web").versions.count() == 2
    response = _upload(api, "web", "default")
    assert response.status_code == 400 and error(response)["field"] == "project"


def test_it_refuses_a_flow_name_taken_in_another_project(lab, as_user, fake_import):
    assert _upload(as_user("ann", {"lab": "owner"}), "web").status_code == 201
    response = _upload(as_user("bob", {"default": "owner"}), "web")
    assert response.status_code == 409 and error(response)["field"] == "name"
    assert Flow.objects.get(name="web").versions.count() == 1


def test_it_does_not_move_an_endpoint_or_a_connection(lab, as_user):
    api = as_user("ann", {"lab": "owner", "default": "owner"})
    api.post("/online-endpoints", {"name": "ep-lab", "project": "lab"})
    api.post("/connections", {**OPEN_AI, "project": "lab"})
    assert api.patch("/online-endpoints/ep-lab", {"project": "lab", "description": "same"}).status_code == 200
    response = api.patch("/online-endpoints/ep-lab", {"project": "default"})
    assert response.status_code == 400 and error(response)["field"] == "project"
    response = api.put("/connections/gpt", {"project": "default", "api_key": "k"})
    assert response.status_code == 400 and error(response)["field"] == "project"


def test_it_lists_only_the_users_projects_objects(lab, as_user):
    ann = as_user("ann", {"lab": "owner"})
    bob = as_user("bob", {"default": "owner"})
    ann.post("/online-endpoints", {"name": "ep-lab"})
    bob.post("/online-endpoints", {"name": "ep-default"})
    assert [e["name"] for e in ann.get("/online-endpoints").json()] == ["ep-lab"]
    assert [e["name"] for e in bob.get("/online-endpoints").json()] == ["ep-default"]


def test_it_deploys_only_a_flow_the_user_can_see(lab, as_user, fake_import):
    ann = as_user("ann", {"lab": "owner"})
    bob = as_user("bob", {"default": "owner"})
    _upload(ann, "web")
    bob.post("/online-endpoints", {"name": "ep-bob"})
    response = bob.put("/online-endpoints/ep-bob/deployments/blue", {"flow": "web:1"})
    assert response.status_code == 400 and error(response)["field"] == "flow"
    assert "there is no version 1 of flow 'web'" in error(response)["message"]


def test_it_does_not_let_a_deployment_use_another_projects_connection(lab, as_user, fake_import):
    ann = as_user("ann", {"lab": "owner"})
    bob = as_user("bob", {"default": "owner"})
    ann.post("/connections", {**OPEN_AI, "name": "lab-gpt"})
    bob.post("/connections", {**OPEN_AI, "name": "gpt"})
    _upload(bob, "web")
    FlowVersion.objects.filter(flow__name="web").update(connections=[{"name": "gpt", "type": "OpenAIConnection"}])
    bob.post("/online-endpoints", {"name": "ep-bob"})
    answers = [
        bob.put("/online-endpoints/ep-bob/deployments/blue", {"flow": "web:1", "connection_overrides": {"gpt": name}})
        for name in ("lab-gpt", "no-such")
    ]
    assert [a.status_code for a in answers] == [400, 400]
    assert error(answers[0])["field"] == "connection_overrides"
    assert error(answers[0])["message"] == "There is no connection named 'lab-gpt'."
    assert error(answers[1])["message"] == "There is no connection named 'no-such'."
