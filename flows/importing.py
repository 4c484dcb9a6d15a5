"""Turn a zip, a server folder or a sample into an immutable FlowVersion, or refuse it and store nothing."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import zipfile
import zlib
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
from workspace.connections import in_project
from workspace.models import Project

FLOW_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
# URLs under /flows/ that a flow of that name would hide (flows/urls.py).
RESERVED_NAMES = {"import", "runs", "bulk-runs"}
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
    if name in RESERVED_NAMES:
        raise FlowImportError(f"'{name}' names a page of the studio; choose another flow name.", code="InvalidName")
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


# What can go wrong reading one member of a damaged or hostile archive.
MEMBER_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


def extract_zip(upload: IO[bytes], target: Path) -> None:
    """Unpack a flow zip into `target`, or refuse it naming the member; a refused zip may leave files in `target`."""
    try:
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError):
        raise FlowImportError("The file is not a zip archive.", code="InvalidZip") from None
    limit = settings.FLOWDEPLOY_MAX_UPLOAD_BYTES
    with archive:
        members = _checked_members(archive)
        if sum(member.file_size for member, _ in members) > limit:
            raise FlowImportError(f"The flow unpacks to more than {_megabytes(limit)}.", code="TooLarge")
        budget = limit
        for member, relative in members:
            destination = target.joinpath(*relative.parts)
            try:
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, destination.open("wb") as sink:
                    budget -= _copy_limited(source, sink, budget, member.filename)
            except FlowImportError:
                raise
            except MEMBER_ERRORS as exc:
                raise FlowImportError(
                    f"The zip file is damaged: {member.filename} cannot be unpacked ({exc}).", code="InvalidZip"
                ) from None
            except OSError as exc:
                raise FlowImportError(
                    f"{member.filename} cannot be unpacked: {exc.strerror or exc}.", code="InvalidZip"
                ) from None


def _checked_members(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The files to unpack, with their safe relative paths; links, escapes, duplicates and clashes of a file and
    a folder of the same name are refused."""
    entries = archive.infolist()
    if sum(not entry.is_dir() for entry in entries) > MAX_FILES:
        raise FlowImportError(f"The zip file holds more than {MAX_FILES} files.", code="TooLarge")
    files: dict[PurePosixPath, str] = {}
    folders: dict[PurePosixPath, str] = {}
    members = []
    for entry in entries:
        if (entry.external_attr >> 16) & 0o170000 == 0o120000:
            raise FlowImportError(f"The zip file contains a symbolic link: {entry.filename}", code="UnsafeZip")
        relative = _safe_member(entry.filename)
        if relative is None or not relative.parts:
            continue
        if entry.is_dir():
            folders.setdefault(relative, entry.filename)
        else:
            if relative in files:
                raise FlowImportError(
                    f"The zip file holds {entry.filename} twice (also as {files[relative]}).", code="InvalidZip"
                )
            files[relative] = entry.filename
            members.append((entry, relative))
        for parent in relative.parents:
            if parent.parts:
                folders.setdefault(parent, entry.filename)
    for path, name in files.items():
        if path in folders:
            raise FlowImportError(
                f"The zip file holds both a file {name} and a folder of the same name ({folders[path]}).",
                code="InvalidZip",
            )
    return members


def _copy_limited(source: IO[bytes], sink: IO[bytes], budget: int, name: str) -> int:
    """Copy at most `budget` bytes, counted as they unpack (declared sizes can lie); the bytes copied."""
    copied = 0
    while chunk := source.read(1024 * 1024):
        copied += len(chunk)
        if copied > budget:
            limit = settings.FLOWDEPLOY_MAX_UPLOAD_BYTES
            raise FlowImportError(
                f"The flow unpacks to more than {_megabytes(limit)} (at {name}): the zip understates its sizes.",
                code="TooLarge",
            )
        sink.write(chunk)
    return copied


def _megabytes(size: int) -> str:
    return f"{size // (1024 * 1024)} MB" if size >= 1024 * 1024 else f"{size} bytes"


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


def find_flow_root(folder: Path, name: str = "") -> Path:
    """flow.dag.yaml at the top, or inside a top folder: the only one that has one, else the one named like the
    flow, else the only one with additional_includes (a zip of a flow and the folders it includes)."""
    if (folder / FLOW_FILE).is_file():
        return folder
    candidates = sorted(
        child
        for child in folder.iterdir()
        if not child.name.startswith(".") and child.is_dir() and (child / FLOW_FILE).is_file()
    )
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise FlowImportError(
            f"No {FLOW_FILE} found. A flow is a folder with {FLOW_FILE} at its top.", code="FlowFileMissing"
        )
    named = [child for child in candidates if child.name == name]
    including = [child for child in candidates if _read_dag(child).get("additional_includes")]
    if len(named) == 1 or len(including) == 1:
        return (named or including)[0]
    folders = ", ".join(child.name for child in candidates)
    raise FlowImportError(
        f"The zip holds several flows ({folders}). Name the flow after the folder to import, or put its "
        f"{FLOW_FILE} at the top of the zip.",
        code="FlowFileMissing",
    )


