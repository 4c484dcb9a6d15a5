"""What a flow's requirements.txt may say before pip reads it.

A flow is untrusted and pip runs on the studio's machine, with the studio's environment, so a
requirements file is a way in: `-r /proc/self/environ` makes pip print every variable it was given,
`${DJANGO_SECRET_KEY}` in a URL sends one to a server, `-e .` or a path installs whatever sits in
the worker's working folder, `--index-url` swaps PyPI for someone else's server.

The rule: every line is a PEP 508 requirement by name (``name[extras] specifiers ; markers``), to be
found on the package index. Refused on every line, whatever the setting:

- options that read other files (``-r``/``--requirement``, ``-c``/``--constraint``);
- local paths and archives (``./pkg``, ``/tmp/x``, ``pkg.whl``) and ``file:`` URLs: pip resolves
  them on the studio's machine, not inside the flow;
- ``${VAR}`` (pip fills it from the studio's environment) and backslashes (line continuations);
- options after a requirement (``--hash``, ``--config-settings``, ``--global-option``) and any other
  pip option not listed below.

With ``allow_sources=True`` (the admin setting ``FLOWDEPLOY_ALLOW_REQUIREMENT_SOURCES``) these are
accepted as well: index options (``-i``/``--index-url``, ``--extra-index-url``, ``--no-index``,
``-f``/``--find-links``, ``--trusted-host``), ``--pre``, ``--no-binary``, ``--only-binary``,
``--prefer-binary``, direct references (``name @ url``), bare URLs, version-control links and
``-e``/``--editable`` with one, as long as every URL is http or https (``git+https://`` and the
other version-control schemes included).

promptflow itself comes with the flow runtime (``runtime/requirements.txt``), as Azure's runtime image
gives it, and a flow cannot replace it: most flows list it anyway (``promptflow[azure]>=1.7.0``,
``promptflow-tools``). A line naming ``promptflow``, ``promptflow-core``, ``promptflow-devkit``,
``promptflow-tracing``, ``promptflow-tools`` or ``promptflow-azure`` is satisfied by the runtime when
the runtime's version meets its specifier (``promptflow`` and ``promptflow-azure`` are released with
``promptflow-devkit`` and carry its version), and is then left out of the flow's layer; it is refused,
naming the line, when the version cannot be met (``promptflow==1.0.0``). Extras of those packages and
``promptflow-azure`` are not installed: ``[azure]`` adds the client that submits runs to an Azure AI
workspace, which running and deploying a flow here never uses. The flow page says so
(``runtime_provided``).

Plain Python, no Django: the importer and the environment builder both call it.
"""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

# pip's own comment rule: '#' at the start of a line or after whitespace.
COMMENT_RE = re.compile(r"(^|\s+)#.*$")
# pip treats a requirement whose name ends like this as a local archive when such a file exists.
ARCHIVE_EXTENSIONS = (
    ".whl",
    ".zip",
    ".tar",
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tbz",
    ".tar.xz",
    ".txz",
    ".tlz",
    ".tar.lz",
    ".tar.lzma",
)
VCS_PREFIXES = ("git+", "hg+", "svn+", "bzr+")
REMOTE_SCHEMES = {"http", "https"} | {f"{vcs}{scheme}" for vcs in VCS_PREFIXES for scheme in ("http", "https")}
LOCAL_SCHEMES = {"file"} | {f"{vcs}file" for vcs in VCS_PREFIXES}

# Every option pip accepts in a requirements file, long form; optparse also takes unique prefixes.
PIP_LONG_OPTIONS = (
    "--index-url",
    "--extra-index-url",
    "--no-index",
    "--constraint",
    "--requirement",
    "--editable",
    "--find-links",
    "--no-binary",
    "--only-binary",
    "--prefer-binary",
    "--require-hashes",
    "--pre",
    "--trusted-host",
    "--use-feature",
    "--global-option",
    "--hash",
    "--config-settings",
)
PIP_SHORT_OPTIONS = {
    "-i": "--index-url",
    "-c": "--constraint",
    "-r": "--requirement",
    "-e": "--editable",
    "-f": "--find-links",
}
FILE_OPTIONS = {"--requirement", "--constraint"}
# Allowed only with allow_sources: options that take a value, then flags.
SOURCE_OPTIONS_WITH_VALUE = {
    "--index-url",
    "--extra-index-url",
    "--find-links",
    "--trusted-host",
    "--editable",
    "--no-binary",
    "--only-binary",
}
SOURCE_FLAGS = {"--no-index", "--pre", "--prefer-binary"}
URL_OPTIONS = {"--index-url", "--extra-index-url", "--find-links", "--editable"}

BASE_REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
# promptflow's own packages: the flow runtime provides them; `promptflow` (the SDK that bundles core, devkit and
# tracing) and promptflow-azure are released together with promptflow-devkit and carry its version.
PROMPTFLOW_PACKAGES = {
    "promptflow": "promptflow-devkit",
    "promptflow-core": "promptflow-core",
    "promptflow-devkit": "promptflow-devkit",
    "promptflow-tracing": "promptflow-tracing",
    "promptflow-tools": "promptflow-tools",
    "promptflow-azure": "promptflow-devkit",
}
NOT_INSTALLED = {"promptflow-azure"}
AZURE_NOTE = (
    "promptflow-azure works with an Azure AI workspace (remote runs, workspace connections), which running and "
    "deploying a flow here does not use"
)

