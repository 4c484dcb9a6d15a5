"""`make run`: prepare the studio and run every process it needs until Ctrl-C.

Redis (started only when none answers on REDIS_URL), the Celery worker and beat, and the
studio on http://127.0.0.1:8000. Any process that dies stops the rest, with its name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.local_services import redis_answers, start_redis, with_new_password  # noqa: E402
from runtime import sandbox  # noqa: E402
from serving import secret_key  # noqa: E402
from serving.server import gateway_command  # noqa: E402

BIN = Path(sys.executable).parent
STUDIO_HOST = os.environ.get("FLOWDEPLOY_HOST", "127.0.0.1")
STUDIO_PORT = os.environ.get("FLOWDEPLOY_PORT", "8000")
GATEWAY_PORT = os.environ.get("FLOWDEPLOY_GATEWAY_PORT", "8001")


def manage(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, check=True)


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Instances fetch their connections from this studio; clients score through this gateway.
    os.environ.setdefault("FLOWDEPLOY_STUDIO_URL", f"http://{STUDIO_HOST}:{STUDIO_PORT}")
    os.environ.setdefault("FLOWDEPLOY_GATEWAY_URL", f"http://{STUDIO_HOST}:{GATEWAY_PORT}")
    data_dir = Path(os.environ.get("FLOWDEPLOY_DATA_DIR", ROOT / "var"))
    data_dir.mkdir(parents=True, exist_ok=True)
    # Every child (and anything started by hand later) finds the key the same way: DJANGO_SECRET_KEY or this file.
    created = secret_key.ensure_file()
    if created:
        print(f"Created a secret key in {created}: keep it, it signs sessions and tokens and encrypts secrets.")
    try:
        secret_key.find()
    except secret_key.SecretKeyError as exc:
        print(exc, file=sys.stderr)
        return 1
    warn_without_sandbox()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if not redis_answers(redis_url):
        # The Redis this script starts requires a password that flow processes (which share the network) never get.
        redis_url = os.environ["REDIS_URL"] = with_new_password(redis_url)
    children: list[tuple[str, subprocess.Popen]] = []
    try:
        redis = start_redis(redis_url, data_dir / "redis")
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    if redis:
        children.append(("redis", redis))
        print(f"Started Redis on {redis_url.rsplit('@', 1)[-1]} (with a password of its own)")
    try:
        print("Preparing the database...")
        manage("migrate", "--noinput", "-v", "0")
        manage("collectstatic", "--noinput", "-v", "0")
        manage("ensure_admin")
        manage("build_runtime")
        print("Loading the sample flows...")
        manage("load_samples")
    except subprocess.CalledProcessError as exc:
        print(f"Preparation failed: {' '.join(exc.cmd[2:])} exited with {exc.returncode}", file=sys.stderr)
        _stop(children)
        return 1
    try:
        gateway = gateway_command(BIN, STUDIO_HOST, GATEWAY_PORT)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        _stop(children)
        return 1
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    queue = os.environ.get("FLOWDEPLOY_QUEUE", "flowdeploy")
    commands = {
        # Deployments, deletions and the reconciler on one worker; test and bulk runs, which can take long,
        # on their own (config/celery.py routes them), so a long run never delays crash recovery.
        "worker": worker_command(queue, queue),
        "worker-runs": worker_command(f"{queue}-runs", f"{queue}-runs"),
        "beat": [
            str(BIN / "celery"),
            "-A",
            "config",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(data_dir / "celerybeat-schedule"),
        ],
        "studio": [
            str(BIN / "uvicorn"),
            "config.asgi:application",
            "--host",
            STUDIO_HOST,
            "--port",
            STUDIO_PORT,
            "--log-level",
            "warning",
        ],
        "gateway": [*gateway, "--log-level", "warning"],
    }
    for name, command in commands.items():
        log = (logs / f"{name}.log").open("a")
        children.append(
            (
                name,
                subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True),
            )
        )
    print(f"\nFlowdeploy is running: open http://{STUDIO_HOST}:{STUDIO_PORT}/")
    print(f"Scoring gateway: http://{STUDIO_HOST}:{GATEWAY_PORT}/endpoints/<endpoint>/score")
    print(f"Logs: {logs}/{{worker,worker-runs,beat,studio,gateway}}.log. Press Ctrl-C to stop everything.\n")
    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    while not stopping:
        for name, process in children:
            if process.poll() is not None:
                print(
                    f"{name} stopped with exit code {process.returncode}; stopping the rest. See {logs}/{name}.log",
                    file=sys.stderr,
                )
                stopping, exit_code = True, 1
                break
        time.sleep(0.5)
    print("Stopping...")
    _stop(children)
    _stop_instances()
    return exit_code


def worker_command(queue: str, name: str) -> list[str]:
    command = [str(BIN / "celery"), "-A", "config", "worker", "-Q", queue, "--hostname", f"{name}@%h"]
    return [*command, "--loglevel", "INFO", "--concurrency", "2"]


def warn_without_sandbox() -> None:
    """Flows only run sandboxed: say so now, not at the first import, when this machine cannot make a sandbox."""
    try:
        if sandbox.mode() == "off":
            print("WARNING: FLOWDEPLOY_SANDBOX=off: flows run unsandboxed. See docs/security.md.", file=sys.stderr)
            return
        sandbox.check_available(sandbox.bwrap_binary())
    except sandbox.SandboxUnavailable as exc:
        print(f"WARNING: {exc}\nThe studio starts; importing, testing and deploying flows will fail.", file=sys.stderr)


def _stop_instances() -> None:
    """Instances run detached (a worker restart must not kill them); on Ctrl-C they stop too."""
    try:
        manage("stop_instances")
    except subprocess.CalledProcessError as exc:
        print(f"Could not stop the instance processes: exit code {exc.returncode}", file=sys.stderr)


def _stop(children: list[tuple[str, subprocess.Popen]]) -> None:
    for _, process in reversed(children):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for _, process in reversed(children):
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
