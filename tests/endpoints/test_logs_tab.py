"""A deployment's Logs tab: an instance's log (choose the instance, the number of lines, follow it live) and
the deployment's events; one test reads a real instance's gunicorn log."""

import re

import pytest
from roles import member
from support import wait_for

from endpoints.models import Deployment, DeploymentEvent, DeploymentState, Endpoint, Instance, InstanceState
from flows.models import Flow, FlowSource, FlowVersion

pytestmark = pytest.mark.django_db

LOGS = "/deployments/ep-logs/blue/logs/"


@pytest.fixture
def deployment(settings, tmp_path):
    """blue, succeeded, its generation 2 live; nothing runs: the tests write the log files themselves."""
    settings.FLOWDEPLOY_DEPLOYMENTS_DIR = tmp_path / "deployments"
    flow = Flow.objects.create(name="web")
    version = FlowVersion.objects.create(flow=flow, version=1, content_hash="web-hash", source=FlowSource.FOLDER)
    endpoint = Endpoint.objects.create(name="ep-logs", traffic={"blue": 100})
    return Deployment.objects.create(
        endpoint=endpoint,
        name="blue",
        flow_version=version,
        state=DeploymentState.SUCCEEDED,
        phase="Succeeded",
        generation=2,
        live_generation=2,
    )


def _instance(deployment, generation, ordinal, state=InstanceState.READY, log=None):
    instance = Instance.objects.create(deployment=deployment, generation=generation, ordinal=ordinal, state=state)
    if log is not None:
        instance.log_path.parent.mkdir(parents=True, exist_ok=True)
        instance.log_path.write_text(log)
    return instance


def _numbered(name, count=300):
    return "".join(f"{name} line {n}\n" for n in range(1, count + 1))


def _log_tag(html):
    """The opening tag of the log fragment: where following puts its polling."""
    return '<div id="log"' + html.split('<div id="log"', 1)[1].split(">", 1)[0] + ">"


def _log_text(html):
    return html.split('<pre id="log-text">', 1)[1].split("</pre>", 1)[0]


@pytest.fixture
def instances(deployment):
    """Two live instances of generation 2 and a stopped one of generation 1 whose log is still there."""
    return {
        "new-1": _instance(deployment, 2, 1, log=_numbered("new-1")),
        "new-2": _instance(deployment, 2, 2, log=_numbered("new-2")),
        "old-1": _instance(deployment, 1, 1, InstanceState.STOPPED, log=_numbered("old-1")),
    }


@pytest.fixture
def viewer(client, django_user_model):
    """A signed-in Contributor of the default project: instance logs can hold inputs (Action.READ_DATA)."""
    user = member(django_user_model.objects.create_user("viewer", password="viewer-pass-1"), "contributor")
    client.force_login(user)
    return client


def test_it_shows_the_last_100_lines_of_the_first_live_instance(viewer, instances):
    response = viewer.get(LOGS)
    assert response.status_code == 200
    assert "endpoints/deployment_logs.html" in [t.name for t in response.templates]
    html = response.content.decode()
    assert _log_text(html).splitlines() == [f"new-1 line {n}" for n in range(201, 301)]
    assert "Last 100 lines of Instance 1 · generation 2 · Ready" in html
    assert 'aria-current="page">Logs</a>' in html


def test_it_lists_the_instances_newest_generation_first_with_old_ones_while_their_log_exists(
    viewer, deployment, instances
):
    _instance(deployment, 1, 2, InstanceState.STOPPED)  # stopped and its log is gone: not listed
    html = viewer.get(LOGS).content.decode()
    options = html.split('<select id="log-instance" name="instance">', 1)[1].split("</select>", 1)[0]
    assert re.findall(r"<option [^>]*>([^<]*)</option>", options) == [
        "Instance 1 · generation 2 · Ready",
        "Instance 2 · generation 2 · Ready",
        "Instance 1 · generation 1 · Stopped",
    ]
    assert f'<option value="{instances["new-1"].id}" selected>' in options


