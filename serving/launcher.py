"""Start, probe and stop instance processes: promptflow's serving app under gunicorn, one per instance.

Plain Python, no Django. An instance is started detached (double fork, its own session), so a
Celery worker that restarts does not take it down, and init reaps it when it exits. Its pid is
checked against /proc/<pid>/cmdline, which names the instance, so a reused pid is never mistaken
for it.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from runtime.environments import Environment

APP = "promptflow.core._serving.app:create_app()"


@dataclass
class InstanceSpec:
    instance_id: str
    flow_dir: Path
    environment: Environment
    port: int
    workers: int
    threads: int
    log_path: Path
    request_timeout_s: int
    env_vars: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        return [
            str(self.environment.python),
            "-m",
            "gunicorn",
            "--name",
            f"flowdeploy-{self.instance_id}",
            "--workers",
            str(self.workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(self.threads),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--chdir",
            str(self.flow_dir),
            "--timeout",
            str(max(self.request_timeout_s + 30, 60)),
            "--graceful-timeout",
            str(max(self.request_timeout_s, 30)),
            "--preload",
            "--keep-alive",
            "75",
            APP,
        ]

    def sandboxed(self, sandbox_args: tuple[str, ...] = ()) -> tuple[list[str], dict[str, str]]:
        """gunicorn in the flow's sandbox: the runtime read-only, its own flow copy and home writable."""
        extra_env = {
            **self.env_vars,
            "PROMPTFLOW_PROJECT_PATH": str(self.flow_dir),
            "FLOWDEPLOY_INSTANCE_ID": self.instance_id,
        }
        return self.environment.flow_process(
            self.command(),
            home=self.flow_dir.parent / "home",
            writable=(self.flow_dir,),
            detached=True,
            cwd=self.flow_dir,
            extra_env=extra_env,
            sandbox_args=sandbox_args,
        )


def start(spec: InstanceSpec) -> int:
    """Start the instance detached, sandboxed, and return the pid of its gunicorn; output goes to spec.log_path.

    The pid is the sandboxed process's (bubblewrap reports it on --info-fd), in its own session, so
    stop() signals gunicorn and its workers, not bubblewrap. Returning only after the exec matters:
    until then /proc/<pid>/cmdline is the worker's, and is_running() would take the instance for dead.
    """
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_read, pid_write = os.pipe()
    exec_read, exec_write = os.pipe()  # close-on-exec: reading it gives EOF once the instance has exec'd
    info_read, info_write = os.pipe()  # bubblewrap writes {"child-pid": N} here, then closes it
    command, env = spec.sandboxed(("--info-fd", str(info_write)))
    child = os.fork()
    if child == 0:  # intermediate: fork the instance, exit so init adopts it
        try:
            os.close(pid_read)
            os.close(exec_read)
            os.close(info_read)
            grandchild = os.fork()
            if grandchild == 0:
                os.setsid()  # its own session and process group, so stop() can signal all its workers
                log = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.dup2(log, 1)
                os.dup2(log, 2)
                keep = sorted({exec_write, info_write})
                os.closerange(3, keep[0])
                os.closerange(keep[0] + 1, keep[1])
                os.closerange(keep[1] + 1, 1024)
                os.set_inheritable(info_write, True)
                os.chdir(spec.flow_dir)
                os.execve(command[0], command, env)
            os.write(pid_write, str(grandchild).encode())
        finally:
            os._exit(0)
    os.close(pid_write)
    os.close(exec_write)
    os.close(info_write)
    os.waitpid(child, 0)
    with os.fdopen(pid_read) as pipe:
        pid = int(pipe.read() or 0)
    with os.fdopen(exec_read, "rb") as pipe:
        pipe.read()  # EOF when the instance has exec'd (or died trying)
    with os.fdopen(info_read, "rb") as pipe:
        info = pipe.read()  # EOF at once when the sandbox is off
    return _sandboxed_pid(info) or pid


def _sandboxed_pid(info: bytes) -> int | None:
    try:
        return int(json.loads(info)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def is_running(pid: int | None, instance_id: str) -> bool:
    if not pid:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            return False
        # An empty command line is a process between two programs (bubblewrap exec'ing the instance): not
        # another process that took the pid, which would show its own. A zombie's is empty too: see its state.
        if text and instance_id not in text:
            return False
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200 and json.loads(response.read() or b"{}").get("status") == "Healthy"
    except (urllib.error.URLError, OSError, ValueError):
        return False


def fetch_swagger(url: str, timeout: float = 5.0) -> dict | None:
    try:
        with urllib.request.urlopen(f"{url}/swagger.json", timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def stop(pid: int | None, instance_id: str, grace: float = 30.0) -> None:
    """SIGTERM (gunicorn finishes what it has, then exits), SIGKILL after the grace period."""
    if not is_running(pid, instance_id):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_running(pid, instance_id):
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
