"""An instance's CPU time and memory, read from /proc: the instance's process (gunicorn) and all its descendants
(its workers, and whatever a flow started). Plain Python, no Django."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int, proc: Path = PROC) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of one process; None when it is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its last ")".
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _resident_bytes(pid: int, proc: Path = PROC) -> int:
    try:
        return int((proc / str(pid) / "statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def usage(pids: list[int], proc: Path = PROC) -> dict[int, tuple[float, int]]:
    """For each pid that runs: (CPU seconds, resident bytes) of it and its descendants. One pass over /proc."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name), proc)
        if stat is not None:
            parents[int(entry.name)], cpu[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    result = {}
    for pid in pids:
        if pid not in parents:
            continue
        seconds, resident, todo = 0.0, 0, [pid]
        while todo:
            current = todo.pop()
            seconds += cpu.get(current, 0.0)
            resident += _resident_bytes(current, proc)
            todo.extend(children.get(current, ()))
        result[pid] = (seconds, resident)
    return result
