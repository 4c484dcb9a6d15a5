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
from runtime.sandbox import SandboxUnavailable

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


def _results(stdout: str) -> list[dict]:
    return [json.loads(line[len(RESULT_PREFIX) :]) for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]


def _call(env: Environment, args: list[str], payload: dict, timeout: int, flow_dir: Path, network: bool) -> dict:
    command, process_env = _runner_process(env, args, flow_dir, network=network)
    try:
        completed = subprocess.run(
            command,
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=process_env,
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
    timeout: int,
) -> None:
    """Stream a bulk run: on_event gets each line's result as soon as promptflow finishes it."""
    command, process_env = _runner_process(
        env, ["bulk", str(flow_dir), str(data_file)], flow_dir, network=True, read_only=(data_file,)
    )
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=process_env,
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
