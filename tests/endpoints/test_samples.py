"""The Consume tab's code samples: the flow's real inputs as example values, escaped right for each
language, and each sample run against a live deployment prints the flow's real answer."""

from __future__ import annotations

import ast
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from endpoints import samples, services
from endpoints.models import AuthType, Deployment, Endpoint
from flows.models import Flow, FlowVersion
from workspace.models import Project

ANSWER = {"category": "Movie", "evidence": "host www.youtube.com matches youtube.com", "location": "LA"}
WEB_INPUTS = {
    "location": {"type": "string", "default": "LA"},
    "url": {"type": "string", "default": "https://www.youtube.com/watch?v=o5ZQyXaAv1g"},
}
TRICKY = 'He said "hi" \\o/\nthen left; it\'s 10 $HOME `id` {braces} é ☃ 🚀\ttab'


# Rows in memory only: a project given, so its default (which reads the database) is never asked for.
PROJECT = Project(name="default")


def _version(inputs: dict, chat_history: str = "", chat_input: str = "") -> FlowVersion:
    flow = Flow(name="web-classification-offline", project=PROJECT)
    return FlowVersion(flow=flow, version=3, inputs=inputs, chat_history=chat_history, chat_input=chat_input)


def _samples(inputs: dict = WEB_INPUTS, auth_type=AuthType.KEY, **version) -> dict[str, samples.Sample]:
    endpoint = Endpoint(name="ep-consume", auth_type=auth_type, project=PROJECT)
    rendered = samples.render_samples(endpoint, Deployment(name="blue", endpoint=endpoint), _version(inputs, **version))
    return {sample.language: sample for sample in rendered}


# --- what Python, JavaScript, curl, C# and R would send, read from the sample text ------------------


def _python_request(source: str) -> dict:
    """Run the standard-library sample with urlopen replaced: the request it would send."""
    sent = {}

    def urlopen(request):
        sent.update(
            method=request.get_method(),
            url=request.full_url,
            headers={name.lower(): value for name, value in request.header_items()},
            body=json.loads(request.data),
        )
        raise SystemExit(0)

    original = urllib.request.urlopen
    urllib.request.urlopen = urlopen
    try:
        with contextlib.suppress(SystemExit):  # the stand-in ends the sample once the request is made
            exec(compile(source, "score.py", "exec"), {"__name__": "__main__"})
    finally:
        urllib.request.urlopen = original
    return sent


def _node_request(source: str, tmp_path: Path) -> dict:
    """Run the JavaScript sample with node, fetch replaced: the request it would send."""
    stub = (
        "globalThis.fetch = async (url, init) => {"
        " console.log(JSON.stringify({url, method: init.method, headers: init.headers, body: init.body}));"
        " return new Response('{}'); };\n"
    )
    script = tmp_path / "score.js"
    script.write_text(stub + source, encoding="utf-8")
    done = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=30, check=True)
    sent = json.loads(done.stdout.split("\n")[0])  # not splitlines(): U+2028 is no line break in JSON
    sent["headers"] = {name.lower(): value for name, value in sent["headers"].items()}
    sent["body"] = json.loads(sent["body"])
    return sent


def _curl_request(source: str, tmp_path: Path) -> dict:
    """Run the curl sample with bash, curl replaced by a function that prints its arguments."""
    script = tmp_path / "score.sh"
    script.write_text("curl() { printf '%s\\0' \"$@\"; }\n" + source, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != samples.KEY_ENV}
    args = subprocess.run(["bash", str(script)], capture_output=True, timeout=30, check=True, env=env).stdout
    args = args.decode("utf-8").split("\0")[:-1]
    sent = {"headers": {}}
    for option, value in itertools.pairwise(args):
        if option == "--request":
            sent["method"] = value
        elif option == "--header":
            name, _, header = value.partition(": ")
            sent["headers"][name.lower()] = header
        elif option == "--data-raw":
            sent["body"] = json.loads(value)
    sent["url"] = next(arg for arg in args if arg.startswith("http"))
    return sent


def _csharp_string(literal: str) -> str:
    return json.loads(literal)  # the samples use only JSON's escapes (backslash, quote, n, r, t, u+hex)


