"""Shared fixtures: a real Redis, a real Celery worker, the real flow runtime and a local LLM server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import llm_server
import pytest
from support import FIXTURE_FLOWS, LLM_KEY, wait_for

from config.local_services import start_redis

ROOT = Path(__file__).resolve().parent.parent


def sweep_instance_processes(data_dir: Path) -> int:
    """Stop every instance process whose folder is under data_dir: tests must not leave servers behind."""
    import signal

    marker = f"--chdir\0{data_dir}/".encode()
    stopped = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker not in cmdline.read_bytes():
                continue
            pid = int(cmdline.parent.name)
            os.killpg(pid, signal.SIGKILL)
            stopped += 1
        except (OSError, ValueError):
            continue
    return stopped


def wait_until_provisioning_idle(timeout: float = 90) -> None:
    """Let the session's workers finish what a test left behind (a rollout's retirement, a deletion's
    handover, a deletion retried a few seconds later): the next test's rows may reuse the same ids, and a job
    still running or waiting for the old ones would act on the new ones. Tasks a worker runs, holds or has
    scheduled for later all count, and so do tasks still in the broker's queues."""
    from django.conf import settings

    from config.celery import app, runs_queue

    names = [f"{role}-{os.getpid()}@{os.uname().nodename}" for role in ("test", "test-runs")]
    queues = [settings.CELERY_TASK_DEFAULT_QUEUE, runs_queue()]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inspect = app.control.inspect(destination=names, timeout=1.0)
        busy = False
        for answer in (inspect.active(), inspect.reserved(), inspect.scheduled()):
            busy = busy or answer is None or any(answer.get(name) for name in names)
        with app.connection_for_write() as connection:
            client = connection.default_channel.client
            busy = busy or any(client.llen(queue) for queue in queues)
        if not busy:
            return
        time.sleep(0.3)


@pytest.fixture(autouse=True)
def _no_instances_left_behind(request) -> Iterator[None]:
    yield
    if "celery_worker" in request.fixturenames:
        from django.conf import settings

        wait_until_provisioning_idle()
        sweep_instance_processes(Path(settings.DATA_DIR))


@pytest.fixture(scope="session", autouse=True)
def _session_data_dir() -> Iterator[None]:
    """Remove this session's data folder at the end, after stopping anything still running from it."""
    yield
    from django.conf import settings

    data_dir = Path(settings.DATA_DIR)
    if data_dir.name.startswith("session-"):
        sweep_instance_processes(data_dir)
        for child in data_dir.iterdir():  # the test database is Django's to remove
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            elif not child.name.startswith("test-db-"):
                child.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def fixture_flows() -> Path:
    return FIXTURE_FLOWS


@pytest.fixture
def isolated_flow_dirs(settings, tmp_path) -> Path:
    """Flow snapshots and runs in this test's own folder, to see exactly what an import leaves behind."""
    settings.FLOWDEPLOY_FLOWS_DIR = tmp_path / "flows"
    settings.FLOWDEPLOY_RUNS_DIR = tmp_path / "runs"
    return tmp_path


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    from django.conf import settings

    process = start_redis(settings.REDIS_URL, ROOT / "var" / "test" / "redis")
    yield settings.REDIS_URL
    if process is not None:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def flow_runtime():
    """The base flow runtime, built once per machine (minutes the first time, cached after)."""
    from django.conf import settings

    from runtime.environments import ensure_base

    return ensure_base(Path(settings.FLOWDEPLOY_RUNTIME_DIR), timeout=settings.FLOWDEPLOY_ENV_BUILD_TIMEOUT)


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup, django_db_blocker, redis_url, flow_runtime, live_server, tmp_path_factory
) -> Iterator[None]:
    """Real Celery workers on the test database and the test session's own queues, as `make run` starts them:
    one for the default queue (provisioning, reconciling) and one for test and bulk runs."""
    from django.conf import settings

    from config.celery import app, runs_queue

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "FLOWDEPLOY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        # Instances fetch their connections from the studio: the test session's live server.
        "FLOWDEPLOY_STUDIO_URL": live_server.url,
    }
    workers = []
    for role, queue in (("test", settings.CELERY_TASK_DEFAULT_QUEUE), ("test-runs", runs_queue())):
        log = (tmp_path_factory.mktemp("worker") / "worker.log").open("w+")
        hostname = f"{role}-{os.getpid()}"
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue]
        command += ["--concurrency", "2", "--loglevel", "INFO", "--hostname", f"{hostname}@%h"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        workers.append((f"{hostname}@{os.uname().nodename}", process, log))

    def answers() -> bool:
        for _, process, log in workers:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"the Celery worker exited:\n{log.read()[-3000:]}")
        names = [name for name, _, _ in workers]
        return len(app.control.ping(destination=names, timeout=0.5)) == len(names)

    wait_for(answers, timeout=60, message="the Celery workers did not answer a ping within 60 s")
    yield
    for _, process, _ in workers:
        process.terminate()
    for _, process, log in workers:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def local_llm() -> Iterator[str]:
    server = llm_server.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


