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

Plain Python, no Django: the importer and the environment builder both call it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement

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
