"""The requirements policy: each line a requirement by name; other package sources only when an admin allows them."""

from pathlib import Path

import pytest

from runtime import environments
from runtime.environments import EnvironmentBuildError, ensure_flow_environment
from runtime.requirements_policy import (
    find_problems,
    requirement_problems,
    runtime_provided,
    without_runtime_provided,
)

ACCEPTED = [
    "requests",
    "requests==2.31.0",
    "Requests_OAuthlib >= 1.3, < 2",
    "requests[socks,security]~=2.31",
    'requests; python_version >= "3.8"',
    "requests[socks] >=2.31 ; sys_platform == 'linux' and python_version < '4'",
    "zope.interface",
    "foo (>=1.0)",
    "python-slugify==8.0.4  # comment after whitespace",
    "# a comment line",
    "   ",
    "",
]

# (line, fragment of the reason), refused whatever allow_sources says.
ALWAYS_REFUSED = [
    ("-r /proc/self/environ", "options that read other files are not allowed (-r, -c)"),
    ("--requirement=/etc/passwd", "options that read other files are not allowed (-r, -c)"),
    ("-r/proc/self/environ", "options that read other files are not allowed (-r, -c)"),
    ("--requirem /proc/self/environ", "options that read other files are not allowed (-r, -c)"),
    ("-c constraints.txt", "options that read other files are not allowed (-r, -c)"),
    ("--constraint /etc/hosts", "options that read other files are not allowed (-r, -c)"),
    ("-i https://mirror.example/simple -r /proc/self/environ", "options that read other files"),
    ("./local-package", "local paths, archives and file: URLs are not allowed"),
    ("/tmp/package", "local paths, archives and file: URLs are not allowed"),
    ("~/package", "local paths, archives and file: URLs are not allowed"),
    ("sub/package", "local paths, archives and file: URLs are not allowed"),
    ("package.whl", "local paths, archives and file: URLs are not allowed"),
    ("package-1.0.tar.gz", "local paths, archives and file: URLs are not allowed"),
    ("file:///etc/passwd", "local paths, archives and file: URLs are not allowed"),
    ("requests==2.31 --hash=sha256:0123abcd", "options after a requirement are not allowed"),
    ("requests --config-settings=x=y", "options after a requirement are not allowed"),
    ("--hash=sha256:0123abcd", "option '--hash' is not allowed"),
    ("--global-option=--verbose", "option '--global-option' is not allowed"),
    ("--use-feature=truststore", "option '--use-feature' is not allowed"),
    ("--requ /proc/self/environ", "option '--requ' is not allowed"),
    ("requests \\", "backslashes are not allowed"),
    ("requests\\ # hidden continuation", "backslashes are not allowed"),
    ("https://example.com/${DJANGO_SECRET_KEY}.whl", "environment variable references"),
    ("requests # ${HOME}", "environment variable references"),
    ("requests==", "not a requirement by name"),
    ("!!!", "not a requirement by name"),
]

# Refused by default, accepted when an admin allows other package sources.
SOURCES = [
    "--index-url https://mirror.example/simple",
    "-i https://mirror.example/simple",
    "--extra-index-url=https://mirror.example/simple",
    "--find-links https://mirror.example/wheels/",
    "--trusted-host mirror.example",
    "--pre",
    "--no-binary :all:",
    "--only-binary=:all:",
    "--prefer-binary",
    "--no-index",
    "git+https://github.com/owner/repo@v1.0#egg=repo",
    "https://example.com/packages/pkg-1.0-py3-none-any.whl",
    "pkg @ https://example.com/packages/pkg-1.0-py3-none-any.whl",
    "pkg @ git+https://github.com/owner/repo@v1.0",
    "-e git+https://github.com/owner/repo#egg=repo",
    "--editable=git+https://github.com/owner/repo#egg=repo",
]