@pytest.fixture
def import_flow(db, flow_runtime) -> Callable:
    """Import one of tests/fixtures/flows through the real importer (promptflow validates it)."""
    from flows.importing import import_folder

    def importer(name: str, as_name: str | None = None, user=None):
        return import_folder(FIXTURE_FLOWS / name, as_name or name, user)

    return importer


@pytest.fixture
def open_ai_connection(db, local_llm):
    """The OpenAI connection chat-basic uses, pointed at the local OpenAI-compatible server."""
    from workspace.connections import ConnectionSpec, save_connection

    spec = ConnectionSpec(
        name="open_ai_connection",
        type="open_ai",
        configs={"base_url": local_llm},
        secrets={"api_key": LLM_KEY},
    )
    return save_connection(spec)


@pytest.fixture
def copy_flow(tmp_path) -> Callable[[str], Path]:
    def copier(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(FIXTURE_FLOWS / name, target)
        for path in [target, *target.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        return target

    return copier


@pytest.fixture(scope="session")
def gateway_url(redis_url) -> Iterator[str]:
    """The real scoring gateway (uvicorn serving.gateway:app) on the test session's Redis."""
    from config.local_services import free_port
    from serving.server import gateway_command

    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url}
    from django.conf import settings

    log = open(Path(settings.DATA_DIR) / f"gateway-{port}.log", "w+")  # noqa: SIM115
    command = gateway_command(Path(sys.executable).parent, "127.0.0.1", port, env)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        import httpx

        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"the gateway exited:\n{log.read()[-3000:]}")
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout=30, message="the gateway did not become healthy")
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()


@pytest.fixture
def deploy(celery_worker, gateway_url, import_flow, settings) -> Callable:
    """Deploy a fixture flow through the services, provisioned by the real worker; wait until it succeeded
    and the real gateway answers for it. The studio (live_server) talks to this session's gateway."""
    from endpoints import services
    from endpoints.models import AuthType, DeploymentState, Endpoint

    settings.FLOWDEPLOY_GATEWAY_URL = gateway_url

    def deployer(flow, endpoint: str = "ep-pages", name: str = "blue", auth_type=AuthType.KEY, **values):
        """`flow` is a fixture flow's name, or a FlowVersion already imported."""
        version = import_flow(flow) if isinstance(flow, str) else flow
        target = Endpoint.objects.filter(name=endpoint).first() or services.create_endpoint(
            endpoint, auth_type=auth_type
        )
        values.setdefault("vm_size", "Standard_DS1_v2")
        deployment = services.create_or_update_deployment(target, name, version, **values)

        def settled() -> bool:
            deployment.refresh_from_db()
            return deployment.state in (DeploymentState.SUCCEEDED, DeploymentState.FAILED)

        wait_for(settled, timeout=180, message=f"{deployment} stayed {deployment.state}/{deployment.phase}")
        assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
        wait_for(
            lambda: gateway_applied(gateway_url, deployment),
            timeout=15,
            message=f"the gateway did not route {deployment}",
        )
        return deployment

    return deployer


def gateway_applied(gateway_url: str, deployment) -> bool:
    """The gateway knows the deployment once a pinned request gets past routing (any answer but 401/404/503)."""
    import httpx

    from endpoints import services
    from endpoints.models import AuthType

    endpoint = deployment.endpoint
    if endpoint.auth_type == AuthType.KEY:
        credential = services.credentials(endpoint)["primaryKey"]
    else:
        credential = services.issue_token(endpoint)["accessToken"]
    headers = {"Authorization": f"Bearer {credential}", "azureml-model-deployment": deployment.name}
    try:
        answer = httpx.post(f"{gateway_url}{endpoint.scoring_path}", json={}, headers=headers, timeout=30)
    except httpx.HTTPError:
        return False
    return answer.status_code not in (401, 404, 503)


# One Chromium for the whole session, shared by tests/browser and tests/monitoring: Playwright's sync API
# runs an event loop in this thread, so a second sync_playwright() in the same session would fail.
CHROMIUM = os.environ.get("FLOWDEPLOY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Playwright's sync API runs an event loop in this thread; Django's ORM calls from fixtures are still
# made synchronously, one at a time, so its async-safety guard does not apply.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is missing at {CHROMIUM}; `make test` installs it (scripts/ensure_chromium.sh).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that deployed something says why each deployment ended as it did: CI keeps no database."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or "celery_worker" not in item.fixturenames:
        return
    try:
        from endpoints.models import Deployment

        lines = []
        for deployment in Deployment.objects.select_related("endpoint"):
            lines.append(f"{deployment}: {deployment.state}/{deployment.phase} {deployment.failure_reason!r}")
            for event in deployment.events.order_by("pk"):
                lines.append(f"    {event.phase}: {event.message}")
        report.sections.append(("deployments at failure", "\n".join(lines) or "(none)"))
    except Exception as exc:  # a diagnostic must never hide the test's own failure
        report.sections.append(("deployments at failure", f"could not read them: {exc!r}"))
