"""promptflow's own examples import and run: their requirements name promptflow, and one uses additional_includes.

The fixtures are copies of examples/flows/standard/{web-classification,flow-with-additional-includes,maths-to-code}
from microsoft/promptflow, adapted only where noted: their llm nodes use the `open_ai_connection` the tests point
at a local OpenAI-compatible server, flow-with-additional-includes' requirements.txt drops the
`--extra-index-url` of promptflow's test feed (an option only an administrator may allow) and names `bs4`, which
the tool it includes from web-classification imports.
"""

import io
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from flows import services
from flows.importing import FlowImportError, import_folder, import_zip
from flows.models import Flow, FlowVersion, RunStatus
from runtime.environments import environment_key

pytestmark = [pytest.mark.django_db, pytest.mark.integration]

INCLUDED = [
    "classify_with_llm.jinja2",
    "convert_to_dict.py",
    "fetch_text_content_from_url.py",
    "prepare_examples.py",
    "summarize_text_content.jinja2",
    "summarize_text_content__variant_1.jinja2",
]
# Nothing listens on the discard port: the fetch node answers "No available content" at once, without a network.
UNREACHABLE_URL = "http://127.0.0.1:9/"


def _zip_of(folders: dict[str, Path]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for prefix, folder in folders.items():
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")
    buffer.seek(0)
    return buffer


def _nothing_stored(root: Path) -> bool:
    flows = root / "flows"
    leftovers = sorted(p.name for p in flows.iterdir()) if flows.exists() else []
    return leftovers == [] and not Flow.objects.exists()


def _run(version: FlowVersion, inputs: dict):
    run = services.start_test_run(version, inputs, None)
    services.execute_test_run(str(run.pk))
    run.refresh_from_db()
    return run


def test_web_classification_imports_with_promptflow_in_its_requirements(import_flow, isolated_flow_dirs):
    """requirements.txt is `promptflow[azure]>=1.7.0`, `promptflow-tools`, `bs4`: the layer holds only bs4."""
    version = import_flow("web-classification")
    assert version.requirements.splitlines() == ["promptflow[azure]>=1.7.0", "promptflow-tools", "bs4"]
    assert version.environment == environment_key("bs4") != environment_key("")
    assert [node["name"] for node in version.nodes][:2] == ["fetch_text_content_from_url", "summarize_text_content"]
    assert version.connection_names() == ["open_ai_connection"]


def test_the_flow_page_says_what_the_runtime_provides(import_flow, isolated_flow_dirs, admin_client):
    import_flow("web-classification")
    html = admin_client.get("/flows/web-classification/").content.decode()
    assert "promptflow[azure]&gt;=1.7.0" in html
    assert "provided by the flow runtime (promptflow 1.18.5); the [azure] extra is not installed" in html
    assert "provided by the flow runtime (promptflow-tools 1.6.1)." in html


def test_it_refuses_a_promptflow_version_the_runtime_cannot_meet(copy_flow, flow_runtime, isolated_flow_dirs):
    folder = copy_flow("web-classification")
    (folder / "requirements.txt").write_text("bs4\npromptflow==1.0.0\n")
    with pytest.raises(FlowImportError) as refused:
        import_folder(folder, "pinned-old", None)
    assert str(refused.value).startswith(
        "requirements.txt, line 2: 'promptflow==1.0.0': flows run on the flow runtime's promptflow 1.18.5, "
        "which ==1.0.0 excludes: remove the line or allow 1.18.5"
    )
    assert _nothing_stored(isolated_flow_dirs)


def test_flow_with_additional_includes_imports_from_a_server_folder_and_runs(
    import_flow, isolated_flow_dirs, open_ai_connection
):
    version = import_flow("flow-with-additional-includes")
    for name in INCLUDED:
        assert (version.snapshot_dir / name).read_bytes() == (
            Path(__file__).parents[1] / "fixtures" / "flows" / "web-classification" / name
        ).read_bytes()
    dag_text = (version.snapshot_dir / "flow.dag.yaml").read_text()
    dag = yaml.safe_load(dag_text)
    assert "additional_includes" not in dag
    original = Path(__file__).parents[1] / "fixtures" / "flows" / "flow-with-additional-includes" / "flow.dag.yaml"
    original_lines = original.read_text().splitlines()
    # Every other line keeps its number, so errors still name the right line.
    assert dag_text.splitlines()[-30:] == original_lines[-30:]
    assert [n["line"] for n in version.nodes] == [
        original_lines.index(f"- name: {n['name']}") + 1 for n in version.nodes
    ]
    run = _run(version, {"url": UNREACHABLE_URL})
    assert run.status == RunStatus.COMPLETED, run.error
    # The local model does not answer JSON, so promptflow's own convert_to_dict falls back to its "None" answer.
    assert run.outputs == {"category": "None", "evidence": "None"}


@pytest.mark.parametrize("name", ["flow-with-additional-includes", "uploaded-includes"])
def test_flow_with_additional_includes_imports_from_a_zip_holding_both_folders(
    name, fixture_flows, flow_runtime, isolated_flow_dirs
):
    upload = _zip_of(
        {
            "web-classification": fixture_flows / "web-classification",
            "flow-with-additional-includes": fixture_flows / "flow-with-additional-includes",
        }
    )
    version = import_zip(upload, name, None)
    assert sorted(p.name for p in version.snapshot_dir.iterdir()) == sorted(
        [*INCLUDED, "flow.dag.yaml", "requirements.txt"]
    )


@pytest.mark.parametrize(
    ("include", "message"),
    [
        ("/etc/hostname", "Additional include '/etc/hostname' is an absolute path"),
        ("../../outside.py", "Additional include '../../outside.py' points outside the zip."),
        ("../web-classification/missing.py", "Additional include '../web-classification/missing.py' was not found"),
        ("..", "Additional include '..' holds the flow folder itself."),
    ],
)
def test_it_refuses_an_include_outside_the_zip_or_missing(
    include, message, fixture_flows, flow_runtime, isolated_flow_dirs, tmp_path
):
    flow = tmp_path / "flow"
    shutil.copytree(fixture_flows / "flow-with-additional-includes", flow)
    dag = flow / "flow.dag.yaml"
    dag.write_text(dag.read_text().replace("- ../web-classification/prepare_examples.py", f"- {include}"))
    upload = _zip_of({"web-classification": fixture_flows / "web-classification", "flow": flow})
    with pytest.raises(FlowImportError) as refused:
        import_zip(upload, "flow", None)
    assert message in str(refused.value)
    assert refused.value.file == "flow.dag.yaml"
    assert refused.value.line == dag.read_text().splitlines().index(f"- {include}") + 1
    assert _nothing_stored(isolated_flow_dirs)


def test_it_refuses_a_server_folders_include_outside_its_parent(
    fixture_flows, flow_runtime, isolated_flow_dirs, tmp_path
):
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "secret.txt").write_text("not for flows")
    flow = tmp_path / "server" / "flows" / "flow"
    shutil.copytree(fixture_flows / "flow-with-additional-includes", flow)
    shutil.copytree(fixture_flows / "web-classification", flow.parent / "web-classification")
    dag = flow / "flow.dag.yaml"
    dag.write_text(dag.read_text().replace("- ../web-classification/prepare_examples.py", "- ../../secret.txt"))
    with pytest.raises(FlowImportError, match=r"'../../secret.txt' points outside the folder's parent"):
        import_folder(flow, "flow", None)
    assert _nothing_stored(isolated_flow_dirs)


def test_maths_to_code_imports_and_runs(import_flow, isolated_flow_dirs, open_ai_connection):
    """langchain and sympy go into the layer; promptflow[azure] and promptflow-tools come from the runtime."""
    version = import_flow("maths-to-code")
    assert version.environment == environment_key("langchain\nsympy\nurllib3>=2.6.0")
    run = _run(version, {"math_question": "What is 6 * 7?"})
    assert run.status == RunStatus.COMPLETED, run.error
    # The local model answers prose, not the JSON the prompt asks for: the example's own fallback.
    assert run.outputs == {"code": "JSONDecodeError", "answer": "JSONDecodeError"}