def _csharp_request(source: str) -> dict:
    """Read the C# sample's request: URL, method, headers and body from the statements that set them."""
    string = r'("(?:[^"\\]|\\.)*")'
    body = re.search(r'var requestBody = @"((?:[^"]|"")*)";', source).group(1).replace('""', '"')
    api_key = _csharp_string(re.search(rf"apiKey = {string};", source).group(1))
    scheme = _csharp_string(re.search(rf"new AuthenticationHeaderValue\({string}, apiKey\)", source).group(1))
    content_type = _csharp_string(re.search(rf"new MediaTypeHeaderValue\({string}\)", source).group(1))
    pinned = re.search(rf"content\.Headers\.Add\({string}, {string}\);", source)
    method, url = re.search(rf"client\.(Post)Async\({string}, content\)", source).groups()
    return {
        "method": method.upper(),
        "url": _csharp_string(url),
        "headers": {
            "authorization": f"{scheme} {api_key}",
            "content-type": content_type,
            _csharp_string(pinned.group(1)).lower(): _csharp_string(pinned.group(2)),
        },
        "body": json.loads(body),
    }


def _r_string(literal: str) -> str:
    escapes = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
    return re.sub(r"\\(.)", lambda m: escapes[m.group(1)], literal[1:-1], flags=re.DOTALL)


def _r_request(source: str) -> dict:
    """Read the R sample's request: URL, method, headers and body from the statements that set them."""
    string = r'("(?:[^"\\]|\\.)*")'
    body = _r_string(re.search(rf"request_body <- {string}", source, re.DOTALL).group(1))
    url = _r_string(re.search(rf"url <- {string}", source).group(1))
    api_key = _r_string(re.search(rf"api_key <- Sys\.getenv\(\"\w+\", unset = {string}\)", source).group(1))
    call = re.search(
        r"response <- (POST)\(\s*url,\s*body = request_body,\s*add_headers\((.*?)\),\s*timeout", source, re.S
    )
    headers = {}
    for name, value in re.findall(rf"{string} = (paste\(\"Bearer\", api_key\)|{string[1:-1]})", call.group(2)):
        headers[_r_string(name).lower()] = f"Bearer {api_key}" if value.startswith("paste") else _r_string(value)
    return {"method": call.group(1), "url": url, "headers": headers, "body": json.loads(body)}


# --- example values -------------------------------------------------------------------------------


def test_it_uses_the_flows_input_names_and_defaults():
    """The seed's flow: inputs location and url, each with its default as the example value."""
    assert samples.example_inputs(_version(WEB_INPUTS)) == {
        "location": "LA",
        "url": "https://www.youtube.com/watch?v=o5ZQyXaAv1g",
    }


def test_it_gives_inputs_without_a_default_a_placeholder_of_their_type():
    """A string without a default becomes <the_NAME>; numbers 0, booleans false, lists [] and objects {}."""
    inputs = {
        "url": {"type": "string"},
        "count": {"type": "int"},
        "ratio": {"type": "double"},
        "strict": {"type": "bool"},
        "tags": {"type": "list"},
        "options": {"type": "object"},
        "zero": {"type": "int", "default": 0},
    }
    assert samples.example_inputs(_version(inputs)) == {
        "url": "<the_url>",
        "count": 0,
        "ratio": 0.0,
        "strict": False,
        "tags": [],
        "options": {},
        "zero": 0,
    }


def test_it_sends_a_chat_flow_an_empty_chat_history():
    """The chat history starts empty, whatever its default; the question keeps its default."""
    inputs = {
        "chat_history": {"type": "list", "default": [{"inputs": {"question": "hi"}, "outputs": {"answer": "yo"}}]},
        "question": {"type": "string", "default": "What is prompt flow?", "is_chat_input": True},
    }
    version = _version(inputs, chat_history="chat_history", chat_input="question")
    assert samples.example_inputs(version) == {"chat_history": [], "question": "What is prompt flow?"}


# --- rendering ------------------------------------------------------------------------------------


