"""Who may call which route: every /api/v1/ route and method, for each kind of user, answers the status its
action (workspace/access.py) calls for. A route added without a row here fails test_it_has_a_row_per_route.

Kinds of user: anonymous (401), Reader, Contributor and Owner of the default project, and an Owner of
another project only, for whom the default project's objects do not exist (404) and lists are empty.
"""

import io
import re
import zipfile
from types import SimpleNamespace

import pytest
from api_client import PASSWORD, Api, error, member

from django.urls import URLPattern, URLResolver, get_resolver

from api import views
from api.models import PersonalAccessToken
from api.openapi import NEEDS, document
from endpoints import services
from endpoints.models import AuthType, Deployment, DeploymentState, Endpoint
from flows.models import Flow, FlowSource, FlowVersion
from workspace.access import Action
from workspace.connections import ConnectionSpec, save_connection
from workspace.models import Connection, Project, ProjectRole

pytestmark = pytest.mark.django_db

SECRET = "sk-matrix-5ecret-0077"
EP = "/online-endpoints/ep-one"
BLUE = EP + "/deployments/blue"
PUBLIC, SIGNED_IN = "public", "signed-in"
ROLES = ("anonymous", "reader", "contributor", "owner", "outsider")


def _zip() -> dict:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("flow.dag.yaml", "inputs: {}\noutputs: {}\nnodes: []\n")
    buffer.seek(0)
    buffer.name = "new-flow.zip"
    return {"file": buffer, "name": "new-flow", "project": "default"}


# (url name, method): (what it needs, request path, JSON body or None, status when allowed)
# `what it needs` is an Action, PUBLIC (no token needed) or SIGNED_IN (any user; only their own things).
MATRIX = {
    ("openapi", "GET"): (PUBLIC, "/openapi.json", None, 200),
    ("token", "POST"): (PUBLIC, "/auth/token", {"username": "nobody", "password": "wrong"}, 401),
    ("me", "GET"): (SIGNED_IN, "/me", None, 200),
    ("projects", "GET"): (SIGNED_IN, "/projects", None, 200),
    ("connections", "GET"): (Action.VIEW, "/connections", None, 200),
    ("connections", "POST"): (
        Action.DEPLOY,
        "/connections",
        {"name": "new-conn", "type": "open_ai", "api_key": "k", "project": "default"},
        201,
    ),
    ("connection", "GET"): (Action.VIEW, "/connections/gpt", None, 200),
    ("connection", "PUT"): (Action.DEPLOY, "/connections/gpt", {"api_key": "k2"}, 200),
    ("connection", "DELETE"): (Action.DELETE, "/connections/gpt", None, 200),
    ("flows", "GET"): (Action.VIEW, "/flows", None, 200),
    ("flows", "POST"): (Action.DEPLOY, "/flows", "multipart", 201),
    ("flow", "GET"): (Action.VIEW, "/flows/web", None, 200),
    ("flow_version", "GET"): (Action.VIEW, "/flows/web/versions/1", None, 200),
    ("online_endpoints", "GET"): (Action.VIEW, "/online-endpoints", None, 200),
    ("online_endpoints", "POST"): (Action.DEPLOY, "/online-endpoints", {"name": "ep-new", "project": "default"}, 201),
    ("online_endpoint", "GET"): (Action.VIEW, EP, None, 200),
    ("online_endpoint", "PATCH"): (Action.DEPLOY, EP, {"description": "changed"}, 200),
    ("online_endpoint", "DELETE"): (Action.DELETE, EP, None, 202),
    ("list_keys", "POST"): (Action.READ_KEYS, EP + "/list-keys", None, 200),
    ("regenerate_keys", "POST"): (Action.READ_KEYS, EP + "/regenerate-keys", {"key_type": "primary"}, 200),
    ("endpoint_token", "POST"): (Action.READ_KEYS, "/online-endpoints/ep-token/token", None, 200),
    ("invoke", "POST"): (Action.TEST, EP + "/invoke", {"url": "https://example.com"}, 200),
    ("online_deployments", "GET"): (Action.VIEW, EP + "/deployments", None, 200),
    ("online_deployment", "GET"): (Action.VIEW, BLUE, None, 200),
    ("online_deployment", "PUT"): (Action.DEPLOY, BLUE, {"instance_count": 2}, 200),
    ("online_deployment", "DELETE"): (Action.DELETE, BLUE, None, 202),
    ("deployment_logs", "GET"): (Action.READ_DATA, BLUE + "/logs", None, 200),
    # No flow snapshot on disk here: the export answers 409, past the access rule (tests/api/test_api_export.py)
    ("deployment_export", "GET"): (Action.READ_DATA, BLUE + "/export", None, 409),
}
READER_MAY = {Action.VIEW, Action.TEST}
LISTS = {("connections", "GET"), ("flows", "GET"), ("online_endpoints", "GET")}
CREATES = {(name, "POST") for name, _ in LISTS}


