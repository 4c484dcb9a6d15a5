"""`make run` (scripts/run.py) brings the whole studio up, with the samples, and Ctrl-C stops it all."""

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from support import wait_for

from config.local_services import free_port, redis_answers

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _sign_in(base: str, password: str) -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/accounts/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": "admin", "password": password, "csrfmiddlewaretoken": token})
    request = urllib.request.Request(f"{base}/accounts/login/", data=form.encode(), headers={"Referer": base})
    opener.open(request).read()
    return opener


def _redis_reply(port: int, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(command + b"\r\n")
        return sock.recv(64).split(b" ")[0].strip()


def test_it_starts_everything_loads_the_samples_and_stops_on_ctrl_c(tmp_path, flow_runtime):
    studio_port, redis_port, gateway_port = free_port(), free_port(), free_port()
    password = "run-test-password-1"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "FLOWDEPLOY_DATA_DIR": str(tmp_path / "data"),
        "FLOWDEPLOY_PORT": str(studio_port),
        "FLOWDEPLOY_GATEWAY_PORT": str(gateway_port),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "FLOWDEPLOY_QUEUE": f"run-test-{os.getpid()}",
        "FLOWDEPLOY_ADMIN_PASSWORD": password,
        "DJANGO_CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{studio_port}",
    }
    env.pop("DATABASE_URL", None)
    log = (tmp_path / "run.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "scripts/run.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )

    def output() -> str:
        log.flush()
        return (tmp_path / "run.log").read_text()

    try:
        wait_for(lambda: "Flowdeploy is running" in output() or process.poll() is not None, timeout=240)
        assert process.poll() is None, output()
        text = output()
        assert f"Started Redis on 127.0.0.1:{redis_port}/0 (with a password of its own)" in text
        assert _redis_reply(redis_port, b"PING") == b"-NOAUTH", "flows share the network: Redis needs a password"
        assert "Sign in as 'admin' with FLOWDEPLOY_ADMIN_PASSWORD." in text
        for sample in ("chat-basic", "chat-stream-offline", "web-classification-offline", "with-requirements"):
            assert f"{sample}: imported version 1" in text
        base = f"http://127.0.0.1:{studio_port}"
        wait_for(lambda: _port_open(studio_port), timeout=30, message="the studio did not open its port")
        flows_page = _sign_in(base, password).open(f"{base}/flows/").read().decode()
        wait_for(lambda: _port_open(gateway_port), timeout=30, message="the gateway did not open its port")
        health = urllib.request.urlopen(f"http://127.0.0.1:{gateway_port}/health").read().decode()
        assert '"status"' in health
        assert "web-classification-offline" in flows_page
        assert "Sign out" in flows_page
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        log.close()
    assert process.returncode == 0, output()
    time.sleep(0.5)
    assert not _port_open(studio_port)
    assert not _port_open(gateway_port)
    assert not redis_answers(f"redis://127.0.0.1:{redis_port}/0")
    leftovers = subprocess.run(["pgrep", "-f", env["FLOWDEPLOY_QUEUE"]], capture_output=True, text=True)
    assert leftovers.stdout == "", "the Celery worker or beat outlived Ctrl-C"
