"""Reading what the gateway's data collection wrote (serving/collector.py): hours, records, sizes, zips, expiry.

Plain Python on a folder, no Django: `monitoring.services` passes the folder of one deployment,
`<FLOWDEPLOY_DATA_COLLECTION_DIR>/<endpoint>/<deployment>`, whose layout is

    model_inputs/YYYY/MM/DD/HH/<gateway>.jsonl
    model_outputs/YYYY/MM/DD/HH/<gateway>.jsonl

Only names of that shape are read: anything else in the folder is ignored, and a relative path given by a
user is checked against it (`file_path`) before any file is opened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from serving.collector import KINDS

HOUR = timedelta(hours=1)
FILE_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}\.jsonl$")
RELATIVE_RE = re.compile(
    r"^(model_inputs|model_outputs)/(\d{4})/(\d{2})/(\d{2})/(\d{2})/([A-Za-z0-9._-]{1,200}\.jsonl)$"
)
PARTS = (re.compile(r"^\d{4}$"), re.compile(r"^\d{2}$"), re.compile(r"^\d{2}$"), re.compile(r"^\d{2}$"))
DEFAULT_SCAN_BYTES = 64 * 1024 * 1024


@dataclass
class HourFiles:
    """One hour of a deployment's data: its files (kind, path relative to the deployment folder, size)."""

    hour: datetime
    files: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(size for _, _, size in self.files)

    @property
    def key(self) -> str:
        """The hour as the download form names it: 2026-12-01T10."""
        return self.hour.strftime("%Y-%m-%dT%H")


@dataclass
class Record:
    """One scored request: its inputs and outputs lines joined by correlation id."""

    time: datetime
    request_id: str
    status: int | None
    inputs: Any = None
    outputs: Any = None
    streamed: bool = False
    truncated: bool = False
    correlation_id: str = ""

    @property
    def time_label(self) -> str:
        """UTC, to the millisecond, as the lines have it."""
        return self.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

    @property
    def inputs_json(self) -> str:
        return _pretty(self.inputs)

    @property
    def outputs_json(self) -> str:
        return _pretty(self.outputs)


@dataclass
class Page:
    records: list[Record]
    more: bool  # older records in the range than those shown
    scan_limited: bool  # stopped reading after the scan budget: narrow the range


def _pretty(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def _hour_of(parts: tuple[str, str, str, str]) -> datetime | None:
    try:
        return datetime(int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]), tzinfo=UTC)
    except ValueError:
        return None


def _subdirs(folder: Path, pattern: re.Pattern) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if pattern.match(e.name) and e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def hour_folders(folder: Path, kind: str) -> dict[datetime, Path]:
    """Every hour folder of one kind: hour (UTC) -> folder."""
    found = {}
    base = folder / kind
    for year in _subdirs(base, PARTS[0]):
        for month in _subdirs(base / year, PARTS[1]):
            for day in _subdirs(base / year / month, PARTS[2]):
                for hour in _subdirs(base / year / month / day, PARTS[3]):
                    when = _hour_of((year, month, day, hour))
                    if when is not None:
                        found[when] = base / year / month / day / hour
    return found


def hours(folder: Path, start: datetime | None = None, end: datetime | None = None) -> list[HourFiles]:
    """The hours with data that overlap [start, end), newest first, with their files."""
    by_hour: dict[datetime, HourFiles] = {}
    for kind in KINDS:
        for when, hour_dir in hour_folders(folder, kind).items():
            if (start is not None and when + HOUR <= start) or (end is not None and when >= end):
                continue
            try:
                with os.scandir(hour_dir) as entries:
                    files = sorted(
                        (e.name, e.stat(follow_symlinks=False).st_size)
                        for e in entries
                        if FILE_RE.match(e.name) and e.is_file(follow_symlinks=False)
                    )
            except OSError:
                continue
            entry = by_hour.setdefault(when, HourFiles(when))
            for name, size in files:
                entry.files.append((kind, f"{kind}/{when:%Y/%m/%d/%H}/{name}", size))
    return [by_hour[when] for when in sorted(by_hour, reverse=True) if by_hour[when].files]


