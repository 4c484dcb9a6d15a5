"""The bubblewrap sandbox every flow process runs in (runtime/sandbox.py)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import sandbox
from runtime.sandbox import Sandbox, SandboxUnavailable, pip_environment


def run(box: Sandbox, script: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        box.wrap(["/bin/sh", "-c", script], **kwargs), capture_output=True, text=True, timeout=30, check=False
    )


def test_it_shows_only_the_paths_it_is_given(tmp_path):
    """A sibling of a writable folder does not exist inside; the writable folder takes writes on the host."""
    (tmp_path / "secret").write_text("studio secret")
    work = tmp_path / "work"
    work.mkdir()
    result = run(Sandbox(writable=(work,)), f"cat {tmp_path}/secret; echo made > {work}/out; ls {tmp_path}")
    assert "studio secret" not in result.stdout
    assert "No such file" in result.stderr
    assert result.stdout.split() == ["work"]
    assert (work / "out").read_text() == "made\n"


def test_it_keeps_read_only_paths_read_only(tmp_path):
    (tmp_path / "runtime.py").write_text("original")
    result = run(Sandbox(read_only=(tmp_path,)), f"cat {tmp_path}/runtime.py && echo changed > {tmp_path}/runtime.py")
    assert result.stdout == "original"
    assert "Read-only file system" in result.stderr
    assert (tmp_path / "runtime.py").read_text() == "original"


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A folder outside /tmp (inside the sandbox, /tmp is a private tmpfs of its own), also when this checkout
    itself is under /tmp."""
    root = Path(__file__).resolve().parents[2] / "var" / "test"
    if root.is_relative_to("/tmp"):
        root = Path.home() / ".cache" / "flowdeploy" / "test-sandbox"
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=root))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_it_makes_everything_else_read_only(outside_tmp):
    """The folders bwrap creates to hold a mount are empty and take no writes; /tmp is private and writable."""
    work = outside_tmp / "work"
    work.mkdir()
    result = run(Sandbox(writable=(work,)), f"echo x > {outside_tmp}/planted; echo y > /tmp/mine && cat /tmp/mine")
    assert "Read-only file system" in result.stderr
    assert result.stdout == "y\n"
    assert not (outside_tmp / "planted").exists()
    assert not list(Path("/tmp").glob("mine"))


def test_it_runs_as_an_unprivileged_user_in_its_own_pid_namespace():
    result = run(Sandbox(), "id -u; grep CapEff /proc/self/status; ls /proc | grep -c '^[0-9]'")
    uid, caps, processes = result.stdout.split("\n")[:3]
    assert uid == "65534"
    assert caps.split()[-1] == "0000000000000000"
    assert int(processes) <= 5, "only the sandbox's own processes are visible"


def test_it_hides_the_studios_environment_and_etc():
    result = run(Sandbox(), "ls /etc; cat /etc/shadow; echo $DJANGO_SECRET_KEY")
    assert "shadow" not in result.stdout.split()
    assert "passwd" not in result.stdout.split()


def test_it_gives_no_network_when_asked(tmp_path):
    script = "cat /proc/net/dev | tail -n +3 | cut -d: -f1"
    without = run(Sandbox(network=False), script).stdout.split()
    assert without == ["lo"]
    assert len(run(Sandbox(network=True), script).stdout.split()) >= 1


def test_it_refuses_an_unknown_mode(monkeypatch):
    monkeypatch.setenv("FLOWDEPLOY_SANDBOX", "maybe")
    with pytest.raises(SandboxUnavailable, match="FLOWDEPLOY_SANDBOX must be 'bwrap' or 'off'"):
        Sandbox().wrap(["/bin/true"])


def test_it_runs_the_command_itself_only_when_an_admin_turns_it_off(monkeypatch):
    monkeypatch.setenv("FLOWDEPLOY_SANDBOX", "off")
    assert Sandbox().wrap(["/bin/true"]) == ["/bin/true"]


def test_it_says_why_when_bubblewrap_cannot_start(monkeypatch):
    monkeypatch.setenv("FLOWDEPLOY_BWRAP", "/bin/false")
    sandbox.check_available.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match="cannot create a sandbox on this machine"):
            Sandbox().wrap(["/bin/true"])
    finally:
        sandbox.check_available.cache_clear()


def test_it_passes_pip_only_its_own_settings(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    studio = {
        "DJANGO_SECRET_KEY": "s3cret",
        "DATABASE_URL": "postgres://u:p@h/db",
        "PIP_INDEX_URL": "https://pypi.example/simple",
        "PIP_FIND_LINKS": str(wheels),
    }
    env, paths = pip_environment(studio)
    assert env == {"PIP_INDEX_URL": "https://pypi.example/simple", "PIP_FIND_LINKS": str(wheels)}
    assert paths == [wheels], "a local folder pip is told to use is bound read-only into its sandbox"


def test_it_stops_a_run_with_everything_it_started_when_its_parent_kills_it(tmp_path):
    """A run that times out is killed with its children: nothing of it keeps running."""
    marker = tmp_path / "work"
    marker.mkdir()
    process = subprocess.Popen(
        Sandbox(writable=(marker,)).wrap(["/bin/sh", "-c", f"(sleep 30; echo late > {marker}/late) & sleep 30"])
    )
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.5)
    process.kill()
    process.wait()
    leftover = subprocess.run(["pgrep", "-f", f"echo late > {marker}"], capture_output=True, text=True, check=False)
    assert leftover.stdout.strip() == ""
    assert not Path(marker / "late").exists()
