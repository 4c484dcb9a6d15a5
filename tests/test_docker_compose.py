"""The container files (Dockerfile, docker-compose.yml) stay consistent with the project.

No Docker engine is needed. When `docker compose` is installed, `docker compose config -q` validates the
file; the other tests read it with PyYAML and check that every command the containers run exists in
this repository, without importing Django.
"""

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

# `${VAR:?message}` or `${VAR?message}`: compose refuses to start unless VAR is set.
REQUIRED_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?[^}]*\}")
# Commands Django itself provides, that may appear in `python manage.py NAME`.
DJANGO_COMMANDS = {
    "check",
    "collectstatic",
    "createcachetable",
    "createsuperuser",
    "migrate",
    "showmigrations",
}
SHELL_SEPARATORS = re.compile(r"&&|\|\||;")


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def app_services() -> dict[str, dict]:
    """The services that run this project's image (built from the Dockerfile)."""
    return {name: spec for name, spec in services().items() if "build" in spec}


def required_vars() -> set[str]:
    return set(REQUIRED_VAR.findall(COMPOSE_FILE.read_text()))


def docker_compose_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def argv_of(command) -> list[str]:
    """A compose or Dockerfile command as argv: exec (list/JSON) form as is, shell form split."""
    if isinstance(command, list):
        return [str(part) for part in command]
    command = str(command).strip()
    if command.startswith("["):
        return json.loads(command)
    return shlex.split(command)


def simple_commands(argv: list[str]) -> list[list[str]]:
    """Unwrap `sh -c "a && b"` into [a, b]; anything else is one command."""
    if len(argv) >= 3 and Path(argv[0]).name in {"sh", "bash"} and argv[1] == "-c":
        return [shlex.split(part) for part in SHELL_SEPARATORS.split(argv[2]) if part.strip()]
    return [argv]


def defines(path: Path, name: str) -> bool:
    """Whether a module defines a top-level name (assignment, def, class or import), read with ast."""
    for statement in ast.parse(path.read_text()).body:
        if isinstance(statement, ast.Assign):
            targets = [t.id for t in statement.targets if isinstance(t, ast.Name)]
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            targets = [statement.target.id]
        elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            targets = [statement.name]
        elif isinstance(statement, ast.Import | ast.ImportFrom):
            targets = [(alias.asname or alias.name).split(".")[0] for alias in statement.names]
        else:
            continue
        if name in targets:
            return True
    return False


def module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def option_value(argv: list[str], *names: str) -> str | None:
    for index, part in enumerate(argv):
        for name in names:
            if part == name and index + 1 < len(argv):
                return argv[index + 1]
            if part.startswith(name + "="):
                return part.split("=", 1)[1]
    return None


def command_problems(argv: list[str]) -> list[str]:
    """What is missing from the project for this command to run; an empty list when it can."""
    if not argv:
        return ["empty command"]
    program = Path(argv[0]).name
    if program == "uvicorn":
        targets = [part for part in argv[1:] if not part.startswith("-") and ":" in part]
        if not targets:
            return [f"no module:attribute in {argv}"]
        module, _, attribute = targets[0].partition(":")
        path = module_file(module)
        if path is None:
            return [f"uvicorn target module {module} has no file {module.replace('.', '/')}.py"]
        if not defines(path, attribute):
            return [f"{path.relative_to(ROOT)} does not define {attribute!r} for uvicorn"]
        return []
    if program == "celery":
        app = option_value(argv, "-A", "--app")
        if app is None:
            return [f"celery without -A in {argv}"]
        path = ROOT.joinpath(*app.split(":")[0].split("."), "celery.py")
        if not path.is_file():
            return [f"celery -A {app} needs {path.relative_to(ROOT)}"]
        if not (defines(path, "app") or defines(path, "celery")):
            return [f"{path.relative_to(ROOT)} defines neither `app` nor `celery` for celery -A {app}"]
        return []
    if program.startswith("python") and len(argv) >= 3 and argv[1] == "-m":
        if module_file(argv[2]) is None:
            return [f"python -m {argv[2]}: no file {argv[2].replace('.', '/')}.py"]
        return []
    if program.startswith("python") and len(argv) >= 2 and argv[1] == "manage.py":
        if not (ROOT / "manage.py").is_file():
            return ["manage.py is missing"]
        if len(argv) < 3:
            return [f"no management command in {argv}"]
        name = argv[2]
        if name in DJANGO_COMMANDS or list(ROOT.glob(f"*/management/commands/{name}.py")):
            return []
        return [f"management command {name!r} is neither built into Django nor */management/commands/{name}.py"]
    return [f"unknown program {argv[0]!r}: teach tests/test_docker_compose.py how to check it"]