def test_it_renders_one_highlighted_sample_per_language(settings):
    """Python, Python (requests), JavaScript, C#, curl and R, each with the scoring URL, the deployment
    header and the key placeholder, highlighted by Pygments."""
    settings.FLOWDEPLOY_GATEWAY_URL = "http://gateway.test:8001"
    rendered = _samples()
    assert [(s.label, s.filename) for s in rendered.values()] == [
        ("Python", "score.py"),
        ("Python (requests)", "score_requests.py"),
        ("JavaScript", "score.js"),
        ("C#", "Program.cs"),
        ("curl", "score.sh"),
        ("R", "score.R"),
    ]
    for sample in rendered.values():
        assert "http://gateway.test:8001/endpoints/ep-consume/score" in sample.source, sample.language
        assert "azureml-model-deployment" in sample.source
        assert "observe the endpoint traffic rules" in sample.source
        assert "<your-api-key>" in sample.source
        assert samples.KEY_ENV in sample.source
        assert "{%" not in sample.source and "{{" not in sample.source
        assert sample.highlighted.startswith('<div class="highlight"><pre>')
        assert '<span class="' in sample.highlighted
        assert "&lt;your-api-key&gt;" in sample.highlighted  # Pygments escapes the HTML
    assert 'data = {\n    "location": "LA",\n    "url": "https://www.youtube.com/watch?v=o5ZQyXaAv1g",\n}' in (
        rendered["python"].source
    )


def test_it_says_token_for_a_token_based_endpoint():
    """A token-based endpoint's samples ask for a token, from FLOWDEPLOY_API_TOKEN."""
    for sample in _samples(auth_type=AuthType.TOKEN).values():
        assert "<your-api-token>" in sample.source
        assert samples.TOKEN_ENV in sample.source
        assert "<your-api-key>" not in sample.source


@pytest.mark.parametrize(
    "default",
    [TRICKY, "line one\r\nline two\u2028\u0000end", "'''\"\"\"''' ${x} $(x) \\\\ \\u0041"],
    ids=["quotes-newlines-unicode", "control-characters", "language-escapes"],
)
def test_it_escapes_a_tricky_default_in_every_language(tmp_path, default):
    """Quotes, backslashes, line breaks, shell expansions and non-ASCII text reach the request exactly."""
    inputs = {"location": {"type": "string", "default": default}, "count": {"type": "int", "default": 3}}
    expected = {"location": default, "count": 3}
    rendered = _samples(inputs)
    sources = {language: sample.source for language, sample in rendered.items()}
    assert ast.literal_eval(re.search(r"^data = (.*?)^\n", sources["python_requests"], re.S | re.M).group(1)) == (
        expected
    )
    assert _python_request(sources["python"])["body"] == expected
    assert _node_request(sources["javascript"], tmp_path)["body"] == expected
    assert _curl_request(sources["curl"], tmp_path)["body"] == expected
    assert _csharp_request(sources["csharp"])["body"] == expected
    assert _r_request(sources["r"])["body"] == expected


def test_it_sends_the_same_request_in_every_language(tmp_path, settings):
    """JavaScript, curl, C# and R send what the Python sample sends: POST to the scoring URL with the
    key as a bearer token, JSON content and the deployment pinned (C# and R read from their text)."""
    settings.FLOWDEPLOY_GATEWAY_URL = "http://127.0.0.1:8001"
    sources = {language: sample.source for language, sample in _samples().items()}
    python = _python_request(sources["python"])
    assert python == {
        "method": "POST",
        "url": "http://127.0.0.1:8001/endpoints/ep-consume/score",
        "headers": {
            "content-type": "application/json",
            "authorization": "Bearer <your-api-key>",
            "azureml-model-deployment": "blue",
        },
        "body": {"location": "LA", "url": "https://www.youtube.com/watch?v=o5ZQyXaAv1g"},
    }
    assert _node_request(sources["javascript"], tmp_path) == python
    assert _curl_request(sources["curl"], tmp_path) == python
    assert _csharp_request(sources["csharp"]) == python
    assert _r_request(sources["r"]) == python


def test_it_writes_samples_their_language_accepts(tmp_path):
    """Python compiles, node and bash accept their samples; C# and R are compiled or parsed when a
    compiler or interpreter is installed (the test above checks their request in any case)."""
    sources = {language: sample.source for language, sample in _samples({"q": {"type": "string"}}).items()}
    compile(sources["python"], "score.py", "exec")
    compile(sources["python_requests"], "score_requests.py", "exec")
    checks = {"javascript": ["node", "--check"], "curl": ["bash", "-n"]}
    if shutil.which("Rscript"):
        checks["r"] = ["Rscript", "-e", "invisible(parse(file = commandArgs(TRUE)[1]))", "--args"]
    if shutil.which("mcs"):
        checks["csharp"] = ["mcs", "-target:exe", f"-out:{tmp_path / 'score.exe'}"]
    for language, command in checks.items():
        path = tmp_path / _samples()[language].filename
        path.write_text(sources[language], encoding="utf-8")
        done = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{language}: {done.stderr}"