# --- additional_includes ----------------------------------------------------------------------
# promptflow copies each path listed under `additional_includes` (relative to the flow folder) into the
# flow's snapshot before it runs it: a file to <flow>/<file name>, a folder to <flow>/<folder name>/, and
# "<folder>.zip" as a zip of that folder when no such file exists (promptflow's
# _merge_local_code_and_additional_includes). The importer does the same, once, so the snapshot is complete;
# only relative paths that stay inside the zip (or, for a folder on the server, inside its parent) are taken.

INCLUDES_KEY = "additional_includes"
INCLUDES_KEY_RE = re.compile(rf"^{INCLUDES_KEY}\s*:")


def resolve_additional_includes(flow_dir: Path, source_dir: Path, root: Path, where: str) -> None:
    """Copy the flow's additional includes into flow_dir and take the list out of its flow.dag.yaml.

    Includes are resolved against source_dir (where the flow was) and must stay inside root; `where` names root
    in messages ("the zip", "the folder's parent ...").
    """
    dag = _read_dag(flow_dir)
    includes = dag.get(INCLUDES_KEY)
    if not includes:
        return
    text = (flow_dir / FLOW_FILE).read_text(encoding="utf-8")
    if not isinstance(includes, list) or not all(isinstance(item, str) and item.strip() for item in includes):
        raise _include_error(text, None, f"{INCLUDES_KEY} must be a list of paths relative to the flow folder.")
    root = root.resolve()
    budget = _IncludeBudget(flow_dir)
    for item in includes:
        source = _include_source(text, item, source_dir, root, where)
        target = flow_dir / source.name
        if _is_folder_to_zip(source):
            budget.zip_folder(source.with_suffix(""), target)
        elif source.is_dir():
            budget.copy_folder(source, target)
        else:
            budget.copy_file(source, target)
    _drop_includes_from_dag(flow_dir / FLOW_FILE, text, dag)


def _include_error(text: str, item: str | None, message: str) -> FlowImportError:
    line = None
    lines = text.splitlines()
    start = next((number for number, row in enumerate(lines, 1) if INCLUDES_KEY_RE.match(row)), None)
    if start is not None:
        line = start
        if item is not None:
            entry = re.compile(rf"^\s*-\s*['\"]?{re.escape(item)}['\"]?\s*(#.*)?$")
            line = next((n for n, row in enumerate(lines[start - 1 :], start) if entry.match(row)), start)
    return FlowImportError(message, code="InvalidInclude", file=FLOW_FILE, line=line)


def _include_source(text: str, item: str, source_dir: Path, root: Path, where: str) -> Path:
    if PurePosixPath(item).is_absolute() or Path(item).is_absolute() or re.match(r"^[A-Za-z]:[\\/]", item):
        raise _include_error(
            text, item, f"Additional include {item!r} is an absolute path; list paths relative to the flow folder."
        )
    source = (source_dir / item).resolve()
    if not source.is_relative_to(root):
        raise _include_error(text, item, f"Additional include {item!r} points outside {where}.")
    if source_dir.resolve().is_relative_to(source):
        raise _include_error(text, item, f"Additional include {item!r} holds the flow folder itself.")
    if not source.exists() and not _is_folder_to_zip(source):
        raise _include_error(text, item, f"Additional include {item!r} was not found in {where}.")
    return source


def _is_folder_to_zip(path: Path) -> bool:
    return path.suffix == ".zip" and not path.exists() and path.with_suffix("").is_dir()


