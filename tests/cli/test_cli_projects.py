"""`flowdeploy projects`, --project (and FLOWDEPLOY_PROJECT, login --project), and what a Reader is told."""

import json
from types import SimpleNamespace

import pytest
from cli_support import PASSWORD, member

from api import views
from api.models import PersonalAccessToken
from endpoints import services
from endpoints.models import Endpoint
from workspace.models import Project, ProjectRole


@pytest.fixture
def lab(transactional_db, staff):
    project = Project.objects.create(name="lab", description="Experiments")
    member(staff, ProjectRole.CONTRIBUTOR, project)
    return project


def test_it_lists_the_users_projects_and_roles(cli, lab):
    result = cli("projects")
    assert result.code == 0, result.err
    assert result.json == [
        {"name": "default", "description": "", "role": "Owner"},
        {"name": "lab", "description": "Experiments", "role": "Contributor"},
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ("--project", "lab", "online-endpoint", "create", "--name", "ep-lab"),
        ("online-endpoint", "create", "--name", "ep-lab", "--project", "lab"),
    ],
)
def test_it_creates_in_the_project_given_before_or_after_the_command(cli, lab, argv):
    result = cli(*argv)
    assert result.code == 0, result.err
    assert result.json["project"] == "lab"
    assert Endpoint.objects.get(name="ep-lab").project == lab


def test_it_takes_the_project_from_the_environment(cli, lab, monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWDEPLOY_PROJECT", "lab")
    connection = tmp_path / "gpt.yml"
    connection.write_text("name: gpt\ntype: open_ai\napi_key: sk-cli-projects\n")
    result = cli("connection", "create", "-f", connection)
    assert result.code == 0, result.err
    assert result.json["project"] == "lab"
    assert cli("--project", "default", "online-endpoint", "create", "--name", "ep-here").json["project"] == "default"


def test_it_remembers_the_project_given_at_login(run, live_server, staff, lab, home):
    result = run("login", "--url", live_server.url, "--username", "ops", "--password", PASSWORD, "--project", "lab")
    assert result.code == 0, result.err
    saved = json.loads((home / "config" / "flowdeploy" / "config.json").read_text())
    assert saved["project"] == "lab"
    assert run("online-endpoint", "create", "--name", "ep-lab").json["project"] == "lab"


def test_it_names_the_field_for_a_project_that_is_not_the_users(cli, lab):
    result = cli("--project", "elsewhere", "online-endpoint", "create", "--name", "ep-x")
    assert result.code == 1
    assert result.err.startswith("project: you are not a member of a project named 'elsewhere'")


def test_it_refuses_a_readers_delete_naming_the_role(cli, reader, monkeypatch):
    services.create_endpoint("ep-one")
    monkeypatch.setenv("FLOWDEPLOY_TOKEN", PersonalAccessToken.issue(reader)[1])
    assert cli("online-endpoint", "show", "--name", "ep-one").code == 0
    result = cli("online-endpoint", "delete", "--name", "ep-one", "--yes")
    assert result.code == 1
    assert result.err.strip() == (
        "You are Reader of project 'default'; deleting needs Contributor or Owner. "
        "Ask an Owner of the project to change your role."
    )
    assert "Traceback" not in result.err
    assert Endpoint.objects.filter(name="ep-one", deleting=False).exists()


def test_it_lets_a_reader_invoke_through_the_studio_without_the_keys(cli, reader, monkeypatch, tmp_path):
    services.create_endpoint("ep-one")
    sent = []

    def score(endpoint, body, deployment_name=None):
        sent.append((endpoint.name, body, deployment_name))
        return SimpleNamespace(
            failure="", status=200, content=b'{"category": "Academic"}', content_type="application/json",
            request_id="req-1", deployment="blue",
        )  # fmt: skip

    monkeypatch.setattr(views.scoring, "score", score)
    monkeypatch.setenv("FLOWDEPLOY_TOKEN", PersonalAccessToken.issue(reader)[1])
    request = tmp_path / "request.json"
    request.write_text('{"url": "https://example.com"}')
    result = cli("online-endpoint", "invoke", "--name", "ep-one", "--request-file", request)
    assert result.code == 0, result.err
    assert result.json == {"category": "Academic"}
    assert sent == [("ep-one", {"url": "https://example.com"}, None)]