def test_it_shows_the_chosen_instance_and_number_of_lines(viewer, instances):
    old = instances["old-1"]
    html = viewer.get(LOGS, {"instance": str(old.id), "lines": "3"}).content.decode()
    assert _log_text(html).splitlines() == ["old-1 line 298", "old-1 line 299", "old-1 line 300"]
    assert f'<option value="{old.id}" selected>' in html
    assert 'value="3"' in html
    assert "Last 3 lines of Instance 1 · generation 1 · Stopped" in html


def test_it_shows_up_to_5000_lines(viewer, deployment):
    _instance(deployment, 2, 1, log="".join(f"{n:06d} " + "x" * 100 + "\n" for n in range(6000)))
    shown = _log_text(viewer.get(LOGS, {"lines": "5000"}).content.decode()).splitlines()
    assert len(shown) == 5000
    assert shown[0].startswith("001000 ") and shown[-1].startswith("005999 ")


def test_it_shows_a_last_line_still_being_written(viewer, deployment):
    """gunicorn may not have finished a line: it is shown as it is."""
    _instance(deployment, 2, 1, log="first\nsecond\nthird, not finished")
    assert _log_text(viewer.get(LOGS, {"lines": "2"}).content.decode()) == "second\nthird, not finished"


@pytest.mark.parametrize("lines", ["0", "5001", "many", "-3", "2.5"])
def test_it_names_the_lines_field_when_the_number_is_wrong(viewer, instances, lines):
    response = viewer.get(LOGS, {"lines": lines})
    assert response.status_code == 200
    html = response.content.decode()
    assert f"Lines: a whole number from 1 to 5000, not &#x27;{lines}&#x27;." in html
    assert '<pre id="log-text">' not in html
    assert "hx-trigger" not in _log_tag(viewer.get(LOGS, {"lines": lines, "follow": "on"}).content.decode())
    assert f'value="{lines}" aria-invalid="true"' in html


def test_it_polls_every_2_seconds_while_following(viewer, instances):
    chosen = instances["new-2"]
    html = viewer.get(LOGS, {"instance": str(chosen.id), "lines": "50", "follow": "on"}).content.decode()
    tag = _log_tag(html)
    assert 'hx-trigger="every 2s"' in tag and 'hx-target="this"' in tag
    assert f'hx-get="{LOGS}?instance={chosen.id}&amp;lines=50&amp;follow=on"' in tag
    assert 'id="log-follow" name="follow" type="checkbox" value="on" checked' in html


def test_it_does_not_poll_when_not_following(viewer, instances):
    html = viewer.get(LOGS, {"lines": "50"}).content.decode()
    assert _log_tag(html) == '<div id="log" class="log">'
    assert 'type="checkbox" value="on">' in html


def test_it_answers_the_log_fragment_to_htmx(viewer, instances):
    instances["new-1"].log_path.open("a").write("a fresh line\n")
    response = viewer.get(LOGS, {"lines": "2", "follow": "on"}, HTTP_HX_REQUEST="true")
    fragment = response.content.decode()
    assert fragment.strip().startswith('<div id="log"')
    assert "<html" not in fragment and "log-form" not in fragment.split(">", 1)[1]
    assert _log_text(fragment).splitlines() == ["new-1 line 300", "a fresh line"]
    assert 'hx-trigger="every 2s"' in _log_tag(fragment)


def test_it_escapes_the_log(viewer, deployment):
    _instance(deployment, 2, 1, log='<script>alert("owned")</script> & <b>bold</b>\n')
    html = viewer.get(LOGS).content.decode()
    assert "<script>alert" not in html and "<b>bold</b>" not in html
    assert _log_text(html) == "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;"


def test_it_says_no_log_yet_when_the_file_does_not_exist(viewer, deployment):
    _instance(deployment, 2, 1, InstanceState.STARTING)
    html = viewer.get(LOGS).content.decode()
    assert "No log yet." in html
    assert '<pre id="log-text">' not in html


def test_it_follows_a_deployment_before_its_first_instance_starts(viewer, deployment):
    html = viewer.get(LOGS, {"follow": "on"}).content.decode()
    assert "No instances yet" in html and "No instance has started yet" in html
    assert f'hx-get="{LOGS}?lines=100&amp;follow=on" hx-trigger="every 2s"' in _log_tag(html)