@pytest.mark.skipif(not shutil.which("dotnet"), reason="no .NET SDK on this machine")
def test_it_writes_a_csharp_sample_that_builds(tmp_path):
    """With a .NET SDK, the C# sample builds as a console program."""
    (tmp_path / "Program.cs").write_text(_samples()["csharp"].source, encoding="utf-8")
    (tmp_path / "Score.csproj").write_text(
        '<Project Sdk="Microsoft.NET.Sdk"><PropertyGroup><OutputType>Exe</OutputType>'
        "<TargetFramework>net8.0</TargetFramework></PropertyGroup></Project>",
        encoding="utf-8",
    )
    done = subprocess.run(["dotnet", "build", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


# --- against a live deployment --------------------------------------------------------------------

RUNNERS = {
    "python": [sys.executable],
    "python_requests": [sys.executable],
    "javascript": ["node"],
    "curl": ["bash"],
}


def _run(sample: samples.Sample, folder: Path, credential: str | None = None, env: dict | None = None):
    """Save the sample as a user would, with the key filled in where the placeholder is, and run it."""
    source = sample.source
    if credential is not None:
        source = source.replace(samples.KEY_PLACEHOLDER, credential).replace(samples.TOKEN_PLACEHOLDER, credential)
    path = folder / sample.filename
    path.write_text(source, encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if k not in (samples.KEY_ENV, samples.TOKEN_ENV)}
    command = [*RUNNERS[sample.language], str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env={**clean, **(env or {})})


def _live_samples(deployment: Deployment) -> dict[str, samples.Sample]:
    endpoint = deployment.endpoint
    return {s.language: s for s in samples.render_samples(endpoint, deployment, deployment.flow_version)}


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_runs_every_sample_against_the_deployment_with_the_key_filled_in(deploy, tmp_path):
    """Python (standard library and requests), JavaScript with node and curl each print the flow's real
    answer once the key is filled in; with a wrong key they print the status and the gateway's error."""
    deployment = deploy("web-classification-offline", endpoint="ep-consume", name="blue")
    rendered = _live_samples(deployment)
    key = services.credentials(deployment.endpoint)["primaryKey"]
    for language in RUNNERS:
        done = _run(rendered[language], tmp_path, credential=key)
        assert done.returncode == 0, f"{language}: {done.stdout}{done.stderr}"
        assert json.loads(done.stdout) == ANSWER, language

        refused = _run(rendered[language], tmp_path, credential="not-the-key")
        assert refused.returncode != 0, language
        output = refused.stdout + refused.stderr
        assert "401" in output, f"{language}: {output}"
        assert "Unauthorized" in output and "The key is not valid for endpoint 'ep-consume'" in output, output


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_reads_the_key_from_the_environment(deploy, tmp_path):
    """Left as rendered, the samples read the key from FLOWDEPLOY_API_KEY when it is set."""
    deployment = deploy("web-classification-offline", endpoint="ep-consume-env", name="green")
    rendered = _live_samples(deployment)
    key = services.credentials(deployment.endpoint)["secondaryKey"]
    for language in RUNNERS:
        done = _run(rendered[language], tmp_path, env={samples.KEY_ENV: key})
        assert done.returncode == 0, f"{language}: {done.stdout}{done.stderr}"
        assert json.loads(done.stdout) == ANSWER, language


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_runs_the_samples_of_a_token_based_endpoint_with_a_token(deploy, tmp_path):
    """A token-based endpoint's samples print the flow's answer with an issued token filled in."""
    deployment = deploy("web-classification-offline", endpoint="ep-consume-token", auth_type=AuthType.TOKEN)
    rendered = _live_samples(deployment)
    token = services.issue_token(deployment.endpoint)["accessToken"]
    for language in RUNNERS:
        done = _run(rendered[language], tmp_path, credential=token)
        assert done.returncode == 0, f"{language}: {done.stdout}{done.stderr}"
        assert json.loads(done.stdout) == ANSWER, language