# Still refused with allow_sources: local or non-http sources.
REFUSED_EVEN_WITH_SOURCES = [
    ("-e .", "local paths, archives and file: URLs are not allowed"),
    ("--editable ./pkg", "local paths, archives and file: URLs are not allowed"),
    ("--find-links /tmp/wheels", "local paths, archives and file: URLs are not allowed"),
    ("--index-url file:///srv/index", "local paths, archives and file: URLs are not allowed"),
    ("pkg @ file:///etc/passwd", "local paths, archives and file: URLs are not allowed"),
    ("git+file:///srv/repo", "local paths, archives and file: URLs are not allowed"),
    ("-e git+ssh://git@github.com/owner/repo#egg=repo", "URL scheme 'git+ssh' is not allowed"),
    ("git://github.com/owner/repo", "URL scheme 'git' is not allowed"),
    ("--index-url", "needs a value"),
    ("--trusted-host https://mirror.example/", "--trusted-host takes a host name"),
]


@pytest.mark.parametrize("line", ACCEPTED)
def test_it_accepts_requirements_by_name_with_extras_specifiers_and_markers(line):
    assert requirement_problems(line) == []
    assert requirement_problems(line, allow_sources=True) == []


@pytest.mark.parametrize(("line", "reason"), ALWAYS_REFUSED)
def test_it_refuses_each_form_whatever_the_setting(line, reason):
    for allow_sources in (False, True):
        problems = requirement_problems(f"requests\n{line}\n", allow_sources=allow_sources)
        assert len(problems) == 1, problems
        assert problems[0].startswith("requirements.txt line 2: ")
        assert reason in problems[0]


@pytest.mark.parametrize("line", SOURCES)
def test_it_refuses_other_package_sources_unless_an_admin_allows_them(line):
    problems = requirement_problems(f"# first\n\n{line}")
    assert len(problems) == 1, problems
    assert problems[0].startswith("requirements.txt line 3: ")
    assert "FLOWDEPLOY_ALLOW_REQUIREMENT_SOURCES" in problems[0]
    assert requirement_problems(line, allow_sources=True) == []


@pytest.mark.parametrize(("line", "reason"), REFUSED_EVEN_WITH_SOURCES)
def test_it_refuses_local_and_non_http_sources_even_when_sources_are_allowed(line, reason):
    problems = requirement_problems(line, allow_sources=True)
    assert len(problems) == 1, problems
    assert reason in problems[0]


def test_it_names_the_file_the_line_number_and_the_line():
    text = "requests==2.31.0\n# comment\n-r /proc/self/environ\npyyaml\n--index-url https://evil.example/simple\n"
    assert requirement_problems(text) == [
        "requirements.txt line 3: '-r /proc/self/environ': options that read other files are not allowed "
        "(-r, -c); list the requirements in this file",
        "requirements.txt line 5: '--index-url https://evil.example/simple': option '--index-url' is not allowed: "
        "packages come from the package index only (an administrator can allow other sources with "
        "FLOWDEPLOY_ALLOW_REQUIREMENT_SOURCES)",
    ]
    problems = find_problems(text, filename="deps/reqs.txt")
    assert [(p.filename, p.line_number, p.line) for p in problems] == [
        ("deps/reqs.txt", 3, "-r /proc/self/environ"),
        ("deps/reqs.txt", 5, "--index-url https://evil.example/simple"),
    ]


def test_it_counts_lines_as_pip_does():
    """pip splits with str.splitlines(), so a form feed or a lone CR starts a line for it, and for the policy."""
    problems = find_problems("requests\r-r /proc/self/environ\x0c-e .")
    assert [p.line_number for p in problems] == [2, 3]


def test_it_shortens_a_long_line_in_the_message():
    problem = requirement_problems("git+https://example.com/" + "x" * 500)[0]
    assert len(problem) < 400 and "...'" in problem


