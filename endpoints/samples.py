"""The Consume tab's code samples: one template per language (templates/endpoints/samples/), filled with
the endpoint's scoring URL, the flow's real input names with example values and a placeholder for the
key, then highlighted with Pygments.

Every value reaches a template already written as a literal of its language (quotes and escapes
included), so the templates escape nothing themselves and are rendered with autoescape off.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name

from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

from endpoints.models import AuthType, Deployment, Endpoint
from flows.models import FlowVersion

KEY_ENV = "FLOWDEPLOY_API_KEY"
TOKEN_ENV = "FLOWDEPLOY_API_TOKEN"
KEY_PLACEHOLDER = "<your-api-key>"
TOKEN_PLACEHOLDER = "<your-api-token>"

# Pygments' CSS for this class is in static/endpoints/consume.css (HtmlFormatter().get_style_defs()).
CSS_CLASS = "highlight"

# The example value of an input without a default, by promptflow type; a string gets "<the_NAME>".
PLACEHOLDERS: dict[str, Any] = {"int": 0, "double": 0.0, "bool": False, "list": [], "object": {}}


@dataclass(frozen=True)
class Sample:
    language: str
    label: str
    filename: str
    source: str
    highlighted: SafeString


def example_inputs(flow_version: FlowVersion) -> dict[str, Any]:
    """The samples' request body: every flow input under its real name, with the flow's default as the
    example value, or a placeholder of the input's type when it has none; a chat history is empty."""
    example = {}
    for name, spec in flow_version.inputs.items():
        spec = spec if isinstance(spec, dict) else {}
        if _is_chat_history(flow_version, name, spec):
            example[name] = []
        elif spec.get("default") is not None:
            example[name] = spec["default"]
        else:
            example[name] = PLACEHOLDERS.get(spec.get("type"), f"<the_{name}>")
    return example


def _is_chat_history(flow_version: FlowVersion, name: str, spec: dict) -> bool:
    if name == flow_version.chat_history or spec.get("is_chat_history"):
        return True
    return name == "chat_history" and spec.get("type") == "list"


def credential_placeholder(endpoint: Endpoint) -> str:
    """What the samples send until the user fills in a key (or a token, for a token-based endpoint)."""
    return TOKEN_PLACEHOLDER if endpoint.auth_type == AuthType.TOKEN else KEY_PLACEHOLDER


def credential_env(endpoint: Endpoint) -> str:
    """The environment variable the samples read the key (or token) from, when it is set."""
    return TOKEN_ENV if endpoint.auth_type == AuthType.TOKEN else KEY_ENV


def render_samples(endpoint: Endpoint, deployment: Deployment, flow_version: FlowVersion) -> list[Sample]:
    """One sample per language, in the order the Consume tab shows them."""
    body = example_inputs(flow_version)
    url = endpoint.scoring_uri
    token = endpoint.auth_type == AuthType.TOKEN
    placeholder = credential_placeholder(endpoint)
    comments = {  # plain text for one-line comments
        "endpoint_name": _one_line(endpoint.name),
        "deployment_name": _one_line(deployment.name),
        "flow_name": _one_line(f"{flow_version.flow.name} version {flow_version.version}"),
        "where": "a token from the Consume tab (it expires after an hour)"
        if token
        else "the primary or secondary key from the Consume tab",
        "env": credential_env(endpoint),
        "placeholder_text": placeholder,
    }
    samples = []
    for language in LANGUAGES:
        literals = {
            "url": language.string(url),
            "deployment": language.string(deployment.name),
            "placeholder": language.string(placeholder),
            "body": language.body(body),
        }
        source = render_to_string(f"endpoints/samples/{language.template}", {**comments, **literals}).strip() + "\n"
        html = highlight(source, get_lexer_by_name(language.lexer), HtmlFormatter(cssclass=CSS_CLASS))
        samples.append(Sample(language.id, language.label, language.filename, source, mark_safe(html)))
    return samples


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --- literals of each language ---------------------------------------------------------------------


def python_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid Python string literal


def python_literal(value: Any, indent: int = 0) -> str:
    """A Python expression for a JSON value: True, False and None where JSON says true, false and null."""
    pad, end = "    " * (indent + 1), "    " * indent
    if isinstance(value, dict) and value:
        items = [f"{pad}{python_string(str(k))}: {python_literal(v, indent + 1)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + f"\n{end}}}"
    if isinstance(value, list) and value:
        items = [f"{pad}{python_literal(v, indent + 1)}," for v in value]
        return "[\n" + "\n".join(items) + f"\n{end}]"
    if isinstance(value, str):
        return python_string(value)
    if value is None or isinstance(value, bool):
        return repr(value)
    return json.dumps(value)  # numbers, {} and []


def js_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def csharp_string(value: str) -> str:
    """A regular C# string literal."""
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}
    return '"' + "".join(escapes.get(c, c if c.isprintable() else f"\\u{ord(c):04x}") for c in value) + '"'


def csharp_verbatim(value: str) -> str:
    """A C# verbatim string literal (@"..."): line breaks stay, a double quote is written twice."""
    return '@"' + value.replace('"', '""') + '"'


def r_string(value: str) -> str:
    """An R string literal in double quotes; line breaks inside it stay as they are."""
    escapes = {"\\": "\\\\", '"': '\\"', "\r": "\\r", "\t": "\\t"}
    return '"' + "".join(escapes.get(c, c) for c in value) + '"'


def js_body(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)  # JSON is a JavaScript literal


# C# and R get ASCII-only JSON: right whatever encoding the source file is read in (Windows).
def csharp_body(value: Any) -> str:
    """Indented like the statement it is in (csharp.cs.txt): JSON allows whitespace between its tokens,
    and its line breaks are only there, since a JSON string writes a line break as \\n."""
    return csharp_verbatim(json.dumps(value, indent=4).replace("\n", "\n" + " " * 16))


def r_body(value: Any) -> str:
    return r_string(json.dumps(value, indent=2))


def shell_body(value: Any) -> str:
    return shlex.quote(json.dumps(value, indent=2, ensure_ascii=False))


@dataclass(frozen=True)
class Language:
    id: str
    label: str
    template: str
    filename: str
    lexer: str
    string: Callable[[str], str]  # a string literal of the language
    body: Callable[[Any], str]  # the example inputs as a literal of the language


LANGUAGES = (
    Language("python", "Python", "python.py.txt", "score.py", "python", python_string, python_literal),
    Language(
        "python_requests",
        "Python (requests)",
        "python_requests.py.txt",
        "score_requests.py",
        "python",
        python_string,
        python_literal,
    ),
    Language("javascript", "JavaScript", "javascript.js.txt", "score.js", "javascript", js_string, js_body),
    Language("csharp", "C#", "csharp.cs.txt", "Program.cs", "csharp", csharp_string, csharp_body),
    Language("curl", "curl", "curl.sh.txt", "score.sh", "bash", shlex.quote, shell_body),
    Language("r", "R", "r.R.txt", "score.R", "r", r_string, r_body),
)
