"""`flowdeploy model`: a flow folder, zipped and uploaded, becomes a new version of a flow."""

import pytest
from cli_support import write_yaml
from support import FIXTURE_FLOWS

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_creates_a_model_from_azures_model_yaml(cli, copy_flow, tmp_path, flow_runtime, isolated_flow_dirs):
    copy_flow("web-classification-offline")
    spec = write_yaml(tmp_path, "model.yml", {"name": "web", "version": 7, "path": "web-classification-offline"})
    result = cli("model", "create", "-f", spec)
    assert result.code == 0, result.err
    assert result.json["id"] == "web:1"
    assert "'version' is ignored: versions are assigned" in result.err
    assert set(result.json["outputs"]) == {"category", "evidence", "location"}


def test_it_creates_a_model_from_a_name_and_a_path(cli, flow_runtime, isolated_flow_dirs):
    path = FIXTURE_FLOWS / "chat-stream-offline"
    first = cli("model", "create", "--name", "chat", "--path", path)
    second = cli("model", "create", "--name", "chat", "--path", path)
    assert (first.code, second.code) == (0, 0), first.err + second.err
    assert second.json["version"] == 2
    listing = cli("model", "list").json
    assert [(m["name"], m["latest_version"]) for m in listing] == [("chat", 2)]
    shown = cli("model", "show", "-n", "chat").json
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    version = cli("model", "show", "-n", "chat", "--version", "1").json
    assert version["chat_input"] == "question"


def test_it_prints_promptflows_refusal_as_it_is(cli, flow_runtime, isolated_flow_dirs):
    result = cli("model", "create", "--name", "broken", "--path", FIXTURE_FLOWS / "invalid" / "missing-source")
    assert result.code == 1
    assert result.err.splitlines()[-1].startswith("flow.dag.yaml, line 9, node 'echo': ")
    assert "Traceback" not in result.err


def test_it_refuses_a_folder_without_a_flow_before_uploading(cli, tmp_path):
    result = cli("model", "create", "--name", "empty", "--path", tmp_path)
    assert result.code == 1
    assert "has no flow.dag.yaml" in result.err


def test_it_names_an_unknown_field_of_the_model_yaml(cli, tmp_path):
    spec = write_yaml(tmp_path, "model.yml", {"name": "web", "path": ".", "flavor": "x"})
    result = cli("model", "create", "-f", spec)
    assert result.code == 1
    assert "unknown field 'flavor'" in result.err


def test_it_names_a_missing_field_of_the_model_yaml(cli, tmp_path):
    spec = write_yaml(tmp_path, "model.yml", {"name": "web"})
    result = cli("model", "create", "-f", spec)
    assert result.code == 1
    assert "missing required field 'path'" in result.err