FILE_OPTION_REASON = "options that read other files are not allowed (-r, -c); list the requirements in this file"
INDEX_ONLY = (
    "packages come from the package index only (an administrator can allow other sources with "
    "FLOWDEPLOY_ALLOW_REQUIREMENT_SOURCES)"
)
LOCAL_REASON = "local paths, archives and file: URLs are not allowed: pip would read them on the studio's machine"
MAX_QUOTED = 120


@dataclass(frozen=True)
class RequirementProblem:
    """One refused line: its number (1-based), its text and why."""

    filename: str
    line_number: int
    line: str
    reason: str

    def quoted(self) -> str:
        text = self.line if len(self.line) <= MAX_QUOTED else self.line[: MAX_QUOTED - 3] + "..."
        return repr(text)

    def __str__(self) -> str:
        return f"{self.filename} line {self.line_number}: {self.quoted()}: {self.reason}"


def requirement_problems(text: str, allow_sources: bool = False, filename: str = "requirements.txt") -> list[str]:
    """A message for every line pip must not see, naming the file, the line number and the line."""
    return [str(problem) for problem in find_problems(text, allow_sources, filename)]


def find_problems(
    text: str, allow_sources: bool = False, filename: str = "requirements.txt"
) -> list[RequirementProblem]:
    problems = []
    # pip splits the file with str.splitlines() too, so a line here is a line to pip.
    for number, raw in enumerate(text.splitlines(), 1):
        reason = _line_problem(raw, allow_sources)
        if reason:
            shown = COMMENT_RE.sub("", raw).strip() or raw.strip()
            problems.append(RequirementProblem(filename, number, shown, reason))
    return problems


def _line_problem(raw: str, allow_sources: bool) -> str | None:
    # Checked on the raw line, comments included: what is a comment to us may not be one after
    # normalisation (runtime.environments strips only " #"), and pip expands ${VAR} everywhere.
    if "\\" in raw:
        return "backslashes are not allowed (pip joins a line ending in one with the next)"
    if "${" in raw:
        return "environment variable references (${...}) are not allowed: pip fills them from the studio's environment"
    line = COMMENT_RE.sub("", raw).strip()
    if not line:
        return None
    if line.startswith("-"):
        return _options_problem(line, allow_sources)
    if any(token.startswith("-") for token in line.split(" ")[1:]):
        return "options after a requirement are not allowed (--hash, --config-settings, --global-option)"
    try:
        requirement = Requirement(line)
    except InvalidRequirement as exc:
        return _not_a_name_problem(line, allow_sources, exc)
    if requirement.name.lower().endswith(ARCHIVE_EXTENSIONS):
        return LOCAL_REASON
    if canonicalize_name(requirement.name) in PROMPTFLOW_PACKAGES:
        return _promptflow_problem(requirement)
    if requirement.url is not None:
        if not allow_sources:
            return f"direct references (name @ url) are not allowed: {INDEX_ONLY}"
        return _url_problem(requirement.url)
    return None


def _not_a_name_problem(line: str, allow_sources: bool, exc: InvalidRequirement) -> str | None:
    first = line.split(";", 1)[0].strip()
    scheme = _scheme(first)
    if scheme in LOCAL_SCHEMES:
        return LOCAL_REASON
    if scheme or first.startswith(VCS_PREFIXES):
        if not allow_sources:
            return f"URLs and version-control links are not allowed: {INDEX_ONLY}"
        return _url_problem(first)
    if first.startswith((".", "/", "~")) or "/" in first:
        return LOCAL_REASON
    detail = str(exc).splitlines()[0] if str(exc) else "invalid"
    return f"not a requirement by name (PEP 508: name[extras] specifiers ; markers): {detail}"


def _scheme(value: str) -> str:
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", value)
    return match.group(1).lower() if match else ""


def _url_problem(url: str) -> str | None:
    scheme = _scheme(url)
    if scheme in LOCAL_SCHEMES or not scheme:
        return LOCAL_REASON
    if scheme not in REMOTE_SCHEMES:
        return f"URL scheme {scheme!r} is not allowed: only http and https (also as git+https and the like)"
    if not urlsplit(url.split("+", 1)[-1] if "+" in scheme else url).netloc:
        return "a URL must name a server (http://host/...)"
    return None


def _long_option(token: str) -> str | None:
    """The pip option a token means, as optparse would resolve it (exact name or unique prefix)."""
    name = token.split("=", 1)[0]
    if name in PIP_LONG_OPTIONS:
        return name
    matches = [option for option in PIP_LONG_OPTIONS if option.startswith(name)]
    return matches[0] if len(matches) == 1 else None


def _option_of(token: str) -> str | None:
    if token.startswith("--"):
        return _long_option(token)
    return PIP_SHORT_OPTIONS.get(token[:2])