def _routes() -> dict[tuple[str, str], str]:
    """Every (url name, method) of the API's URLconf, with its path as OpenAPI writes it."""
    (api_resolver,) = [
        entry for entry in get_resolver().url_patterns if isinstance(entry, URLResolver) and entry.namespace == "api"
    ]
    routes = {}
    for entry in api_resolver.url_patterns:
        assert isinstance(entry, URLPattern)
        if entry.name != "unknown":
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", "/" + str(api_resolver.pattern) + str(entry.pattern))
            routes.update({(entry.name, method): path for method in entry.callback.api_methods})
    return routes


def expected_status(role: str, route: tuple[str, str]) -> int:
    needs, _, _, allowed = MATRIX[route]
    if needs == PUBLIC:
        return allowed
    if role == "anonymous":
        return 401
    if needs == SIGNED_IN:
        return allowed
    if role == "outsider":
        return allowed if route in LISTS else 404
    if role == "reader" and needs not in READER_MAY:
        return 403
    return allowed


@pytest.fixture
def world(django_user_model, monkeypatch):
    """The default project's connection, flow, endpoints and deployment, and a user of each kind."""
    save_connection(ConnectionSpec(name="gpt", type="open_ai", configs={}, secrets={"api_key": SECRET}))
    flow = Flow.objects.create(name="web")
    version = FlowVersion.objects.create(
        flow=flow, version=1, content_hash="web-hash", source=FlowSource.FOLDER, inputs={}, outputs={}, nodes=[]
    )
    endpoint = services.create_endpoint("ep-one")
    services.create_endpoint("ep-token", auth_type=AuthType.TOKEN)
    Deployment.objects.create(endpoint=endpoint, name="blue", flow_version=version, state=DeploymentState.SUCCEEDED)
    other = Project.objects.create(name="other")
    users = {
        "reader": member(django_user_model.objects.create_user("reader", password=PASSWORD), ProjectRole.READER),
        "contributor": member(django_user_model.objects.create_user("dev", password=PASSWORD), ProjectRole.CONTRIBUTOR),
        "owner": member(django_user_model.objects.create_user("boss", password=PASSWORD), ProjectRole.OWNER),
        "outsider": member(django_user_model.objects.create_user("else", password=PASSWORD), ProjectRole.OWNER, other),
    }

    def fake_score(endpoint, body, deployment_name=None):
        return SimpleNamespace(
            failure="", status=200, content=b'{"category": "Academic"}', content_type="application/json",
            request_id="req-1", deployment="blue",
        )  # fmt: skip

    def fake_import_zip(upload, name, user, source_detail="", project=None):
        created = Flow.objects.create(name=name, project=project)
        return FlowVersion.objects.create(
            flow=created, version=1, content_hash="new-hash", source=FlowSource.UPLOAD, inputs={}, outputs={}, nodes=[]
        )

    monkeypatch.setattr(views.scoring, "score", fake_score)
    monkeypatch.setattr(views.importing, "import_zip", fake_import_zip)
    return SimpleNamespace(users=users, endpoint=endpoint)


