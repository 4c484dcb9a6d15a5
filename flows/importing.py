"""Turn a zip, a server folder or a sample into an immutable FlowVersion, or refuse it and store nothing."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import yaml

from django.conf import settings
from django.db import transaction

from flows.execution import IGNORED_IN_SNAPSHOT, RunnerError, flow_environment, validate_flow
from flows.models import FLOW_FILE, Flow, FlowSource, FlowVersion
from runtime.environments import EnvironmentBuildError, environment_key
from runtime.requirements_policy import find_problems
from workspace import audit
from workspace.connection_types import NAME_RE as CONNECTION_NAME_RE
from workspace.connection_types import PROMPTFLOW_MODULE
from workspace.models import Connection

FLOW_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
MAX_FILES = 2000
# What validation gets instead of a connection's secret values: it needs names, types and configs only.
SECRET_PLACEHOLDER = "<secret withheld from validation>"


@dataclass
class FlowImportError(Exception):
    """Why a flow was refused, with the node and line of flow.dag.yaml when promptflow names them."""

    message: str
    code: str = "InvalidFlow"
    node: str | None = None
    line: int | None = None
    file: str | None = None

    def __str__(self) -> str:
        return self.location() + self.message

    def location(self) -> str:
        parts = []
        if self.file and self.line:
            parts.append(f"{self.file}, line {self.line}")
        elif self.file:
            parts.append(self.file)
        if self.node:
            parts.append(f"node '{self.node}'")
        return (", ".join(parts) + ": ") if parts else ""


def check_flow_name(name: str) -> str:
    name = name.strip()
    if not FLOW_NAME_RE.match(name):
        raise FlowImportError(
            "Flow name must start with a letter and use only letters, digits, '-' and '_' (at most 64 characters).",
            code="InvalidName",
        )
    return name


def default_name(text: str) -> str:
    """A valid flow name from a file or folder name: my flow (2).zip -> my-flow-2."""
    stem = re.sub(r"\.zip$", "", Path(text).name, flags=re.IGNORECASE)
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"flow-{cleaned}".rstrip("-")
    return cleaned[:64]


def _staging_dir() -> Path:
    root = Path(settings.FLOWDEPLOY_FLOWS_DIR)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=root))


def _safe_member(name: str) -> PurePosixPath | None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise FlowImportError(f"The zip file contains an unsafe path: {name}", code="UnsafeZip")
    if any(part in IGNORED_IN_SNAPSHOT or part == "__MACOSX" for part in path.parts):
        return None
    return path


def extract_zip(upload: IO[bytes], target: Path) -> None:
    try:
        archive = zipfile.ZipFile(upload)
    except zipfile.BadZipFile:
        raise FlowImportError("The file is not a zip archive.", code="InvalidZip") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_FILES:
            raise FlowImportError(f"The zip file holds more than {MAX_FILES} files.", code="TooLarge")
        if sum(m.file_size for m in members) > settings.FLOWDEPLOY_MAX_UPLOAD_BYTES:
            limit = settings.FLOWDEPLOY_MAX_UPLOAD_BYTES // (1024 * 1024)
            raise FlowImportError(f"The flow unpacks to more than {limit} MB.", code="TooLarge")
        for member in members:
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise FlowImportError(f"The zip file contains a symbolic link: {member.filename}", code="UnsafeZip")
            relative = _safe_member(member.filename)
            if relative is None:
                continue
            destination = target.joinpath(*relative.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, destination.open("wb") as sink:
                shutil.copyfileobj(source, sink)


def copy_folder(source: Path, target: Path) -> None:
    if not source.is_dir():
        raise FlowImportError(f"No folder at {source}.", code="NotFound")
    shutil.copytree(
        source,
        target,
        dirs_exist_ok=True,
        symlinks=False,
        ignore=shutil.ignore_patterns(*IGNORED_IN_SNAPSHOT),
    )


def find_flow_root(folder: Path) -> Path:
    """flow.dag.yaml at the top, or inside the one folder a zip of a folder has."""
    if (folder / FLOW_FILE).is_file():
        return folder
    children = [child for child in folder.iterdir() if not child.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir() and (children[0] / FLOW_FILE).is_file():
        return children[0]
    raise FlowImportError(
        f"No {FLOW_FILE} found. A flow is a folder with {FLOW_FILE} at its top.", code="FlowFileMissing"
    )


def _snapshot_files(folder: Path) -> list[Path]:
    files = []
    for path in folder.rglob("*"):
        if path.is_file() and not IGNORED_IN_SNAPSHOT.intersection(path.relative_to(folder).parts):
            files.append(path)
    return sorted(files)


def content_hash(folder: Path) -> str:
    """A hash of the flow's own files, not of what running it leaves behind (.promptflow, caches)."""
    hasher = hashlib.sha256()
    for path in _snapshot_files(folder):
        hasher.update(path.relative_to(folder).as_posix().encode() + b"\0")
        hasher.update(hashlib.sha256(path.read_bytes()).digest())
    return hasher.hexdigest()


