"""Remove flow environment layers that nothing uses any more, and the logs and leftovers of failed builds.

Plain Python, no Django: the caller says which layers are wanted (runtime.environments.environment_key of
every flow version's requirements). A layer that is not wanted gets a mark, `.<layer>.unused-since` in the
layers folder, holding the time it was first seen unused; a layer wanted again loses its mark. A layer
unused for `max_age` seconds is removed, unless a process still runs from it (its path is in a command
line, as an instance's `<layer>/bin/python` is) or a build holds its lock. Base runtimes are never removed.
"""

from __future__ import annotations

import fcntl
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUILDING = ".building"


def unused_mark(layers: Path, name: str) -> Path:
    return layers / f".{name}.unused-since"


@contextmanager
def _unlocked(layers: Path, name: str) -> Iterator[bool]:
    """Hold the build lock of layer `name` if nobody else does (True), without waiting; False when a build has it."""
    lock_path = layers / f".{name}.lock"
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def command_lines() -> list[str]:
    """Every process's command line, arguments joined by spaces."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return lines


def _in_use(folder: Path, lines: list[str]) -> bool:
    needle = f"{folder}/"
    return any(needle in line for line in lines)


def prune_layers(root: Path, wanted: set[str], max_age: float, now: float | None = None) -> list[str]:
    """Remove the layers in `root`/layers that are not in `wanted` and have not been for `max_age` seconds.

    Returns the names removed. A removed layer's build log goes with it.
    """
    layers = root / "layers"
    if not layers.is_dir():
        return []
    now = time.time() if now is None else now
    lines = command_lines()
    removed = []
    for folder in sorted(layers.iterdir()):
        name = folder.name
        if not folder.is_dir() or name.startswith(".") or name.endswith(BUILDING):
            continue
        mark = unused_mark(layers, name)
        if name in wanted or _in_use(folder, lines):
            mark.unlink(missing_ok=True)
            continue
        since = _read_since(mark)
        if since is None:
            mark.write_text(f"{now}\n")  # the clock starts now
            continue
        if now - since < max_age:
            continue
        with _unlocked(layers, name) as free:
            if not free:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            (layers / f"{name}.log").unlink(missing_ok=True)
            mark.unlink(missing_ok=True)
        removed.append(name)
    for mark in layers.glob(".*.unused-since"):  # marks of layers removed by other means
        if not (layers / mark.name[1 : -len(".unused-since")]).is_dir():
            mark.unlink(missing_ok=True)
    return removed


def _read_since(mark: Path) -> float | None:
    try:
        return float(mark.read_text().strip())
    except (OSError, ValueError):
        return None


def prune_failed_builds(root: Path, max_age: float, now: float | None = None) -> list[str]:
    """Remove build logs of layers that do not exist (their build failed) and `.building` folders a killed build
    left behind, once older than `max_age` seconds and no build holds their lock. Returns the names removed."""
    layers = root / "layers"
    if not layers.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for path in sorted(layers.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix == ".log":
            name = path.name[: -len(".log")]
            if (layers / name / ".complete").exists():
                continue
        elif path.is_dir() and path.name.endswith(BUILDING):
            name = path.name[: -len(BUILDING)]
        else:
            continue
        try:
            age = now - path.stat().st_mtime
        except OSError:
            continue
        if age < max_age:
            continue
        with _unlocked(layers, name) as free:
            if not free:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed
