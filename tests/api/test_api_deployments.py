"""Online deployments through the API: PUT creates or rolls out, show, delete, logs and events."""

import pytest
from api_client import error

from endpoints.models import Deployment, DeploymentState, Instance, InstanceState

pytestmark = pytest.mark.django_db

BLUE = "/online-endpoints/ep-one/deployments/blue"


@pytest.fixture
def ep(endpoint):
    return endpoint("ep-one")


@pytest.fixture
def put(api, django_capture_on_commit_callbacks):
    """PUT a deployment; provisioning is dispatched on commit, which these tests capture instead of running."""

    def send(body, path=BLUE):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = api.put(path, body)
        response.dispatched = len(callbacks)
        return response

    return send


def _settle(name: str = "blue", state: str = DeploymentState.SUCCEEDED) -> Deployment:
    Deployment.objects.filter(name=name).update(state=state, phase=state)
    return Deployment.objects.get(name=name)


def test_it_creates_a_deployment_and_queues_its_provisioning(ep, flow_version, put):
    flow_version("web")
    body = {
        "flow": "web:1",
        "vm_size": "Standard_DS1_v2",
        "instance_count": 1,
        "environment_variables": {"LOG_LEVEL": "debug"},
        "selected_outputs": ["category"],
        "request_timeout_ms": 5000,
        "max_concurrent_requests_per_instance": 2,
        "data_collection": True,
        "tags": {"owner": "ops"},
    }
    response = put(body)
    assert response.status_code == 201
    assert response.dispatched == 1
    shown = response.json()
    assert shown["name"] == "blue" and shown["endpoint_name"] == "ep-one" and shown["flow"] == "web:1"
    assert shown["provisioning_state"] == "Creating" and shown["phase"] == "Queued"
    assert shown["vm_size"] == "Standard_DS1_v2" and shown["request_timeout_ms"] == 5000
    assert shown["selected_outputs"] == ["category"] and shown["data_collection"] is True
    assert shown["instances"] == []
    assert "provisioning is queued" in shown["events"][-1]["message"]


def test_a_deployment_made_through_the_api_notifies_its_creator_as_the_wizard_does(ep, flow_version, put, staff):
    from workspace.models import Notification

    flow_version("web")
    assert put({"flow": "web:1", "vm_size": "Standard_DS1_v2"}).status_code == 201

    deployment = Deployment.objects.get(name="blue")
    note = Notification.objects.get(pk=deployment.notification_id)  # the job moves it through its phases
    assert (note.user, note.title, note.level) == (staff, "Prompt flow deployment", "running")
    assert (note.body, note.link) == ("Creating ep-one/blue: provisioning started.", "/deployments/ep-one/blue/")


@pytest.mark.parametrize("reference", ["web", "web@latest", "azureml:web:2", "azureml:web@latest"])
def test_it_finds_the_flow_by_name_version_or_latest(ep, flow_version, put, reference):
    flow_version("web")
    flow_version("web")
    response = put({"flow": reference, "vm_size": "Standard_DS1_v2"})
    assert response.status_code == 201
    assert response.json()["flow"] == "web:2"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "flow"),
        ({"flow": "nope:1"}, "flow"),
        ({"flow": "web:9"}, "flow"),
        ({"flow": "web@stable"}, "flow"),
        ({"flow": "web:1", "vm_size": "Standard_NC24"}, "vm_size"),
        ({"flow": "web:1", "instance_count": 0}, "instance_count"),
        ({"flow": "web:1", "request_timeout_ms": "soon"}, "request_timeout_ms"),
        ({"flow": "web:1", "selected_outputs": ["nope"]}, "selected_outputs"),
        ({"flow": "web:1", "connection_overrides": {"x": "y"}}, "connection_overrides"),
        ({"flow": "web:1", "instance_type": "Standard_DS1_v2"}, "instance_type"),
        ({"flow": "web:1", "name": "green"}, "name"),
    ],
)
def test_it_names_the_field_that_is_wrong(ep, flow_version, put, body, field):
    flow_version("web")
    response = put(body)
    assert response.status_code == 400, response.content
    assert error(response)["field"] == field
    assert response.dispatched == 0
    assert not Deployment.objects.exists()


