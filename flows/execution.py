"""Run promptflow in the flow runtime environment, as a subprocess, and read its JSON answers."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from django.conf import settings

from runtime.environments import RUNNER, Environment, EnvironmentBuildError, ensure_flow_environment
from runtime.sandbox import SandboxUnavailable

RESULT_PREFIX = "@@flowdeploy "
IGNORED_IN_SNAPSHOT = {"__pycache__", ".promptflow", ".runs", ".git", ".venv", "node_modules"}

__all__ = [
    "EnvironmentBuildError",
    "RunnerError",
    "RunnerTimeout",
    "flow_environment",
    "run_bulk",
    "run_line",
    "validate_flow",
]


class RunnerError(Exception):
    """The runtime process itself failed (not the flow): it crashed, timed out or said nothing."""


def flow_environment(requirements: str) -> Environment:
    return ensure_flow_environment(
        Path(settings.FLOWDEPLOY_RUNTIME_DIR),
        requirements,
        timeout=settings.FLOWDEPLOY_ENV_BUILD_TIMEOUT,
        allow_sources=settings.FLOWDEPLOY_ALLOW_REQUIREMENT_SOURCES,
    )


def writable_copy(snapshot: Path, target: Path) -> Path:
    """Copy a read-only snapshot to a folder promptflow may write into (it writes .promptflow/)."""
    shutil.copytree(snapshot, target, ignore=shutil.ignore_patterns(*IGNORED_IN_SNAPSHOT))
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


@contextmanager
def scratch_copy(snapshot: Path) -> Iterator[Path]:
    """A throwaway copy of a snapshot: promptflow writes into the flow folder, snapshots stay untouched."""
    Path(settings.FLOWDEPLOY_RUNS_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="run-", dir=settings.FLOWDEPLOY_RUNS_DIR) as scratch:
        yield writable_copy(snapshot, Path(scratch) / "flow")


def _runner_process(
    env: Environment, args: list[str], flow_dir: Path, *, network: bool, read_only: tuple[Path, ...] = ()
) -> tuple[list[str], dict[str, str]]:
    """The runner in the flow's sandbox: it reads the runtime and the runner, writes only its copy of the flow
    and a home of its own beside it, and sees nothing else of the studio."""
    try:
        return env.flow_process(
            [str(env.python), str(RUNNER), *args],
            home=flow_dir.parent / "home",
            read_only=(RUNNER, *read_only),
            writable=(flow_dir,),
            network=network,
            cwd=flow_dir,
        )
    except SandboxUnavailable as exc:
        raise RunnerError(str(exc)) from None


class RunnerTimeout(RunnerError):
    """The flow ran past a deadline; its process and sandbox were killed."""


# What is kept of a runner's stderr for error messages: its last lines, never all of it.
STDERR_TAIL_BYTES = 64 * 1024
# A result line longer than this is dropped instead of held in memory.
MAX_RESULT_LINE_BYTES = 64 * 1024 * 1024
# How long a runner that has given its last answer may take to exit before it is killed.
EXIT_GRACE_SECONDS = 10
_EOF = object()


class RunnerProcess:
    """A runner process whose pipes can never block it.

    stdin gets the request from a thread; stdout is read by a thread that keeps only result lines
    (bounded in size) and hands them over through a queue, so the caller waits with a timeout it
    controls; stderr is drained by a thread into a bounded tail for error messages. kill() ends the
    process group, and with it the sandbox (bwrap runs flows with --die-with-parent).
    """

    def __init__(self, command: list[str], env: dict[str, str], payload: dict):
        self.popen = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.results: queue.Queue = queue.Queue()
        self._stderr: deque[bytes] = deque()
        self._stderr_size = 0
        request = json.dumps(payload).encode()
        self._threads = [
            threading.Thread(target=self._write_stdin, args=(request,), daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._drain_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _write_stdin(self, request: bytes) -> None:
        assert self.popen.stdin
        try:
            self.popen.stdin.write(request)
            self.popen.stdin.close()
        except OSError:  # the process died before reading its request: its exit says why
            pass

    def _read_stdout(self) -> None:
        assert self.popen.stdout
        prefix = RESULT_PREFIX.encode()
        skipping = False
        try:
            while chunk := self.popen.stdout.readline(MAX_RESULT_LINE_BYTES):
                complete = chunk.endswith(b"\n")
                if not skipping and chunk.startswith(prefix) and complete:
                    with suppress(ValueError):  # a cut-off or forged line is no answer
                        self.results.put(json.loads(chunk[len(prefix) :]))
                skipping = not complete
        finally:
            self.results.put(_EOF)

    def _drain_stderr(self) -> None:
        assert self.popen.stderr
        while chunk := self.popen.stderr.read1(65536):
            self._stderr.append(chunk)
            self._stderr_size += len(chunk)
            while self._stderr_size - len(self._stderr[0]) >= STDERR_TAIL_BYTES:
                self._stderr_size -= len(self._stderr.popleft())

    def next_result(self, timeout: float) -> dict | None:
        """The next result line; None once stdout is closed; queue.Empty when none came within `timeout`."""
        item = self.results.get(timeout=max(timeout, 0))
        return None if item is _EOF else item

    def stderr_tail(self, lines: int = 15) -> str:
        text = b"".join(self._stderr).decode("utf-8", errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    def finish(self, grace: float = EXIT_GRACE_SECONDS) -> int:
        """Wait up to `grace` seconds for the process to exit, kill it otherwise; its exit code."""
        try:
            self.popen.wait(timeout=max(grace, 0))
        except subprocess.TimeoutExpired:
            self.kill()
        for thread in self._threads:
            thread.join(timeout=5)
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


def _call(env: Environment, args: list[str], payload: dict, timeout: int, flow_dir: Path, network: bool) -> dict:
    command, process_env = _runner_process(env, args, flow_dir, network=network)
    process = RunnerProcess(command, process_env, payload)
    deadline = time.monotonic() + timeout
    last = None
    try:
        while True:
            try:
                result = process.next_result(deadline - time.monotonic())
            except queue.Empty:
                raise RunnerTimeout(f"The flow did not finish within {timeout} seconds.") from None
            if result is None:
                break
            last = result
    finally:
        returncode = process.finish(grace=min(EXIT_GRACE_SECONDS, deadline - time.monotonic()))
    if last is None:
        raise RunnerError(f"The flow runtime exited with code {returncode} without an answer.\n{process.stderr_tail()}")
    return last


def validate_flow(env: Environment, flow_dir: Path, connections: dict) -> dict:
    """promptflow's verdict on a flow folder: {"ok": True, "flow": {...}} or {"ok": False, "error": {...}}.

    It runs on a throwaway copy, so the flow's code cannot change what is stored after it was validated,
    and without a network, which validation does not need.
    """
    with scratch_copy(flow_dir) as copy:
        return _call(env, ["validate", str(copy)], {"connections": connections}, 300, copy, network=False)


def run_line(env: Environment, flow_dir: Path, connections: dict, inputs: dict, timeout: int) -> dict:
    payload = {"connections": connections, "inputs": inputs}
    return _call(env, ["run", str(flow_dir)], payload, timeout, flow_dir, network=True)


def run_bulk(
    env: Environment,
    flow_dir: Path,
    data_file: Path,
    connections: dict,
    on_event: Callable[[dict], None],
    *,
    line_timeout: float,
    run_timeout: float,
    on_wait: Callable[[], None] | None = None,
    wait_interval: float = 30,
) -> None:
    """Stream a bulk run: on_event gets each line's result as soon as promptflow finishes it.

    Two deadlines hold: the whole run ends within `run_timeout` seconds, and each line (loading the
    flow counts as the first) within `line_timeout` of the one before. Past either, the process and
    its sandbox are killed and RunnerTimeout says which. `on_wait` is called every `wait_interval`
    seconds while nothing arrives (the caller's heartbeat).
    """
    command, process_env = _runner_process(
        env, ["bulk", str(flow_dir), str(data_file)], flow_dir, network=True, read_only=(data_file,)
    )
    process = RunnerProcess(command, process_env, {"connections": connections})
    started = time.monotonic()
    run_deadline = started + run_timeout
    line_deadline = started + line_timeout
    lines_done = 0
    finished = False
    try:
        while not finished:
            now = time.monotonic()
            if now >= run_deadline:
                raise RunnerTimeout(
                    f"The bulk run did not finish within {_seconds(run_timeout)} "
                    f"(FLOWDEPLOY_BULK_RUN_TIMEOUT); it was stopped after {lines_done} lines."
                )
            if now >= line_deadline:
                raise RunnerTimeout(
                    f"Line {lines_done + 1} did not finish within {_seconds(line_timeout)} "
                    f"(FLOWDEPLOY_BULK_LINE_TIMEOUT); the run was stopped."
                )
            try:
                event = process.next_result(min(run_deadline, line_deadline, now + wait_interval) - now)
            except queue.Empty:
                if on_wait:
                    on_wait()
                continue
            if event is None:
                break
            kind = event.get("event")
            if kind in {"started", "line"}:
                line_deadline = time.monotonic() + line_timeout
            if kind == "line":
                lines_done += 1
            finished = kind in {"done", "failed"}
            if kind != "started":
                on_event(event)
    except BaseException:
        process.kill()
        raise
    finally:
        returncode = process.finish()
    if not finished:
        raise RunnerError(f"The flow runtime exited with code {returncode} before the end.\n{process.stderr_tail()}")


def _seconds(value: float) -> str:
    return f"{value:g} second" + ("" if value == 1 else "s")