def usage(folder: Path) -> tuple[int, int]:
    """(bytes, files) of everything in the deployment's folder."""
    total = count = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
            count += 1
    return total, count


def newest_hour(folder: Path) -> datetime | None:
    newest = None
    for kind in KINDS:
        found = hour_folders(folder, kind)
        if found:
            latest = max(found)
            newest = latest if newest is None else max(newest, latest)
    return newest


def file_path(folder: Path, relative: str) -> Path | None:
    """The file a download names (`model_inputs/2026/12/01/10/<gateway>.jsonl`), or None when it is not one."""
    if not RELATIVE_RE.match(relative):
        return None
    path = folder / relative
    if path.is_symlink() or not path.is_file():
        return None
    return path


def parse_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def _read_lines(path: Path) -> list[dict]:
    found = []
    try:
        with path.open("rb") as handle:
            for raw in handle:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue  # a line cut short by a full disk: skip it
                if isinstance(line, dict):
                    found.append(line)
    except OSError:
        return []
    return found


def records(
    folder: Path,
    start: datetime,
    end: datetime,
    request_id: str = "",
    limit: int = 50,
    scan_bytes: int = DEFAULT_SCAN_BYTES,
) -> Page:
    """The newest `limit` records with start <= time < end (and this request id), inputs and outputs joined."""
    shown: list[Record] = []
    scanned = 0
    for hour in hours(folder, start, end):
        joined: dict[str, Record] = {}
        for kind, relative, size in hour.files:
            if scanned + size > scan_bytes and (shown or scanned):
                return Page(shown[:limit], len(shown) > limit, scan_limited=True)
            scanned += size
            for line in _read_lines(folder / relative):
                if request_id and line.get("xrequestid") != request_id:
                    continue
                when = parse_time(line.get("time"))
                if when is None or not start <= when < end:
                    continue
                key = str(line.get("correlationid") or line.get("id"))
                record = joined.get(key)
                if record is None:
                    status = line.get("status")
                    record = joined[key] = Record(
                        when,
                        str(line.get("xrequestid", "")),
                        status if isinstance(status, int) else None,
                        correlation_id=key,
                    )
                if kind == "model_inputs":
                    record.inputs = line.get("data")
                else:
                    record.outputs = line.get("data")
                    record.streamed = bool(line.get("streamed"))
                    record.truncated = bool(line.get("truncated"))
        shown.extend(sorted(joined.values(), key=lambda r: (r.time, r.correlation_id), reverse=True))
        if len(shown) > limit:
            break
    return Page(shown[:limit], len(shown) > limit, scan_limited=False)


def write_zip(folder: Path, chosen: list[HourFiles], target: IO[bytes], prefix: str) -> int:
    """A zip of the hours' files under `prefix/`, keeping the layout; returns the number of files."""
    count = 0
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for hour in sorted(chosen, key=lambda h: h.hour):
            for _, relative, _ in hour.files:
                path = folder / relative
                if path.is_file() and not path.is_symlink():
                    archive.write(path, f"{prefix}/{relative}")
                    count += 1
    return count


def remove_expired(folder: Path, before: datetime) -> int:
    """Remove the hour folders that ended at or before `before`, and the day, month and year folders they leave
    empty; returns the number of hour folders removed."""
    removed = 0
    for kind in KINDS:
        for when, hour_dir in hour_folders(folder, kind).items():
            if when + HOUR <= before:
                shutil.rmtree(hour_dir, ignore_errors=True)
                removed += 1
                for parent in (hour_dir.parent, hour_dir.parent.parent, hour_dir.parent.parent.parent):
                    try:
                        parent.rmdir()  # only when empty
                    except OSError:
                        break
    return removed