class _IncludeBudget:
    """Copies includes while counting files and bytes, so listing a folder many times cannot fill the disk."""

    def __init__(self, flow_dir: Path):
        files = [path for path in flow_dir.rglob("*") if path.is_file()]
        self.files_left = MAX_FILES - len(files)
        self.bytes_left = settings.FLOWDEPLOY_MAX_UPLOAD_BYTES - sum(path.stat().st_size for path in files)

    def _take(self, size: int, name: str) -> None:
        self.files_left -= 1
        self.bytes_left -= size
        if self.files_left < 0 or self.bytes_left < 0:
            limit = _megabytes(settings.FLOWDEPLOY_MAX_UPLOAD_BYTES)
            raise FlowImportError(
                f"With its additional includes the flow is larger than {limit} or {MAX_FILES} files (at {name}).",
                code="TooLarge",
                file=FLOW_FILE,
            )

    def copy_file(self, source: Path, target: Path) -> None:
        if target.exists() and target.samefile(source):
            return
        self._take(source.stat().st_size, source.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            shutil.rmtree(target)
        shutil.copyfile(source, target)

    def copy_folder(self, source: Path, target: Path) -> None:
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if IGNORED_IN_SNAPSHOT.intersection(relative.parts) or not path.is_file():
                continue
            self.copy_file(path, target / relative)

    def zip_folder(self, folder: Path, target: Path) -> None:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not IGNORED_IN_SNAPSHOT.intersection(path.relative_to(folder).parts):
                    self._take(path.stat().st_size, path.name)
                    archive.write(path, path.relative_to(folder.parent).as_posix())


def _drop_includes_from_dag(path: Path, text: str, dag: dict) -> None:
    """Comment out the additional_includes block, so every other line keeps its number (errors name lines)."""
    lines = text.splitlines(keepends=True)
    start = next(index for index, row in enumerate(lines) if INCLUDES_KEY_RE.match(row))
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t-#"):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    block = [f"# {row}" if row.strip() else row for row in lines[start:end]]
    block.insert(0, "# additional_includes were copied into this folder when the flow was imported:\n")
    rewritten = "".join(lines[:start] + block + lines[end:])
    wanted = {key: value for key, value in dag.items() if key != INCLUDES_KEY}
    try:
        same = yaml.safe_load(rewritten) == wanted
    except yaml.YAMLError:
        same = False
    if not same:  # an unusual layout: write the YAML again rather than guess
        rewritten = yaml.safe_dump(wanted, sort_keys=False, allow_unicode=True)
    path.write_text(rewritten, encoding="utf-8")


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


def validation_connections(names: set[str], project: Project | None = None) -> dict[str, dict]:
    """The named connections in promptflow's dict format, every secret value replaced by a placeholder.

    Validation resolves each node's tool and connection type; it never calls a provider, so it needs no
    secret, and the flow's code (which validation imports) never sees one.
    """
    connections = {}
    for connection in in_project(project).filter(name__in=sorted(names)):
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


def validate(flow_dir: Path, project: Project | None = None) -> dict:
    """What promptflow makes of the flow, checked with the connections of `project` (the flow's)."""
    dag = _read_dag(flow_dir)
    requirements_name, requirements = _requirements_file(flow_dir, dag)
    check_requirements(requirements, requirements_name)
    try:
        env = flow_environment(requirements)
    except EnvironmentBuildError as exc:
        raise FlowImportError(str(exc), code="RequirementsFailed", file=requirements_name) from exc
    try:
        verdict = validate_flow(env, flow_dir, validation_connections(referenced_connection_names(dag), project))
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
    folder: Path,
    name: str,
    user,
    source: str = FlowSource.FOLDER,
    source_detail: str = "",
    project: Project | None = None,
) -> FlowVersion:
    """Import a flow from a folder on the server (a sample, or a path the admin gives), into `project`
    (see _target_project).

    Its additional includes are read from the server, within the folder's parent.
    """
    staging = _staging_dir()
    try:
        copy_folder(folder, staging / "flow")
        name = check_flow_name(name)
        flow_dir = find_flow_root(staging / "flow", name)
        source_dir = folder / flow_dir.relative_to(staging / "flow")
        where = f"the folder's parent ({folder.resolve().parent})"
        resolve_additional_includes(flow_dir, source_dir, folder.resolve().parent, where)
        return _import_staged(flow_dir, name, user, source, source_detail or str(folder), project)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def import_zip(
    upload: IO[bytes], name: str, user, source_detail: str = "", project: Project | None = None
) -> FlowVersion:
    """Import a flow from a zip; its additional includes must be in the zip too (the flow in one top folder,
    what it includes beside it)."""
    staging = _staging_dir()
    try:
        extract_zip(upload, staging / "flow")
        name = check_flow_name(name)
        (staging / "flow").mkdir(exist_ok=True)
        flow_dir = find_flow_root(staging / "flow", name)
        resolve_additional_includes(flow_dir, flow_dir, staging / "flow", "the zip")
        return _import_staged(flow_dir, name, user, FlowSource.UPLOAD, source_detail, project)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _target_project(name: str, project: Project | None) -> Project:
    """A new version goes to its flow's project; a new flow to `project` (the default project when None).
    Flow names are unique across projects: a name another project uses is refused, naming that project."""
    existing = Flow.objects.select_related("project").filter(name=name).first()
    if existing is None:
        return project or Project.default()
    if project is not None and existing.project_id != project.pk:
        raise FlowImportError(
            f"A flow named {name!r} already exists in another project. Choose another name.",
            code="NameTaken",
        )
    return existing.project


def _import_staged(
    flow_dir: Path, name: str, user, source: str, source_detail: str, project: Project | None
) -> FlowVersion:
    project = _target_project(name, project)
    description = validate(flow_dir, project)
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
        flow, _ = Flow.objects.get_or_create(
            name=name, defaults={"created_by": _user_or_none(user), "project": project}
        )
        if flow.project_id != project.pk:  # created meanwhile by a concurrent import into another project
            raise FlowImportError(f"A flow named {name!r} already exists in another project.", code="NameTaken")
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
        audit.record(
            _user_or_none(user), "flow.import", str(version), project=project, source=source, content_hash=digest
        )
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
