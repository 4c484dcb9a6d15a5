"""Which environment variables a deployment may give its instances.

An instance is the flow's python, started by gunicorn with promptflow's serving app, and the
deployment's variables are added to the environment Flowdeploy prepares for it. So the rule keeps
out every name that changes how the process starts or what it trusts, and every name Flowdeploy
or promptflow sets for it:

- the name is ``^[A-Za-z_][A-Za-z0-9_]{0,127}$``;
- refused (compared case-insensitively): ``LD_*``, ``GCONV_PATH``, ``GLIBC_TUNABLES`` (the dynamic
  loader); ``PYTHON*`` (the interpreter: PYTHONPATH, PYTHONHOME, PYTHONSTARTUP, PYTHONWARNINGS, ...);
  ``PATH``, ``HOME``, ``VIRTUAL_ENV``, ``TMPDIR``, ``TMP``, ``TEMP`` (where the process finds programs
  and writes files); ``NO_PROXY`` (kept to loopback, so the instance reaches the studio's connection
  provider and answers the gateway directly, never through a proxy); ``PF_*`` and ``PROMPTFLOW_*``
  (promptflow's home, connections, connection provider, Jinja sandbox and serving settings; the
  selected outputs are the deployment's ``selected_outputs``), except ``PROMPTFLOW_RUN_MODE``, which
  Azure's deployment YAML sets and promptflow-core does not read; ``GUNICORN_*`` (the server's own
  command line: bind address, config file); ``FLOWDEPLOY_*``, ``DJANGO_*`` (the studio's settings);
  ``APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED`` and ``APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL``
  (set by Flowdeploy so instances do not call Azure Monitor);
- allowed, on purpose: ``LANG``, ``LC_*`` (locale only), ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``
  and ``SSL_CERT_FILE``, ``SSL_CERT_DIR``, ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` (a corporate proxy
  and its certificate authority; they change only how the flow's own outgoing calls travel, which its
  code controls anyway), and promptflow's ``<CONNECTION>_<FIELD>`` connection overrides;
- values are strings without NUL bytes, at most 32 KiB (UTF-8) each; at most 100 variables.

Plain Python, no Django: endpoints/services.py turns the messages into a ValidationError on the
``environment_variables`` field, for the wizard, the API and the CLI alike.
"""

from __future__ import annotations

import re
from typing import Any

FIELD = "environment_variables"
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_VARIABLES = 100
MAX_VALUE_BYTES = 32 * 1024

LOADER = "it changes how the dynamic loader starts the instance"
INTERPRETER = "it changes how Python starts in the instance"
FILES = "Flowdeploy sets where the instance finds programs and writes files"
PROXY = "Flowdeploy keeps the instance's loopback calls (the studio's connection provider) away from proxies"
PROMPTFLOW = "it changes promptflow's home, connections or serving settings, which Flowdeploy sets"
SERVER = "it changes the instance's server (gunicorn) command line"
STUDIO = "it is one of the studio's own settings"
MONITOR = "Flowdeploy sets it so instances do not call Azure Monitor"

# (prefix, reason), matched against the upper-cased name.
REFUSED_PREFIXES = (
    ("LD_", LOADER),
    ("PYTHON", INTERPRETER),
    ("PF_", PROMPTFLOW),
    ("PROMPTFLOW_", PROMPTFLOW),
    ("GUNICORN_", SERVER),
    ("FLOWDEPLOY_", STUDIO),
    ("DJANGO_", STUDIO),
)
REFUSED_NAMES = {
    "GCONV_PATH": LOADER,
    "GLIBC_TUNABLES": LOADER,
    "PATH": FILES,
    "HOME": FILES,
    "VIRTUAL_ENV": FILES,
    "TMPDIR": FILES,
    "TMP": FILES,
    "TEMP": FILES,
    "NO_PROXY": PROXY,
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": MONITOR,
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": MONITOR,
}
# Names under a refused prefix that are allowed, and why.
ALLOWED_NAMES = {
    "PROMPTFLOW_RUN_MODE": "Azure's deployment YAML sets it to 'serving'; promptflow-core does not read it",
}
HINTS = {
    "PROMPTFLOW_RESPONSE_INCLUDED_FIELDS": " Choose the outputs with selected_outputs instead.",
}


def name_problem(name: str) -> str | None:
    """Why a deployment may not set this variable, or None."""
    if not NAME_RE.match(name):
        shown = name if len(name) <= 60 else name[:57] + "..."
        return (
            f"Environment variable name {shown!r} is not allowed: use letters, digits and '_', "
            "not starting with a digit (at most 128 characters)."
        )
    upper = name.upper()
    if upper in ALLOWED_NAMES:
        return None
    reason = REFUSED_NAMES.get(upper)
    if reason is None:
        reason = next((why for prefix, why in REFUSED_PREFIXES if upper.startswith(prefix)), None)
    if reason is None:
        return None
    return f"Environment variable {name!r} is not allowed: {reason}.{HINTS.get(upper, '')}"


def environment_variable_problems(values: Any) -> list[str]:
    """Every reason the deployment's environment variables are refused; [] when they are fine."""
    if values in (None, ""):
        return []
    if not isinstance(values, dict):
        return ["Environment variables must be NAME: value pairs."]
    if len(values) > MAX_VARIABLES:
        return [f"A deployment may set at most {MAX_VARIABLES} environment variables, not {len(values)}."]
    problems = []
    for name, value in values.items():
        if not isinstance(name, str):
            problems.append(f"Environment variable name {name!r} must be a string.")
            continue
        problem = name_problem(name)
        if problem:
            problems.append(problem)
            continue
        if not isinstance(value, str):
            problems.append(f"Environment variable {name!r}: the value must be a string, not {type(value).__name__}.")
        elif "\0" in value:
            problems.append(f"Environment variable {name!r}: the value contains a NUL byte.")
        elif not _encodable(value):
            problems.append(f"Environment variable {name!r}: the value is not valid text (a lone surrogate).")
        elif len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            problems.append(f"Environment variable {name!r}: the value is longer than {MAX_VALUE_BYTES // 1024} KiB.")
    return problems


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