def call(client, world, role: str, method: str, path: str, body):
    token = None if role == "anonymous" else PersonalAccessToken.issue(world.users[role])[1]
    api = Api(client, token)
    if body == "multipart":
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return client.post("/api/v1" + path, data=_zip(), headers=headers)
    return api.call(method, path, body)


def test_it_has_a_row_per_route():
    """Every route and method of the URLconf has a row, and no row names a route that is gone."""
    assert set(_routes()) == set(MATRIX)


def test_it_documents_what_each_operation_needs():
    """The OpenAPI document says the same action as the matrix, in words and in x-flowdeploy-action."""
    paths = document()["paths"]
    for (name, method), route in _routes().items():
        needs = MATRIX[(name, method)][0]
        operation = paths[route][method.lower()]
        if needs == PUBLIC:
            assert operation["security"] == []
            continue
        action = None if needs == SIGNED_IN else needs
        assert NEEDS[operation["operationId"]] == action, (name, method)
        assert operation["x-flowdeploy-action"] == (action.value if action else None)
        assert operation["description"].startswith("Needs ")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "method"), sorted(MATRIX), ids=lambda value: str(value))
def test_it_answers_each_user_as_their_role_allows(client, world, name, method, role):
    _, path, body, _ = MATRIX[(name, method)]
    response = call(client, world, role, method, path, body)
    expected = expected_status(role, (name, method))
    assert response.status_code == expected, response.content
    if expected == 403:
        message = error(response)["message"]
        assert "You are Reader of project 'default'" in message and "Contributor or Owner" in message
    if expected == 404:
        assert error(response)["code"] == "NotFound"
        if (name, method) in CREATES:  # naming a project the user is not a member of
            assert error(response)["field"] == "project"
    if role == "outsider" and (name, method) in LISTS:
        assert response.json() == [], "a list shows only the objects of the user's projects"


def test_it_answers_an_outsider_as_if_the_object_did_not_exist(client, world):
    """The 404 for another project's endpoint is the same as for one that does not exist at all."""
    api = Api(client, PersonalAccessToken.issue(world.users["outsider"])[1])
    owner = Api(client, PersonalAccessToken.issue(world.users["owner"])[1])
    for path in (EP, BLUE, BLUE + "/logs", EP + "/list-keys"):
        method = "POST" if path.endswith("list-keys") else "GET"
        hidden = api.call(method, path)
        missing = owner.call(method, path.replace("ep-one", "ep-nope"))
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json() == {
            "error": {"code": "NotFound", "message": "There is no online endpoint named 'ep-one'."}
        }
        assert missing.json()["error"]["message"] == "There is no online endpoint named 'ep-nope'."


@pytest.mark.parametrize(("name", "method"), [key for key, row in MATRIX.items() if row[0] in READER_MAY])
def test_it_never_shows_a_reader_keys_or_connection_secrets(client, world, name, method):
    """Whatever a Reader may call, the answer holds no endpoint key, scoring token or connection secret."""
    _, path, body, _ = MATRIX[(name, method)]
    token = Endpoint.objects.get(name="ep-token")
    secrets = [SECRET, *world.endpoint.get_keys().values(), *token.get_keys().values()]
    response = call(client, world, "reader", method, path, body)
    assert response.status_code == 200
    text = response.content.decode()
    for secret in secrets:
        assert secret not in text, f"{method} {path} shows a secret to a Reader"
    assert "accessToken" not in text


def test_it_keeps_connection_secrets_out_of_every_answer_even_to_an_owner(client, world):
    api = Api(client, PersonalAccessToken.issue(world.users["owner"])[1])
    for path in ("/connections", "/connections/gpt"):
        assert SECRET not in api.get(path).content.decode()
    assert Connection.objects.get(name="gpt").get_secrets() == {"api_key": SECRET}