def _inline_value(token: str) -> str | None:
    """The value written into the option's own token: --index-url=URL, -iURL."""
    if token.startswith("--"):
        return token.split("=", 1)[1] if "=" in token else None
    return token[2:] or None


def _options_problem(line: str, allow_sources: bool) -> str | None:
    try:
        tokens = shlex.split(line)
    except ValueError:
        return "this option line cannot be read (unbalanced quotes)"
    # Reading another file is refused whatever the setting, and said first.
    if any(token.startswith("-") and _option_of(token) in FILE_OPTIONS for token in tokens):
        return FILE_OPTION_REASON
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        option = _option_of(token) if token.startswith("-") and token != "-" else None
        if not token.startswith("-"):
            return f"{token!r} is not an option; a line holds one requirement, or options only"
        if option not in SOURCE_OPTIONS_WITH_VALUE and option not in SOURCE_FLAGS:
            return f"option {token.split('=', 1)[0]!r} is not allowed"
        if not allow_sources:
            return f"option {token.split('=', 1)[0]!r} is not allowed: {INDEX_ONLY}"
        if option in SOURCE_FLAGS:
            continue
        value = _inline_value(token)
        if value is None and index < len(tokens):
            value = tokens[index]
            index += 1
        if not value:
            return f"option {option!r} needs a value"
        if option in URL_OPTIONS:
            problem = _url_problem(value)
            if problem:
                return problem
        if option == "--trusted-host" and not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", value):
            return "--trusted-host takes a host name (host or host:port)"
    return None


# --- promptflow itself comes with the runtime -------------------------------------------------


@functools.cache
def base_pins(base_requirements: Path = BASE_REQUIREMENTS) -> dict[str, Version]:
    """The base runtime's `name==version` pins, by canonical name."""
    pins = {}
    for raw in base_requirements.read_text().splitlines():
        try:
            requirement = Requirement(COMMENT_RE.sub("", raw).strip())
        except InvalidRequirement:
            continue
        specifiers = list(requirement.specifier)
        if len(specifiers) == 1 and specifiers[0].operator == "==":
            try:
                pins[canonicalize_name(requirement.name)] = Version(specifiers[0].version)
            except InvalidVersion:
                continue
    return pins


def runtime_versions() -> dict[str, Version]:
    """The version of each promptflow package the base runtime provides."""
    pins = base_pins()
    return {name: pins[pinned] for name, pinned in PROMPTFLOW_PACKAGES.items() if pinned in pins}


def _applies(requirement: Requirement) -> bool:
    """False when the line's environment marker excludes this interpreter (pip would skip it too)."""
    return requirement.marker is None or requirement.marker.evaluate()


def _promptflow_problem(requirement: Requirement) -> str | None:
    if not _applies(requirement):
        return None
    name = canonicalize_name(requirement.name)
    version = runtime_versions().get(name)
    if requirement.url is not None or version is None:
        return f"{name} comes with the flow runtime and cannot be installed from elsewhere; remove the line"
    if not requirement.specifier.contains(version, prereleases=True):
        return (
            f"flows run on the flow runtime's {name} {version}, which {requirement.specifier} excludes: "
            f"remove the line or allow {version}"
        )
    return None


@dataclass(frozen=True)
class ProvidedLine:
    """A requirements line the flow runtime satisfies itself: it is left out of the flow's layer."""

    line_number: int
    line: str
    name: str
    version: str
    extras: tuple[str, ...]

    def note(self) -> str:
        if self.name in NOT_INSTALLED:
            return f"not installed: {AZURE_NOTE}."
        note = f"provided by the flow runtime ({self.name} {self.version})"
        if self.extras:
            extras = ", ".join(f"[{extra}]" for extra in self.extras)
            reason = AZURE_NOTE if self.extras == ("azure",) else "the runtime's promptflow is used as it is"
            note += f"; the {extras} extra{'s are' if len(self.extras) > 1 else ' is'} not installed: {reason}"
        return note + "."


def runtime_provided(text: str) -> list[ProvidedLine]:
    """The lines naming promptflow that the flow runtime satisfies (see the module's docstring)."""
    provided = []
    versions = runtime_versions()
    for number, raw in enumerate(text.splitlines(), 1):
        requirement = _promptflow_requirement(raw)
        if requirement is None or not _applies(requirement) or _promptflow_problem(requirement):
            continue
        name = canonicalize_name(requirement.name)
        shown = COMMENT_RE.sub("", raw).strip()
        provided.append(ProvidedLine(number, shown, name, str(versions[name]), tuple(sorted(requirement.extras))))
    return provided


def without_runtime_provided(text: str) -> str:
    """The requirements without the lines naming promptflow: what pip installs into a flow's layer.

    Call it on requirements that passed find_problems: an unsatisfiable promptflow line is refused there.
    """
    return "\n".join(line for line in text.splitlines() if _promptflow_requirement(line) is None)


def _promptflow_requirement(raw: str) -> Requirement | None:
    line = COMMENT_RE.sub("", raw).strip()
    if not line or line.startswith("-") or "\\" in raw or "${" in raw:
        return None
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return None
    return requirement if canonicalize_name(requirement.name) in PROMPTFLOW_PACKAGES else None