def test_it_refuses_a_deployment_name_that_breaks_azures_rule(ep, flow_version, put):
    flow_version("web")
    response = put({"flow": "web:1"}, "/online-endpoints/ep-one/deployments/x")
    assert response.status_code == 400
    assert error(response)["field"] == "name"


def test_it_answers_404_for_a_deployment_of_an_unknown_endpoint(api, flow_version, put):
    flow_version("web")
    assert put({"flow": "web:1"}, "/online-endpoints/ep-none/deployments/blue").status_code == 404
    assert api.get("/online-endpoints/ep-none/deployments").status_code == 404


def test_it_rolls_out_new_settings_to_an_existing_deployment(ep, flow_version, put):
    flow_version("web")
    put({"flow": "web:1", "vm_size": "Standard_DS1_v2"})
    _settle()
    flow_version("web")
    response = put({"flow": "web:2", "instance_count": 2})
    assert response.status_code == 200
    assert response.dispatched == 1
    shown = response.json()
    assert shown["flow"] == "web:2" and shown["instance_count"] == 2 and shown["vm_size"] == "Standard_DS1_v2"
    assert shown["provisioning_state"] == "Updating" and shown["generation"] == 2


def test_it_keeps_the_flow_when_an_update_names_none(ep, flow_version, put):
    flow_version("web")
    put({"flow": "web:1", "vm_size": "Standard_DS1_v2"})
    _settle()
    response = put({"tags": {"stage": "canary"}})
    assert response.status_code == 200
    assert response.json()["flow"] == "web:1" and response.json()["tags"] == {"stage": "canary"}


def test_it_refuses_to_update_a_deployment_that_is_still_provisioning(ep, flow_version, put):
    flow_version("web")
    put({"flow": "web:1", "vm_size": "Standard_DS1_v2"})
    response = put({"instance_count": 2})
    assert response.status_code == 409
    assert "creating" in error(response)["message"]


def test_it_lists_and_shows_deployments(api, ep, flow_version, put):
    flow_version("web")
    put({"flow": "web:1", "vm_size": "Standard_DS1_v2"})
    put({"flow": "web:1", "vm_size": "Standard_DS1_v2"}, "/online-endpoints/ep-one/deployments/green")
    listing = api.get("/online-endpoints/ep-one/deployments").json()
    assert [d["name"] for d in listing] == ["blue", "green"]
    assert "events" not in listing[0]
    deployment = _settle()
    Instance.objects.create(deployment=deployment, generation=1, ordinal=0, state=InstanceState.READY, restarts=2)
    shown = api.get(BLUE).json()
    assert shown["instances"] == [
        {
            "ordinal": 0,
            "generation": 1,
            "state": "Ready",
            "restarts": 2,
            "started_at": None,
            "ready_at": None,
            "last_exit": "",
        }
    ]
    assert api.get("/online-endpoints/ep-one").json()["deployments"] == ["blue", "green"]


def test_it_shows_why_a_deployment_failed(api, ep, flow_version, put):
    flow_version("web")
    put({"flow": "web:1", "vm_size": "Standard_DS1_v2"})
    Deployment.objects.filter(name="blue").update(
        state=DeploymentState.FAILED, phase="Failed", failure_reason="pip could not install the requirements"
    )
    shown = api.get(BLUE).json()
    assert shown["provisioning_state"] == "Failed"
    assert shown["failure_reason"] == "pip could not install the requirements"


def test_it_deletes_a_deployment_in_the_background(api, ep, flow_version, put, django_capture_on_commit_callbacks):
    flow_version("web")
    put({"flow": "web:1", "vm_size": "Standard_DS1_v2"})
    _settle()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.delete(BLUE)
    assert response.status_code == 202
    assert response.json()["provisioning_state"] == "Deleting"
    assert len(callbacks) == 1
    assert api.get(BLUE).json()["provisioning_state"] == "Deleting"


