"""Run promptflow in the flow runtime environment, as a subprocess, and read its JSON answers."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from runtime.environments import RUNNER, Environment, EnvironmentBuildError, ensure_flow_environment

RESULT_PREFIX = "@@flowdeploy "
IGNORED_IN_SNAPSHOT = {"__pycache__", ".promptflow", ".runs", ".git", ".venv", "node_modules"}

__all__ = [
    "EnvironmentBuildError",
    "RunnerError",
    "flow_environment",
    "run_bulk",
    "run_line",
    "validate_flow",
]


class RunnerError(Exception):
    """The runtime process itself failed (not the flow): it crashed, timed out or said nothing."""


def flow_environment(requirements: str) -> Environment:
    return ensure_flow_environment(
        Path(settings.FLOWDEPLOY_RUNTIME_DIR), requirements, timeout=settings.FLOWDEPLOY_ENV_BUILD_TIMEOUT
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


def _command(env: Environment, *args: str) -> list[str]:
    return [str(env.python), str(RUNNER), *args]


def _results(stdout: str) -> list[dict]:
    return [json.loads(line[len(RESULT_PREFIX) :]) for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]


def _call(env: Environment, args: list[str], payload: dict, timeout: int, cwd: Path) -> dict:
    try:
        completed = subprocess.run(
            _command(env, *args),
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env.process_env(),
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RunnerError(f"The flow did not finish within {timeout} seconds.") from None
    results = _results(completed.stdout)
    if not results:
        tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
        raise RunnerError(f"The flow runtime exited with code {completed.returncode} without an answer.\n{tail}")
    return results[-1]


def validate_flow(env: Environment, flow_dir: Path, connections: dict) -> dict:
    """promptflow's verdict on a flow folder: {"ok": True, "flow": {...}} or {"ok": False, "error": {...}}."""
    return _call(env, ["validate", str(flow_dir)], {"connections": connections}, 300, flow_dir)


def run_line(env: Environment, flow_dir: Path, connections: dict, inputs: dict, timeout: int) -> dict:
    return _call(env, ["run", str(flow_dir)], {"connections": connections, "inputs": inputs}, timeout, flow_dir)


def run_bulk(
    env: Environment,
    flow_dir: Path,
    data_file: Path,
    connections: dict,
    on_event: Callable[[dict], None],
    timeout: int,
) -> None:
    """Stream a bulk run: on_event gets each line's result as soon as promptflow finishes it."""
    process = subprocess.Popen(
        _command(env, "bulk", str(flow_dir), str(data_file)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env.process_env(),
        cwd=flow_dir,
    )
    assert process.stdin and process.stdout and process.stderr
    process.stdin.write(json.dumps({"connections": connections}))
    process.stdin.close()
    finished = False
    try:
        for line in process.stdout:
            if not line.startswith(RESULT_PREFIX):
                continue
            event = json.loads(line[len(RESULT_PREFIX) :])
            finished = finished or event.get("event") in {"done", "failed"}
            on_event(event)
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if not finished:
        tail = "\n".join(process.stderr.read().strip().splitlines()[-15:])
        raise RunnerError(f"The flow runtime exited with code {process.returncode} before the end.\n{tail}")