def _read_dag(flow_dir: Path) -> dict:
    """flow.dag.yaml as a dict, or {} when it cannot be read (validation then reports why, with the line)."""
    try:
        data = yaml.safe_load((flow_dir / FLOW_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _requirements_file(flow_dir: Path, dag: dict) -> tuple[str, str]:
    """The name flow.dag.yaml gives the requirements file, and its text ("" when it is absent or outside the flow)."""
    environment = dag.get("environment")
    name = str((environment if isinstance(environment, dict) else {}).get("python_requirements_txt") or "")
    name = name or "requirements.txt"
    path = (flow_dir / name).resolve()
    if not path.is_relative_to(flow_dir.resolve()) or not path.is_file():
        return name, ""
    return name, path.read_text(encoding="utf-8", errors="replace")


def read_requirements(flow_dir: Path) -> str:
    """The flow's requirements, read before promptflow runs so its environment can be built first."""
    return _requirements_file(flow_dir, _read_dag(flow_dir))[1]


def check_requirements(requirements: str, filename: str = "requirements.txt") -> None:
    """Refuse requirements that break the policy (runtime/requirements_policy.py) before pip sees them."""
    problems = find_problems(requirements, settings.FLOWDEPLOY_ALLOW_REQUIREMENT_SOURCES, filename)
    if not problems:
        return
    first, rest = problems[0], problems[1:]
    message = f"{first.quoted()}: {first.reason}"
    message += "".join(f"\nAlso line {p.line_number}: {p.quoted()}: {p.reason}" for p in rest)
    raise FlowImportError(message, code="RequirementsNotAllowed", file=filename, line=first.line_number)


def referenced_connection_names(dag: dict) -> set[str]:
    """Every name the flow's nodes could use as a connection, read from flow.dag.yaml before promptflow runs.

    A node's `connection`, and each literal input that could name one (a python tool's connection input
    is a plain string), in the nodes and their variants. A superset: names that are no connection are ignored.
    """
    nodes = list(dag.get("nodes") or []) if isinstance(dag.get("nodes"), list) else []
    variants_by_node = dag.get("node_variants")
    for variants in (variants_by_node or {}).values() if isinstance(variants_by_node, dict) else []:
        entries = variants.get("variants") if isinstance(variants, dict) else None
        for variant in (entries or {}).values() if isinstance(entries, dict) else []:
            if isinstance(variant, dict):
                nodes.append(variant.get("node"))
    names = set()
    for node in nodes:
        if not isinstance(node, dict):
            continue
        inputs = node.get("inputs")
        candidates = [node.get("connection"), *(inputs.values() if isinstance(inputs, dict) else [])]
        for value in candidates:
            if isinstance(value, str) and CONNECTION_NAME_RE.match(value.strip()):
                names.add(value.strip())
    return names


def validation_connections(names: set[str]) -> dict[str, dict]:
    """The named connections in promptflow's dict format, every secret value replaced by a placeholder.

    Validation resolves each node's tool and connection type; it never calls a provider, so it needs no
    secret, and the flow's code (which validation imports) never sees one.
    """
    connections = {}
    for connection in Connection.objects.filter(name__in=sorted(names)):
        value = {k: v for k, v in connection.configs.items() if v not in (None, "")}
        value.update(dict.fromkeys(connection.secret_keys, SECRET_PLACEHOLDER))
        connections[connection.name] = {
            "type": connection.promptflow_class,
            "name": connection.name,
            "module": PROMPTFLOW_MODULE,
            "value": value,
            "secret_keys": sorted(connection.secret_keys),
        }
    return connections


def validate(flow_dir: Path) -> dict:
    dag = _read_dag(flow_dir)
    requirements_name, requirements = _requirements_file(flow_dir, dag)
    check_requirements(requirements, requirements_name)
    try:
        env = flow_environment(requirements)
    except EnvironmentBuildError as exc:
        raise FlowImportError(str(exc), code="RequirementsFailed", file=requirements_name) from exc
    try:
        verdict = validate_flow(env, flow_dir, validation_connections(referenced_connection_names(dag)))
    except RunnerError as exc:
        raise FlowImportError(str(exc), code="RuntimeFailed") from exc
    if not verdict.get("ok"):
        error = verdict.get("error") or {}
        raise FlowImportError(
            error.get("message", "promptflow refused the flow."),
            code=error.get("code", "InvalidFlow"),
            node=error.get("node"),
            line=error.get("line"),
            file=error.get("file"),
        )
    return verdict["flow"]


def import_folder(
    folder: Path, name: str, user, source: str = FlowSource.FOLDER, source_detail: str = ""
) -> FlowVersion:
    """Import a flow from a folder on the server (a sample, or a path the admin gives)."""
    staging = _staging_dir()
    try:
        copy_folder(folder, staging / "flow")
        return _import_staged(staging, name, user, source, source_detail or str(folder))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def import_zip(upload: IO[bytes], name: str, user, source_detail: str = "") -> FlowVersion:
    staging = _staging_dir()
    try:
        extract_zip(upload, staging / "flow")
        return _import_staged(staging, name, user, FlowSource.UPLOAD, source_detail)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _import_staged(staging: Path, name: str, user, source: str, source_detail: str) -> FlowVersion:
    name = check_flow_name(name)
    (staging / "flow").mkdir(exist_ok=True)
    flow_dir = find_flow_root(staging / "flow")
    description = validate(flow_dir)
    _remove_run_artifacts(flow_dir)
    digest = content_hash(flow_dir)
    snapshot = Path(settings.FLOWDEPLOY_FLOWS_DIR) / digest
    if not snapshot.exists():
        _freeze(flow_dir)
        try:
            flow_dir.rename(snapshot)
        except OSError:
            if not snapshot.exists():  # not a concurrent import of the same content
                raise
    with transaction.atomic():
        flow, _ = Flow.objects.get_or_create(name=name, defaults={"created_by": _user_or_none(user)})
        flow = Flow.objects.select_for_update().get(pk=flow.pk)
        latest = flow.versions.order_by("-version").values_list("version", flat=True).first() or 0
        version = FlowVersion.objects.create(
            flow=flow,
            version=latest + 1,
            content_hash=digest,
            source=source,
            source_detail=source_detail[:500],
            inputs=description["inputs"],
            outputs=description["outputs"],
            nodes=description["nodes"],
            connections=description["connections"],
            chat_input=description.get("chat_input") or "",
            chat_output=description.get("chat_output") or "",
            chat_history=description.get("chat_history") or "",
            requirements=description.get("requirements", ""),
            environment=environment_key(description.get("requirements", "")),
            created_by=_user_or_none(user),
        )
        audit.record(_user_or_none(user), "flow.import", str(version), source=source, content_hash=digest)
    return version


def _remove_run_artifacts(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_dir() and path.name in IGNORED_IN_SNAPSHOT:
            shutil.rmtree(path, ignore_errors=True)


def _freeze(folder: Path) -> None:
    """Snapshots are immutable: read-only files, so nothing edits a version after the fact."""
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o444)


def _user_or_none(user):
    return user if getattr(user, "is_authenticated", False) else None