def test_it_refuses_to_delete_a_deployment_that_still_gets_traffic(api, ep, flow_version, put):
    flow_version("web")
    put({"flow": "web:1", "vm_size": "Standard_DS1_v2"})
    put({"flow": "web:1", "vm_size": "Standard_DS1_v2"}, "/online-endpoints/ep-one/deployments/green")
    type(ep).objects.filter(pk=ep.pk).update(traffic={"blue": 100})
    response = api.delete(BLUE)
    assert response.status_code == 409
    assert error(response)["field"] == "traffic"


def test_it_lets_a_reader_read_deployments_but_not_change_them(reader_api, ep, flow_version, put):
    flow_version("web")
    put({"flow": "web:1", "vm_size": "Standard_DS1_v2"})
    assert reader_api.get(BLUE).status_code == 200
    assert reader_api.get(BLUE + "/logs").status_code == 403  # Azure's Reader cannot get logs either
    assert reader_api.put(BLUE, {"instance_count": 2}).status_code == 403
    assert reader_api.put("/online-endpoints/ep-one/deployments/green", {"flow": "web:1"}).status_code == 403
    assert reader_api.delete(BLUE).status_code == 403


@pytest.fixture
def running(ep, flow_version, put, settings, tmp_path):
    """blue with two live instances whose logs hold numbered lines."""
    settings.FLOWDEPLOY_DEPLOYMENTS_DIR = tmp_path / "deployments"
    flow_version("web")
    put({"flow": "web:1", "vm_size": "Standard_DS1_v2", "instance_count": 2})
    deployment = _settle()
    Deployment.objects.filter(pk=deployment.pk).update(live_generation=1)
    for ordinal in (0, 1):
        instance = Instance.objects.create(deployment=deployment, generation=1, ordinal=ordinal, state="Ready")
        instance.log_path.parent.mkdir(parents=True)
        instance.log_path.write_text("".join(f"instance {ordinal} line {n}\n" for n in range(1, 301)))
    return deployment


def test_it_tails_an_instance_log(api, running):
    logs = api.get(BLUE + "/logs?lines=3").json()
    assert logs["instance"] == 0 and logs["container"] == "inference-server"
    assert logs["content"].splitlines() == ["instance 0 line 298", "instance 0 line 299", "instance 0 line 300"]
    assert len(api.get(BLUE + "/logs").json()["content"].splitlines()) == 100
    other = api.get(BLUE + "/logs?lines=1&instance=1").json()
    assert other["instance"] == 1 and other["content"] == "instance 1 line 300"


@pytest.mark.parametrize(
    ("query", "field"),
    [("lines=0", "lines"), ("lines=x", "lines"), ("instance=5", "instance"), ("container=storage", "container")],
)
def test_it_names_a_wrong_log_parameter(api, running, query, field):
    response = api.get(f"{BLUE}/logs?{query}")
    assert response.status_code == 400
    assert error(response)["field"] == field


def test_it_gives_the_deployments_events_as_a_log(api, running):
    running.set_phase("Validating", "Validating the flow with promptflow.")
    logs = api.get(BLUE + "/logs?container=events&lines=2").json()
    assert logs["container"] == "events"
    assert [e["phase"] for e in logs["events"]][-1] == "Validating"
    assert logs["content"].splitlines()[-1].endswith("Validating: Validating the flow with promptflow.")
    assert len(logs["events"]) == 2


def test_it_answers_an_empty_log_before_any_instance_started(api, ep, flow_version, put):
    flow_version("web")
    put({"flow": "web:1", "vm_size": "Standard_DS1_v2"})
    logs = api.get(BLUE + "/logs").json()
    assert logs["content"] == "" and logs["instance"] is None
