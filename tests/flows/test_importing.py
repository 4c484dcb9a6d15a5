"""Importing flows: promptflow validates them in the flow runtime; refused flows leave nothing behind."""

import io
import zipfile
from pathlib import Path

import pytest

from flows.importing import FlowImportError, import_folder, import_zip
from flows.models import Flow, FlowVersion

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def _zip_of(folder: Path, prefix: str = "") -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.rglob("*"):
            if path.is_file():
                archive.write(path, prefix + path.relative_to(folder).as_posix())
    buffer.seek(0)
    return buffer


def _left_behind(root: Path) -> list[str]:
    flows = root / "flows"
    return sorted(p.name for p in flows.iterdir()) if flows.exists() else []


@pytest.mark.parametrize(
    ("flow", "expected"),
    [
        ("bad-yaml", ["flow.dag.yaml is not valid YAML (line 5, column 1)", "expected the node content"]),
        ("cycle", ["circular dependency", "['a', 'b']"]),
        ("dangling-reference", ["Node 'echo' references flow input 'missing_input'"]),
        ("missing-source", ["Tool file 'does_not_exist.py' can not be found", "node 'echo'"]),
    ],
)
def test_it_refuses_each_invalid_flow_with_promptflows_message(
    flow, expected, fixture_flows, flow_runtime, isolated_flow_dirs
):
    """Each broken sample is refused with promptflow's specific message, and nothing is stored."""
    with pytest.raises(FlowImportError) as caught:
        import_folder(fixture_flows / "invalid" / flow, flow, None)
    text = str(caught.value)
    for fragment in expected:
        assert fragment in text
    assert not Flow.objects.exists()
    assert _left_behind(isolated_flow_dirs) == []


def test_it_names_the_node_and_line_of_a_node_error(fixture_flows, flow_runtime, isolated_flow_dirs):
    """The error for a node points at the node and its line in flow.dag.yaml."""
    with pytest.raises(FlowImportError) as caught:
        import_folder(fixture_flows / "invalid" / "missing-source", "missing-source", None)
    assert caught.value.node == "echo"
    assert caught.value.line == 9
    assert caught.value.file == "flow.dag.yaml"
    assert str(caught.value).startswith("flow.dag.yaml, line 9, node 'echo': ")


def test_it_names_the_cycle_nodes_line(fixture_flows, flow_runtime, isolated_flow_dirs):
    """A cycle is reported at the first node in it."""
    with pytest.raises(FlowImportError) as caught:
        import_folder(fixture_flows / "invalid" / "cycle", "cycle", None)
    assert caught.value.node == "a"
    assert caught.value.line == 9


def test_it_parses_inputs_outputs_nodes_and_connections(import_flow, isolated_flow_dirs):
    """A valid import records what promptflow parsed: typed inputs, outputs, nodes, connections."""
    version = import_flow("chat-basic")
    assert version.version == 1
    assert version.inputs["question"]["is_chat_input"] is True
    assert version.inputs["question"]["default"] == "What is prompt flow?"
    assert version.inputs["chat_history"]["type"] == "list"
    assert version.chat_input == "question"
    assert version.chat_output == "answer"
    assert version.chat_history == "chat_history"
    assert [n["name"] for n in version.nodes] == ["chat"]
    assert version.nodes[0]["type"] == "llm"
    assert version.connections == [
        {
            "name": "open_ai_connection",
            "types": ["OpenAIConnection", "AzureOpenAIConnection", "ServerlessConnection"],
            "nodes": ["chat"],
        }
    ]
    assert "promptflow-tools" in version.requirements


def test_it_records_dependencies_between_nodes(import_flow, isolated_flow_dirs):
    version = import_flow("web-classification-offline")
    nodes = {n["name"]: n for n in version.nodes}
    assert nodes["classify"]["depends_on"] == ["classify_prompt", "fetch_url_parts"]
    assert nodes["fetch_url_parts"]["flow_inputs"] == ["url"]
    assert set(version.outputs) == {"category", "evidence", "location"}
    assert version.is_chat is False


def test_it_makes_a_new_immutable_version_for_every_import(import_flow, isolated_flow_dirs):
    """Importing the same name again adds a version; identical content shares one read-only snapshot."""
    first = import_flow("chat-stream-offline")
    second = import_flow("chat-stream-offline")
    assert (first.version, second.version) == (1, 2)
    assert first.content_hash == second.content_hash
    assert _left_behind(isolated_flow_dirs) == [first.content_hash]
    snapshot_file = first.snapshot_dir / "reply.py"
    assert snapshot_file.stat().st_mode & 0o222 == 0


def test_it_imports_a_zip_with_the_flow_in_a_top_folder(fixture_flows, flow_runtime, isolated_flow_dirs):
    upload = _zip_of(fixture_flows / "web-classification-offline", prefix="web-classification/")
    version = import_zip(upload, "web-zip", None, source_detail="web.zip")
    assert version.flow.name == "web-zip"
    assert (version.snapshot_dir / "flow.dag.yaml").is_file()
    assert version.source == "upload"


def test_it_refuses_a_zip_that_escapes_its_folder(flow_runtime, isolated_flow_dirs):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil.py", "print('x')")
        archive.writestr("flow.dag.yaml", "inputs: {}\n")
    buffer.seek(0)
    with pytest.raises(FlowImportError, match=r"unsafe path: \.\./evil\.py"):
        import_zip(buffer, "evil", None)
    assert not FlowVersion.objects.exists()
    assert _left_behind(isolated_flow_dirs) == []


def test_it_refuses_a_zip_without_a_flow_file(flow_runtime, isolated_flow_dirs):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.md", "hello")
    buffer.seek(0)
    with pytest.raises(FlowImportError, match=r"No flow.dag.yaml found"):
        import_zip(buffer, "empty", None)


def test_it_refuses_a_file_that_is_not_a_zip(flow_runtime, isolated_flow_dirs):
    with pytest.raises(FlowImportError, match="not a zip archive"):
        import_zip(io.BytesIO(b"plain text"), "nozip", None)


def test_it_refuses_a_bad_flow_name(import_flow, isolated_flow_dirs):
    with pytest.raises(FlowImportError, match="must start with a letter"):
        import_flow("chat-stream-offline", as_name="1 bad name")
    assert not Flow.objects.exists()


def test_it_builds_a_layer_for_a_flows_own_requirements(import_flow, isolated_flow_dirs):
    """with-requirements needs python-slugify: its environment is the base runtime plus a layer."""
    version = import_flow("with-requirements")
    assert version.requirements.strip() == "python-slugify==8.0.4"
    assert version.environment.startswith("base-") and version.environment.count("-") >= 3