def test_it_lists_the_deployment_events_oldest_first(viewer, deployment):
    deployment.set_phase("Validating", "Validating the flow with promptflow.")
    deployment.set_phase("Probing", "Waiting for <instances> to answer.")
    deployment.event("Instance 1 exited; restarting in 2 s (restart 1).", level="warning")
    html = viewer.get(LOGS).content.decode()
    events = html.split('<table class="events" id="events">', 1)[1]
    first = events.index("Validating the flow with promptflow.")
    second = events.index("Waiting for &lt;instances&gt; to answer.")
    third = events.index("Instance 1 exited; restarting in 2 s (restart 1).")
    assert first < second < third
    assert '<tr class="warning">' in events and "<td>Probing</td><td>warning</td>" in events
    when = DeploymentEvent.objects.filter(deployment=deployment).first().created_at
    assert f"{when:%Y-%m-%d %H:%M:%S}" in events
    assert "Time (UTC)" in events


def test_it_answers_404_for_an_unknown_instance(viewer, deployment, instances):
    gone = _instance(deployment, 1, 2, InstanceState.STOPPED)  # its log file is gone
    assert viewer.get(LOGS, {"instance": "not-a-uuid"}).status_code == 404
    assert viewer.get(LOGS, {"instance": str(gone.id)}).status_code == 404
    assert viewer.get(LOGS, {"instance": "7a1c4a5e-0000-4000-8000-000000000000"}).status_code == 404
    assert viewer.get("/deployments/ep-logs/green/logs/").status_code == 404


def test_it_answers_404_for_another_deployments_instance(viewer, deployment, instances):
    green = Deployment.objects.create(
        endpoint=deployment.endpoint, name="green", flow_version=deployment.flow_version, live_generation=1
    )
    other = _instance(green, 1, 1, log="green's log\n")
    assert viewer.get(LOGS, {"instance": str(other.id)}).status_code == 404


def test_it_requires_a_role_in_the_project(client, django_user_model, instances):
    assert client.get(LOGS).status_code == 302  # to sign in
    django_user_model.objects.create_user("nobody", password="nobody-pass-1")
    client.login(username="nobody", password="nobody-pass-1")
    response = client.get(LOGS)
    assert response.status_code == 404  # no member: the deployment's name does not leak either
    assert "new-1 line" not in response.content.decode()


def test_it_keeps_logs_from_readers_and_hides_the_tab(client, django_user_model, instances):
    """A log can hold a flow's inputs: Readers get the rule's message, and no Logs tab on the other tabs."""
    client.force_login(member(django_user_model.objects.create_user("rita", password="rita-pass-1"), "reader"))
    response = client.get(LOGS)
    assert response.status_code == 403
    assert "reading what requests carried" in response.content.decode()
    details = client.get(LOGS.replace("/logs/", "/")).content.decode()
    assert LOGS not in details and "/consume/" in details


def test_it_lets_owners_read_the_logs(client, django_user_model, instances):
    client.force_login(member(django_user_model.objects.create_user("ops", password="ops-pass-1"), "owner"))
    assert client.get(LOGS).status_code == 200


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_shows_gunicorns_startup_lines_of_a_real_instance(deploy, client, django_user_model):
    """A deployed flow's instance log, as gunicorn wrote it while the instance started."""
    deployment = deploy("web-classification-offline", endpoint="ep-logs", name="blue")
    instance = deployment.instances.get(generation=deployment.live_generation, ordinal=1)
    client.force_login(django_user_model.objects.create_superuser("root", password="root-pass-1"))

    def logged() -> str:
        html = client.get(LOGS, {"lines": "500"}).content.decode()
        return html if "Listening at: http://127.0.0.1:" in html else ""

    html = wait_for(logged, timeout=15, message="gunicorn's startup lines are not in the Logs tab")
    assert "Starting gunicorn" in html
    assert f"Listening at: http://127.0.0.1:{instance.port}" in html
    assert "Booting worker with pid" in html
    assert f'<option value="{instance.id}" selected>Instance 1 · generation 1 · Ready</option>' in html
    assert "Succeeded" in html.split('id="events"', 1)[1]