@pytest.mark.skipif(not docker_compose_works(), reason="docker compose is not installed here")
def test_it_passes_docker_compose_config():
    """`docker compose config -q` accepts the file when the required variables are set."""
    env = {**os.environ, **{name: "compose-config-check" for name in required_vars()}}
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_it_has_the_expected_services():
    """Postgres, Redis, the one-shot migration, the studio, the worker and beat are all defined."""
    assert set(services()) >= {"postgres", "redis", "migrate", "studio", "worker", "beat"}
    assert set(app_services()) >= {"migrate", "studio", "worker", "beat"}


def test_it_gives_every_service_an_image_or_a_build():
    """A service with neither could not start."""
    for name, spec in services().items():
        assert "image" in spec or "build" in spec, f"service {name} has neither image nor build"


def test_it_builds_every_app_service_from_the_one_dockerfile():
    """All app services share one build of the repository's Dockerfile and one image name."""
    specs = app_services().values()
    builds = {json.dumps(spec["build"], sort_keys=True) for spec in specs}
    images = {spec.get("image") for spec in specs}
    assert len(builds) == 1
    assert len(images) == 1
    build = next(iter(specs))["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (COMPOSE_FILE.parent / context / dockerfile).resolve() == DOCKERFILE
    assert DOCKERFILE.is_file()


def test_it_runs_app_commands_that_exist_in_the_project():
    """uvicorn targets, celery apps and manage.py commands named in compose all exist in the repo.

    `load_samples` is the project's own command (flows/management/commands/load_samples.py).
    """
    problems = []
    for name, spec in app_services().items():
        assert "command" in spec, f"app service {name} has no command"
        for argv in simple_commands(argv_of(spec["command"])):
            problems += [f"{name}: {problem}" for problem in command_problems(argv)]
    assert problems == []


def test_it_migrates_before_loading_samples():
    """The one-shot migrate service runs `migrate --noinput`, then `load_samples`, and does not restart."""
    spec = services()["migrate"]
    commands = simple_commands(argv_of(spec["command"]))
    assert [argv[:3] for argv in commands] == [
        ["python", "manage.py", "migrate"],
        ["python", "manage.py", "load_samples"],
    ]
    assert "--noinput" in commands[0]
    assert str(spec.get("restart", "no")) == "no"


def test_it_installs_the_programs_app_commands_use():
    """uvicorn and celery, which the services start, are dependencies in pyproject.toml."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower() for requirement in dependencies}
    programs = {
        Path(argv[0]).name for spec in app_services().values() for argv in simple_commands(argv_of(spec["command"]))
    }
    assert programs - {"python"} <= names


def test_it_only_depends_on_services_that_exist():
    """depends_on names defined services, with a condition each can meet."""
    defined = services()
    for name, spec in defined.items():
        depends_on = spec.get("depends_on") or {}
        if isinstance(depends_on, list):
            depends_on = {dependency: {} for dependency in depends_on}
        for dependency, options in depends_on.items():
            assert dependency in defined, f"{name} depends on unknown service {dependency}"
            assert dependency != name
            condition = (options or {}).get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in defined[dependency], f"{dependency} has no healthcheck for {name}"
            elif condition == "service_completed_successfully":
                assert str(defined[dependency].get("restart", "no")) == "no", (
                    f"{dependency} restarts, so it never completes for {name}"
                )
            else:
                assert condition == "service_started", f"{name}: unknown condition {condition}"


def test_it_waits_for_healthy_databases_and_a_finished_migration():
    """App services start after Postgres and Redis are healthy; the long-running ones after migrate."""
    for name, spec in app_services().items():
        depends_on = spec["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
        if name != "migrate":
            assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
    assert "pg_isready" in json.dumps(services()["postgres"]["healthcheck"]["test"])
    assert "redis-cli" in json.dumps(services()["redis"]["healthcheck"]["test"])


def test_it_points_app_services_at_the_compose_databases_and_a_shared_volume():
    """DATABASE_URL and REDIS_URL name compose services (Redis with its required password); every app service
    mounts the same /data volume."""
    defined = compose()
    for name, spec in app_services().items():
        environment = spec["environment"]
        assert re.fullmatch(r"postgres://[^@]+@postgres:5432/\w+", environment["DATABASE_URL"]), name
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD:\?[^}]+\}@redis:6379/\d+", environment["REDIS_URL"]), name
        mounts = [volume.split(":") for volume in spec["volumes"]]
        data = [source for source, target, *_ in mounts if target == "/data"]
        assert len(data) == 1, f"{name} does not mount /data"
        assert data[0] in (defined.get("volumes") or {}), f"{name}: volume {data[0]} is not declared"
    sources = {volume for spec in app_services().values() for volume in spec["volumes"]}
    assert len({source.split(":")[0] for source in sources if source.endswith(":/data")}) == 1


def test_it_requires_the_secrets_from_the_environment():
    """The secret keys and allowed hosts have no default: compose stops with a message when unset."""
    assert required_vars() >= {"DJANGO_SECRET_KEY", "FLOWDEPLOY_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "REDIS_PASSWORD"}
    for spec in app_services().values():
        for name in ("DJANGO_SECRET_KEY", "FLOWDEPLOY_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"):
            assert REQUIRED_VAR.fullmatch(spec["environment"][name]), name


def test_it_documents_every_required_variable_in_env_example():
    """Each `${VAR:?...}` in docker-compose.yml appears as `VAR=` (or `# VAR=`) in .env.example."""
    assert ENV_EXAMPLE.is_file(), (
        ".env.example is missing: it must document the variables docker-compose.yml requires: "
        + ", ".join(sorted(required_vars()))
    )
    text = ENV_EXAMPLE.read_text()
    missing = [name for name in sorted(required_vars()) if not re.search(rf"^\s*#?\s*{name}\s*=", text, re.MULTILINE)]
    assert missing == [], f".env.example does not document {missing}"


def test_it_builds_a_non_root_image_that_starts_the_studio():
    """The Dockerfile's base, install, data directories, user, port and CMD are as documented."""
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    arguments = {keyword: [args for k, args in instructions if k == keyword] for keyword in keywords}
    assert arguments["FROM"] == ["python:3.11-slim"]
    assert any(re.search(r"\bpip install (--no-cache-dir )?\.(\s|$|&)", args) for args in arguments["RUN"])
    environment = " ".join(arguments["ENV"])
    assert "FLOWDEPLOY_DATA_DIR=/data" in environment
    assert "FLOWDEPLOY_RUNTIME_DIR=/data/runtime" in environment
    assert arguments["USER"][-1] not in {"root", "0"}
    assert keywords.index("USER") < keywords.index("CMD")
    assert arguments["EXPOSE"] == ["8000"]
    assert argv_of(arguments["CMD"][-1]) == [
        "uvicorn",
        "config.asgi:application",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]


def test_it_starts_the_dockerfile_cmd_from_an_existing_module():
    """The module and attribute the Dockerfile's CMD serves exist in the project."""
    cmd = [args for keyword, args in dockerfile_instructions() if keyword == "CMD"][-1]
    assert command_problems(argv_of(cmd)) == []


def test_it_keeps_secrets_and_local_state_out_of_the_build_context():
    """.dockerignore leaves out .git, the local virtualenv and .env files, but keeps .env.example."""
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "var"} <= patterns
    assert "!.env.example" in patterns
    for needed in ("pyproject.toml", "manage.py", "config", "runtime", "samples", "templates", "static"):
        assert needed not in patterns


def test_it_lets_the_app_services_make_flow_sandboxes():
    """bubblewrap needs user namespaces, which Docker's default seccomp and AppArmor profiles refuse."""
    for name, spec in app_services().items():
        assert {"seccomp=unconfined", "apparmor=unconfined"} <= set(spec.get("security_opt", [])), name


def test_it_gives_redis_a_password():
    redis = compose()["services"]["redis"]
    assert "--requirepass" in redis["command"]
