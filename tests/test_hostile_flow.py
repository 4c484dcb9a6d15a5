"""A hostile flow attacks the studio at import, in a test run and as a deployment, and gets nowhere.

tests/fixtures/flows/hostile/spy.py runs when promptflow imports it (validation, a test run's and an
instance's start) and when it runs: it looks for the studio's secrets in its environment and in every
/proc/<pid>/environ it can see, reads the database, the secret key and other flows, lists the data
folder, and writes into the runtime, another flow's snapshot and the data folder. It reports what it
found in its output and, when it has a network, to a listener the test runs.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import FIXTURE_FLOWS, wait_for

from django.conf import settings
from django.db import connection

from endpoints import services as endpoint_services
from flows import services as flow_services
from flows.importing import import_folder
from flows.models import RunStatus, TestRun
from runtime.environments import ensure_base
from workspace.connections import ConnectionSpec, save_connection

pytestmark = pytest.mark.integration

CONNECTION_SECRET = f"connection-secret-{uuid.uuid4().hex}"


class Listener:
    """A TCP server on loopback that keeps every report a sandboxed process manages to send."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.reports: list[dict] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.socket.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.socket.accept()
            except TimeoutError:
                continue
            with client:
                client.settimeout(5)
                data = b""
                while chunk := client.recv(65536):
                    data += chunk
            self.reports.append(json.loads(data))

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.stop()


@pytest.fixture
def other_flow(import_flow):
    """Someone else's flow, whose snapshot the hostile flow must neither read nor change."""
    return import_flow("web-classification-offline")


@pytest.fixture
def other_connection(db):
    """A connection the hostile flow does not use: its secret must never reach it."""
    return save_connection(
        ConnectionSpec(name="someone_elses_openai", type="open_ai", secrets={"api_key": CONNECTION_SECRET})
    )


@pytest.fixture
def attack(tmp_path, listener, other_flow, other_connection, flow_runtime) -> dict:
    """What the hostile flow is told to try, written into its folder as targets.json."""
    data_dir = Path(settings.DATA_DIR)
    runtime = ensure_base(Path(settings.FLOWDEPLOY_RUNTIME_DIR)).path
    site_packages = next(runtime.glob("lib/python3*/site-packages"))
    host_tmp = Path("/tmp") / f"flowdeploy-pwned-{uuid.uuid4().hex}"
    targets = {
        "secrets": [settings.SECRET_KEY, CONNECTION_SECRET],
        "read": [
            str(connection.settings_dict["NAME"]),
            str(data_dir / "secret-key"),
            str(data_dir / "admin-password.txt"),
            str(other_flow.snapshot_dir / "flow.dag.yaml"),
            str(Path(settings.BASE_DIR) / "config" / "settings.py"),
            "/etc/shadow",
        ],
        "list": [str(data_dir), str(settings.FLOWDEPLOY_FLOWS_DIR), str(settings.BASE_DIR), str(Path.home())],
        "write": [
            str(site_packages / "pwned.py"),
            str(other_flow.snapshot_dir / "pwned.txt"),
            str(data_dir / "pwned.txt"),
            str(Path(settings.BASE_DIR) / "pwned.txt"),
            str(host_tmp),
        ],
        "report": listener.address,
    }
    folder = tmp_path / "hostile"
    shutil.copytree(FIXTURE_FLOWS / "hostile", folder)
    (folder / "targets.json").write_text(json.dumps(targets))
    yield {"folder": folder, "targets": targets, "host_tmp": host_tmp}
    for path in targets["write"]:
        Path(path).unlink(missing_ok=True)


def assert_nothing_reached(found: dict, targets: dict) -> None:
    assert found["uid"] == 65534, "the flow runs as an unprivileged user"
    assert found["env_leaks"] == [], "no secret in its environment or in a file it read"
    assert found["proc_leaks"] == [], "no other process's environment"
    assert found["visible_pids"] <= 10, "its own pid namespace: the studio's processes are not there"
    assert found["read"] == [], "no studio file, database, key or other flow is readable"
    for path, entries in found["listed"].items():
        assert not {"flows", "secret-key", "admin-password.txt", "config", ".env"} & set(entries), path
        assert not any(entry.startswith(("test-db", "db.sqlite3")) for entry in entries), path
    written = [path for path in found["written"] if not path.startswith("/tmp/")]
    assert written == [], "the runtime, snapshots and the data folder are read-only or absent"


def assert_host_untouched(attack: dict) -> None:
    for path in attack["targets"]["write"]:
        assert not Path(path).exists(), f"{path} was written on the host"


def test_it_validates_a_hostile_flow_without_network_or_access(attack, listener):
    """The flow's code runs at import (promptflow imports it to validate) but reaches nothing, and has no
    network to report over."""
    version = import_folder(attack["folder"], "hostile", None)
    assert version.outputs
    assert_host_untouched(attack)
    assert listener.reports == [], "validation has no network"


def test_it_runs_a_hostile_flow_in_a_test_run_that_sees_nothing(attack, listener):
    version = import_folder(attack["folder"], "hostile", None)
    run = flow_services.start_test_run(version, {"question": "x"}, None)
    flow_services.execute_test_run(str(run.pk))
    run = TestRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.COMPLETED, run.error
    assert_nothing_reached(run.outputs["findings"], attack["targets"])
    stages = {report["stage"] for report in listener.reports}
    assert stages == {"import", "run"}, "a test run has a network: both reports arrive, and show nothing"
    for report in listener.reports:
        assert_nothing_reached(report, attack["targets"])
    assert_host_untouched(attack)


def test_it_serves_a_hostile_flow_from_an_instance_that_sees_nothing(attack, listener, deploy):
    version = import_folder(attack["folder"], "hostile", None)
    deployment = deploy(version, endpoint="ep-hostile")
    key = endpoint_services.credentials(deployment.endpoint)["primaryKey"]
    response = httpx.post(
        f"{settings.FLOWDEPLOY_GATEWAY_URL}/endpoints/ep-hostile/score",
        json={"question": "x"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert_nothing_reached(response.json()["findings"], attack["targets"])
    wait_for(lambda: {"import", "run"} <= {r["stage"] for r in listener.reports}, timeout=10)
    for report in listener.reports:
        assert_nothing_reached(report, attack["targets"])
    assert_host_untouched(attack)