def test_the_environment_builder_refuses_before_building_anything(tmp_path: Path, monkeypatch):
    """The second guard: ensure_flow_environment refuses without building the base or running pip."""

    def no_build(*args, **kwargs):
        raise AssertionError("nothing may be built for refused requirements")

    monkeypatch.setattr(environments, "ensure_base", no_build)
    monkeypatch.setattr(environments.subprocess, "run", no_build)
    with pytest.raises(EnvironmentBuildError) as caught:
        ensure_flow_environment(tmp_path, "requests\n-r /proc/self/environ\n")
    assert "requirements.txt line 2: '-r /proc/self/environ'" in str(caught.value)
    with pytest.raises(EnvironmentBuildError) as caught:
        ensure_flow_environment(tmp_path, "git+https://github.com/owner/repo#egg=repo\n")
    assert "FLOWDEPLOY_ALLOW_REQUIREMENT_SOURCES" in str(caught.value)
    assert not any(tmp_path.iterdir())


# promptflow's own packages, as promptflow's examples list them: the flow runtime provides them.
PROVIDED = [
    ("promptflow[azure]>=1.7.0", "promptflow", "1.18.5", ("azure",)),
    ("promptflow", "promptflow", "1.18.5", ()),
    ("promptflow-tools", "promptflow-tools", "1.6.1", ()),
    ("promptflow-core>=1.0", "promptflow-core", "1.18.5", ()),
    ("PromptFlow_DevKit ~= 1.18", "promptflow-devkit", "1.18.5", ()),
    ("promptflow-tracing==1.18.5  # pinned", "promptflow-tracing", "1.18.5", ()),
    ("promptflow[azure,executable]", "promptflow", "1.18.5", ("azure", "executable")),
    ("promptflow-azure", "promptflow-azure", "1.18.5", ()),
]


@pytest.mark.parametrize(("line", "name", "version", "extras"), PROVIDED)
def test_it_lets_the_runtime_provide_promptflow(line, name, version, extras):
    assert requirement_problems(line) == []
    [provided] = runtime_provided(f"# deps\n{line}\nbs4\n")
    assert (provided.line_number, provided.name, provided.version, provided.extras) == (2, name, version, extras)
    assert without_runtime_provided(f"# deps\n{line}\nbs4\n").splitlines() == ["# deps", "bs4"]


def test_it_notes_what_the_runtime_leaves_out():
    notes = [p.note() for p in runtime_provided("promptflow[azure]>=1.7.0\npromptflow-tools\npromptflow-azure\n")]
    assert notes == [
        "provided by the flow runtime (promptflow 1.18.5); the [azure] extra is not installed: promptflow-azure "
        "works with an Azure AI workspace (remote runs, workspace connections), which running and deploying a flow "
        "here does not use.",
        "provided by the flow runtime (promptflow-tools 1.6.1).",
        "not installed: promptflow-azure works with an Azure AI workspace (remote runs, workspace connections), "
        "which running and deploying a flow here does not use.",
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("promptflow==1.0.0", "flows run on the flow runtime's promptflow 1.18.5, which ==1.0.0 excludes"),
        ("promptflow-tools<1.0", "flows run on the flow runtime's promptflow-tools 1.6.1, which <1.0 excludes"),
        ("promptflow-core>=2", "flows run on the flow runtime's promptflow-core 1.18.5, which >=2 excludes"),
        ("promptflow @ https://example.com/promptflow-1.0-py3-none-any.whl", "promptflow comes with the flow runtime"),
    ],
)
def test_it_refuses_a_promptflow_version_the_runtime_cannot_meet(line, reason):
    [problem] = requirement_problems(f"bs4\n{line}\n", allow_sources=True)
    assert problem.startswith(f"requirements.txt line 2: {line!r}: {reason}")
    assert runtime_provided(line) == []


def test_it_skips_a_promptflow_line_whose_marker_excludes_this_python():
    assert requirement_problems('promptflow==1.0.0; python_version < "3.0"') == []
    assert runtime_provided('promptflow==1.0.0; python_version < "3.0"') == []
    assert without_runtime_provided('promptflow==1.0.0; python_version < "3.0"') == ""
