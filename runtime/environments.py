"""Build and find the virtualenvs that flows run in.

The base runtime is a virtualenv built from `runtime/requirements.txt`, named by a hash of that
file and of the Python version, so a change of pins builds a new one and an old one is never
modified in place. A flow with its own `requirements.txt` gets a layer on top: a small
virtualenv whose `.pth` file puts the base runtime's site-packages on its path, holding only
what the flow adds. Layers are named by a hash of the base and of the requirements text, so
flows with the same requirements share one.

Builds happen in a temporary folder renamed into place when complete, under a file lock, so
two workers never build the same environment twice and a crash never leaves half an
environment behind. This module imports nothing from Django: callers pass the folders.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from runtime.requirements_policy import base_pins, requirement_problems, without_runtime_provided
from runtime.sandbox import Sandbox, SandboxUnavailable, pip_environment

logger = logging.getLogger(__name__)

RUNTIME_DIR = Path(__file__).resolve().parent
BASE_REQUIREMENTS = RUNTIME_DIR / "requirements.txt"
RUNNER = RUNTIME_DIR / "runner.py"
PF_CONFIG = "telemetry:\n  enabled: 'false'\n"


class EnvironmentBuildError(Exception):
    """pip or venv failed; the message is what a user needs to fix it."""


@dataclass(frozen=True)
class Environment:
    path: Path
    base: Path | None = None  # the base runtime a layer's .pth points into

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def runtime_paths(self) -> tuple[Path, ...]:
        """The folders a flow process must read: this environment, and the base under a layer."""
        return (self.path,) if self.base is None else (self.path, self.base)

    def process_env(self, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A clean environment for a flow process: none of the studio's own settings or secrets.

        `home` is the process's own writable folder (its HOME and promptflow's home), inside its sandbox.
        """
        env = {
            "PATH": f"{self.path / 'bin'}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(home),
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            # The sandbox has no /etc/passwd: getpass.getuser() reads these first.
            "USER": "flow",
            "LOGNAME": "flow",
            "VIRTUAL_ENV": str(self.path),
            "PF_HOME_DIRECTORY": str(prepare_pf_home(home)),
            "PF_DISABLE_TRACING": "true",
            # promptflow's serving app loads Azure Monitor's exporter, which otherwise calls
            # settings.sdk.monitor.azure.com for its configuration and sends statsbeat telemetry.
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "PYTHONNOUSERSITE": "1",
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        env.update(extra or {})
        return env

    def flow_process(
        self,
        command: list[str],
        *,
        home: Path,
        read_only: tuple[Path, ...] = (),
        writable: tuple[Path, ...] = (),
        network: bool = True,
        detached: bool = False,
        cwd: Path | None = None,
        extra_env: dict[str, str] | None = None,
        sandbox_args: tuple[str, ...] = (),
    ) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that run `command` with this environment, sandboxed.

        The process sees the runtime read-only, `home` and `writable` read-write, `read_only` read-only,
        and nothing else of this machine's files (runtime/sandbox.py). `detached` is for instances:
        they outlive the worker that starts them, and their gunicorn is the sandbox's pid 1.
        """
        home.mkdir(parents=True, exist_ok=True)
        sandbox = Sandbox(
            read_only=(*self.runtime_paths(), *read_only),
            writable=(home, *writable),
            network=network,
            die_with_parent=not detached,
            as_pid_1=detached,
            extra_args=sandbox_args,
        )
        return sandbox.wrap(command, cwd=cwd), self.process_env(home, extra_env)


def prepare_pf_home(home: Path) -> Path:
    """promptflow's home inside a flow process's own folder, with telemetry off before the devkit's first call."""
    pf_home = home / "pf-home"
    pf_home.mkdir(parents=True, exist_ok=True)
    config = pf_home / "pf.yaml"
    if not config.exists():
        config.write_text(PF_CONFIG)
    return pf_home


def _digest(*parts: str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode())
        hasher.update(b"\0")
    return hasher.hexdigest()[:16]


def normalise_requirements(text: str) -> str:
    """Requirements without comments, blank lines or ordering, so equivalent files share a layer."""
    lines = set()
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.add(line)
    return "\n".join(sorted(lines))


def base_key() -> str:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"py{version}-{_digest(version, BASE_REQUIREMENTS.read_text())}"


def layer_requirements(requirements: str) -> str:
    """What pip installs for a flow: its requirements, normalised, without the lines naming promptflow,
    which the base runtime provides (runtime/requirements_policy.py)."""
    return normalise_requirements(without_runtime_provided(requirements))


def _satisfied_by_base(line: str, pins: dict[str, Version]) -> bool:
    """A requirement by name, without extras or a URL, whose specifier the base runtime's pin meets."""
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return False
    pinned = pins.get(canonicalize_name(requirement.name))
    if pinned is None or requirement.extras or requirement.url is not None:
        return False
    if requirement.marker is not None and not requirement.marker.evaluate():
        return True
    return requirement.specifier.contains(pinned, prereleases=True)


def needs_layer(requirements: str) -> bool:
    """True when a flow asks for something the base runtime does not already give it."""
    pins = base_pins(BASE_REQUIREMENTS)
    for line in layer_requirements(requirements).splitlines():
        if _satisfied_by_base(line, pins):
            continue
        return True
    return False


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _removed_on_failure(folder: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _run(command: list[str], timeout: int, log: Path, env: dict | None = None) -> None:
    with log.open("a") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        try:
            completed = subprocess.run(
                command, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout, env=env, check=False
            )
        except subprocess.TimeoutExpired:
            raise EnvironmentBuildError(f"{command[0]} did not finish within {timeout} seconds.") from None
    if completed.returncode != 0:
        raise EnvironmentBuildError(_pip_failure(log))


def _pip_failure(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    errors = [line for line in lines if line.startswith("ERROR") or "No matching distribution" in line]
    picked = errors or lines[-12:]
    return "pip could not install the requirements:\n" + "\n".join(picked[-12:])


def _pip_env() -> dict[str, str]:
    """pip's environment for the base runtime, which installs only our own pinned requirements."""
    env = dict(os.environ)
    env.update({"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"})
    env.pop("PYTHONPATH", None)
    return env


def _sandboxed_pip(building: Path, base: Environment, requirements_file: Path) -> tuple[list[str], dict[str, str]]:
    """pip installing a flow's requirements: sandboxed (a package's setup code is the flow's code too), with a
    clean environment holding only pip's own settings, writing only into the layer being built."""
    settings, setting_paths = pip_environment(dict(os.environ))
    env = {
        "PATH": f"{building / 'bin'}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": "/tmp/home",
        "LANG": "C.UTF-8",
        "PYTHONNOUSERSITE": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        **settings,
    }
    install = [str(building / "bin" / "python"), "-m", "pip", "install", "--no-input", "-r", str(requirements_file)]
    sandbox = Sandbox(read_only=(*base.runtime_paths(), *setting_paths), writable=(building,), network=True)
    return sandbox.wrap(install, cwd=building), env


def ensure_base(root: Path, timeout: int = 1800) -> Environment:
    """The base runtime, built on first use."""
    target = root / f"base-{base_key()}"
    if (target / ".complete").exists():
        return Environment(target)
    with _locked(root / f".{target.name}.lock"):
        if (target / ".complete").exists():
            return Environment(target)
        building = root / f"{target.name}.building"
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        log = root / f"{target.name}.log"
        log.write_text("")
        logger.info("Building the base flow runtime in %s (log: %s)", target, log)
        with _removed_on_failure(building):
            _run([sys.executable, "-m", "venv", str(building)], timeout, log)
            pip = [str(building / "bin" / "python"), "-m", "pip", "install", "--no-input"]
            _run([*pip, "--upgrade", "pip"], timeout, log, env=_pip_env())
            _run([*pip, "-r", str(BASE_REQUIREMENTS)], timeout, log, env=_pip_env())
            _make_relocatable(building, target)
        building.rename(target)
        (target / ".complete").write_text(base_key())
    return Environment(target)


def _make_relocatable(building: Path, target: Path) -> None:
    """venv writes its own path into activate scripts and shebangs; point them at the final folder."""
    for script in (building / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            try:
                text = script.read_text()
            except UnicodeDecodeError:
                continue
            if str(building) in text:
                script.write_text(text.replace(str(building), str(target)))


def _site_packages(env_path: Path) -> Path:
    relative = Path(sysconfig.get_path("purelib")).relative_to(sysconfig.get_path("data"))
    return env_path / relative


def ensure_flow_environment(
    root: Path, requirements: str, timeout: int = 1800, allow_sources: bool = False
) -> Environment:
    """The environment for a flow: the base runtime, plus a layer when it has requirements of its own.

    Requirements that break runtime/requirements_policy.py are refused before pip sees them (the
    importer checks first; this guards every other caller, such as provisioning an older version).
    """
    problems = requirement_problems(requirements, allow_sources=allow_sources)
    if problems:
        raise EnvironmentBuildError("The requirements are not allowed:\n" + "\n".join(problems))
    base = ensure_base(root, timeout)
    wanted = layer_requirements(requirements)
    if not wanted or not needs_layer(wanted):
        return base
    target = root / "layers" / f"{base.path.name}-{_digest(wanted)}"
    if (target / ".complete").exists():
        return Environment(target, base.path)
    with _locked(root / "layers" / f".{target.name}.lock"):
        if (target / ".complete").exists():
            return Environment(target, base.path)
        building = target.with_name(target.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        log = target.with_name(target.name + ".log")
        log.write_text("")
        logger.info("Building a flow environment layer in %s", target)
        with _removed_on_failure(building):
            _run([sys.executable, "-m", "venv", "--without-pip", str(building)], timeout, log)
            site_packages = _site_packages(building)
            site_packages.mkdir(parents=True, exist_ok=True)
            (site_packages / "_flowdeploy_base.pth").write_text(str(_site_packages(base.path)) + "\n")
            requirements_file = building / "requirements.txt"
            requirements_file.write_text(wanted + "\n")
            try:
                command, env = _sandboxed_pip(building, base, requirements_file)
            except SandboxUnavailable as exc:
                raise EnvironmentBuildError(str(exc)) from None
            _run(command, timeout, log, env=env)
            _make_relocatable(building, target)
        building.rename(target)
        (target / ".complete").write_text(wanted)
    return Environment(target, base.path)


def environment_key(requirements: str) -> str:
    """A short name for the environment a flow with these requirements gets, without building it."""
    wanted = layer_requirements(requirements)
    if not wanted or not needs_layer(wanted):
        return f"base-{base_key()}"
    return f"base-{base_key()}-{_digest(wanted)}"
