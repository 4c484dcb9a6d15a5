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
from workspace import audit
from workspace.connections import promptflow_connections

FLOW_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
MAX_FILES = 2000


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


def read_requirements(flow_dir: Path) -> str:
    """The flow's requirements, read before promptflow runs so its environment can be built first."""
    try:
        data = yaml.safe_load((flow_dir / FLOW_FILE).read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        data = {}  # promptflow reports the YAML error with its line during validation
    environment = data.get("environment") if isinstance(data, dict) else None
    name = (environment or {}).get("python_requirements_txt") or "requirements.txt"
    path = (flow_dir / str(name)).resolve()
    if not path.is_relative_to(flow_dir.resolve()) or not path.is_file():
        return ""
    return path.read_text(encoding="utf-8", errors="replace")


def validate(flow_dir: Path) -> dict:
    requirements = read_requirements(flow_dir)
    try:
        env = flow_environment(requirements)
    except EnvironmentBuildError as exc:
        raise FlowImportError(str(exc), code="RequirementsFailed", file="requirements.txt") from exc
    try:
        verdict = validate_flow(env, flow_dir, promptflow_connections())
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
