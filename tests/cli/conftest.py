"""Run `flowdeploy` in-process against the live test server, as a signed-in Owner of the default project."""

import json
import threading
from dataclasses import dataclass

import pytest
from cli_support import PASSWORD, member

from django.db import connection

from api.models import PersonalAccessToken
from cli.main import main
from endpoints import services
from endpoints.models import Deployment, DeploymentState, Phase
from workspace.models import ProjectRole


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)


@pytest.fixture
def staff(transactional_db, django_user_model):
    """Owner of the default project."""
    return member(django_user_model.objects.create_user("ops", password=PASSWORD, is_staff=True), ProjectRole.OWNER)


@pytest.fixture
def reader(transactional_db, django_user_model):
    """Reader of the default project."""
    return member(django_user_model.objects.create_user("reader", password=PASSWORD), ProjectRole.READER)


@pytest.fixture
def home(monkeypatch, tmp_path):
    """A home and config folder of the test's own, and no studio settings from the environment."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("FLOWDEPLOY_URL", raising=False)
    monkeypatch.delenv("FLOWDEPLOY_TOKEN", raising=False)
    monkeypatch.delenv("FLOWDEPLOY_PROJECT", raising=False)
    monkeypatch.setenv("FLOWDEPLOY_POLL_INTERVAL", "0.1")
    return tmp_path


@pytest.fixture
def run(home, capsys):
    """run("online-endpoint", "list") -> Result(exit code, stdout, stderr)."""

    def runner(*argv: str) -> Result:
        capsys.readouterr()
        code = main([str(arg) for arg in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return runner


@pytest.fixture
def cli(run, live_server, staff, redis_url, monkeypatch):
    """`run`, signed in through FLOWDEPLOY_URL and FLOWDEPLOY_TOKEN."""
    monkeypatch.setenv("FLOWDEPLOY_URL", live_server.url)
    monkeypatch.setenv("FLOWDEPLOY_TOKEN", PersonalAccessToken.issue(staff)[1])
    return run


@pytest.fixture
def provisioning(monkeypatch):
    """Stand in for the Celery task: walk the deployment through its phases in a thread, to `outcome`.

    Used where a test is about the command, not the provisioning (the end-to-end test uses the real worker).
    """

    class Fake:
        outcome = DeploymentState.SUCCEEDED
        reason = ""
        threads: list[threading.Thread] = []

    def walk(deployment_id: int) -> None:
        try:
            deployment = Deployment.objects.get(pk=deployment_id)
            for phase in (Phase.VALIDATING, Phase.CREATING_DEPLOYMENT):
                threading.Event().wait(0.2)
                deployment.set_phase(phase, f"{phase} (simulated).")
            threading.Event().wait(0.2)
            Deployment.objects.filter(pk=deployment_id).update(
                state=Fake.outcome, failure_reason=Fake.reason, live_generation=deployment.generation
            )
            deployment.set_phase(Fake.outcome, f"Deployment {Fake.outcome.lower()} (simulated).")
        finally:
            connection.close()

    def dispatch(deployment, tasks) -> None:
        thread = threading.Thread(target=walk, args=(deployment.pk,), daemon=True)
        Fake.threads.append(thread)
        thread.start()

    monkeypatch.setattr(services, "_dispatch_provisioning", dispatch)
    yield Fake
    for thread in Fake.threads:
        thread.join(timeout=10)


@pytest.fixture
def deletions(monkeypatch):
    """Record the deletion tasks instead of sending them, so a worker left running by another test
    does not finish the deletion before the test looks."""
    from endpoints import tasks

    sent: list[tuple[str, int]] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        def delay(self, pk: int, notification_id: int | None = None) -> None:
            sent.append((self.name, pk))

    monkeypatch.setattr(tasks, "delete_endpoint", Recorder("delete_endpoint"))
    monkeypatch.setattr(tasks, "delete_deployment", Recorder("delete_deployment"))
    return sent
