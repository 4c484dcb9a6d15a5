"""Which instance's log to read and its last lines: shared by the Logs tab and the API's get-logs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from endpoints.models import LIVE_INSTANCE_STATES, Deployment, Instance, InstanceState

DEFAULT_LINES = 100
MAX_LINES = 5000
LINE_CHOICES = (50, 100, 500, 1000, 5000)
_BLOCK = 64 * 1024
_MAX_BYTES = 16 * 1024 * 1024  # never read more than this of a log to find its last lines


def readable_instances(deployment: Deployment) -> list[Instance]:
    """The instances whose log can be shown, newest generation first: every instance that is not stopped,
    and the stopped ones while their log file is still there."""
    instances = deployment.instances.order_by("-generation", "ordinal")
    return [i for i in instances if i.state != InstanceState.STOPPED or i.log_path.exists()]


def default_instance(deployment: Deployment, instances: Sequence[Instance]) -> Instance | None:
    """The first live instance of the live generation; else the first one not stopped; else the first one."""
    for instance in instances:
        if instance.generation == deployment.live_generation and instance.state in LIVE_INSTANCE_STATES:
            return instance
    running = [i for i in instances if i.state != InstanceState.STOPPED]
    return (running or list(instances) or [None])[0]


def parse_lines(raw: str | None) -> int:
    """The number of lines asked for (the default when none is); ValueError with a message naming the field."""
    raw = (raw or "").strip()
    if not raw:
        return DEFAULT_LINES
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LINES:
        raise ValueError(f"Lines: a whole number from 1 to {MAX_LINES}, not {raw!r}.")
    return int(raw)


def tail(path: Path, lines: int) -> str | None:
    """The last `lines` lines of a log file, or None when there is no file.

    Reads backwards block by block, so a large log costs only what is shown (at most 16 MB).
    """
    chunks: list[bytes] = []
    newlines = 0
    try:
        with path.open("rb") as handle:
            end = position = handle.seek(0, os.SEEK_END)
            while position > 0 and newlines <= lines and end - position < _MAX_BYTES:
                size = min(_BLOCK, position)
                position -= size
                handle.seek(position)
                chunk = handle.read(size)
                chunks.append(chunk)
                newlines += chunk.count(b"\n")
    except OSError:
        return None
    text = b"".join(reversed(chunks)).decode(errors="replace").splitlines()
    if position > 0 and len(text) > 1:
        text = text[1:]  # the first line read is a part of a longer one
    return "\n".join(text[-lines:])
