"""A flow's code sees only its own connections: validation gets the ones it names, with no secret values, and
test runs get the ones the version recorded."""

import json
from pathlib import Path

import pytest

from flows import importing, services
from flows.importing import SECRET_PLACEHOLDER, import_folder, referenced_connection_names
from flows.models import RunStatus, TestRun
from workspace.connections import ConnectionSpec, save_connection

pytestmark = pytest.mark.django_db

OPENAI_KEY = "sk-openai-secret-value-1111"
CUSTOM_TOKEN = "custom-secret-token-2222"
UNUSED_KEY = "sk-unused-secret-value-3333"

FLOW_DAG = """\
inputs:
  question:
    type: string
outputs:
  answer:
    type: string
    reference: ${chat.output}
nodes:
- name: lookup
  type: python
  source:
    type: code
    path: lookup.py
  inputs:
    conn: used_custom
    question: ${inputs.question}
- name: chat
  type: llm
  source:
    type: code
    path: chat.jinja2
  inputs:
    deployment_name: gpt-35-turbo
    question: ${lookup.output}
  api: chat
  connection: used_openai
"""


@pytest.fixture
def connections(db):
    save_connection(
        ConnectionSpec(
            "used_openai", "open_ai", configs={"base_url": "http://127.0.0.1:9/v1"}, secrets={"api_key": OPENAI_KEY}
        )
    )
    save_connection(ConnectionSpec("used_custom", "custom", configs={"region": "eu"}, secrets={"token": CUSTOM_TOKEN}))
    save_connection(ConnectionSpec("unused", "open_ai", secrets={"api_key": UNUSED_KEY}))


@pytest.fixture
def flow_folder(tmp_path) -> Path:
    folder = tmp_path / "source"
    folder.mkdir()
    (folder / "flow.dag.yaml").write_text(FLOW_DAG)
    (folder / "lookup.py").write_text("def lookup(conn, question):\n    return question\n")
    (folder / "chat.jinja2").write_text("user:\n{{question}}\n")
    return folder


def _description(connection_names):
    return {
        "inputs": {"question": {"type": "string"}},
        "outputs": {"answer": {"type": "string"}},
        "nodes": [{"name": "lookup"}, {"name": "chat"}],
        "connections": [{"name": name, "types": [], "nodes": []} for name in connection_names],
        "requirements": "",
    }


def test_the_validator_gets_only_the_flows_own_connections_without_secrets(
    connections, flow_folder, isolated_flow_dirs, monkeypatch
):
    """Two connections the flow names reach validation with names, types and configs; no secret, no other one."""
    seen = []

    def fake_validate(env, flow_dir, given):
        seen.append(given)
        return {"ok": True, "flow": _description(["used_openai", "used_custom"])}

    monkeypatch.setattr(importing, "flow_environment", lambda requirements: object())
    monkeypatch.setattr(importing, "validate_flow", fake_validate)
    import_folder(flow_folder, "uses-two", None)

    (given,) = seen
    assert sorted(given) == ["used_custom", "used_openai"]
    assert given["used_openai"] == {
        "type": "OpenAIConnection",
        "name": "used_openai",
        "module": "promptflow.connections",
        "value": {"base_url": "http://127.0.0.1:9/v1", "api_key": SECRET_PLACEHOLDER},
        "secret_keys": ["api_key"],
    }
    assert given["used_custom"]["type"] == "CustomConnection"
    assert given["used_custom"]["value"] == {"region": "eu", "token": SECRET_PLACEHOLDER}
    payload = json.dumps(given)
    for secret in (OPENAI_KEY, CUSTOM_TOKEN, UNUSED_KEY):
        assert secret not in payload


def test_it_reads_connection_names_from_nodes_inputs_and_variants():
    dag = {
        "nodes": [
            {"name": "a", "connection": "conn_a", "inputs": {"text": "${inputs.q}", "conn": "conn_b"}},
            {"name": "b", "use_variants": True},
            "not a node",
        ],
        "node_variants": {
            "b": {"variants": {"v1": {"node": {"connection": "conn_c", "inputs": {"x": 3, "y": "a long sentence."}}}}}
        },
    }
    assert referenced_connection_names(dag) == {"conn_a", "conn_b", "conn_c"}
    assert referenced_connection_names({"nodes": "nonsense", "node_variants": []}) == set()


def test_a_test_run_gets_only_the_connections_its_version_uses(
    connections, flow_folder, isolated_flow_dirs, monkeypatch
):
    """Test runs need the secrets, so they get them, but only for the connections the version recorded."""
    monkeypatch.setattr(importing, "flow_environment", lambda requirements: object())
    monkeypatch.setattr(
        importing, "validate_flow", lambda env, flow_dir, given: {"ok": True, "flow": _description(["used_openai"])}
    )
    version = import_folder(flow_folder, "uses-one", None)
    given = []

    def fake_run_line(env, flow_dir, connections, inputs, timeout):
        given.append(connections)
        return {"status": "Completed", "outputs": {"answer": "ok"}, "nodes": []}

    monkeypatch.setattr(services, "flow_environment", lambda requirements: object())
    monkeypatch.setattr(services, "run_line", fake_run_line)
    run = TestRun.objects.create(flow_version=version, inputs={"question": "hi"})
    services.execute_test_run(str(run.pk))

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED, run.error
    (connections_given,) = given
    assert list(connections_given) == ["used_openai"]
    assert connections_given["used_openai"]["value"]["api_key"] == OPENAI_KEY


@pytest.mark.integration
def test_promptflow_validates_a_flow_with_its_connection_given_without_secrets(
    open_ai_connection, import_flow, isolated_flow_dirs
):
    """The real validator resolves chat-basic's llm node with the placeholder secret: no secret is needed."""
    version = import_flow("chat-basic")
    assert version.connection_names() == ["open_ai_connection"]
