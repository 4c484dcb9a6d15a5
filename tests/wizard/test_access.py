"""Who may deploy through the wizard (workspace/access.py): the Existing endpoint choices, the project a new
endpoint goes to (the flow's: a deployment serves a flow of its endpoint's project), and the checks of
create_from_draft, whoever calls it."""

import pytest
from roles import member

from endpoints import services
from endpoints.models import Deployment, Endpoint
from flows.models import Flow
from wizard import services as wizard_services
from wizard.models import DeploymentDraft
from workspace.access import AccessDenied
from workspace.models import Project, ProjectRole

pytestmark = pytest.mark.django_db

BASIC = {
    "endpoint_mode": ["existing"],
    "endpoint_name": [""],
    "existing_endpoint": ["ep-theirs"],
    "deployment_name": ["blue"],
    "vm_size": ["Standard_DS1_v2"],
    "instance_count": ["1"],
}


@pytest.fixture
def team():
    return Project.objects.create(name="team-b")


@pytest.fixture
def their_endpoint(team, redis_url, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        endpoint = services.create_endpoint("ep-theirs")
    Endpoint.objects.filter(pk=endpoint.pk).update(project=team)
    return endpoint


def _move_flow(flow_version, project) -> None:
    Flow.objects.filter(pk=flow_version.flow_id).update(project=project)
    flow_version.flow.refresh_from_db()


def test_it_lists_only_the_endpoints_the_user_may_deploy_to(deployer_client, deployer, draft, team, their_endpoint):
    _move_flow(draft.flow_version, team)
    member(deployer, ProjectRole.READER, team)
    html = deployer_client.get(draft.step_url("basic")).content.decode()
    assert '<option value="ep-theirs"' not in html
    response = deployer_client.post(
        draft.step_url("basic"), {key: values[0] for key, values in BASIC.items()} | {"go": "review"}
    )
    assert response.status_code == 400
    member(deployer, ProjectRole.CONTRIBUTOR, team)
    assert '<option value="ep-theirs"' in deployer_client.get(draft.step_url("basic")).content.decode()


def test_it_refuses_create_on_an_endpoint_the_user_may_not_deploy_to(deployer, flow_version, team, their_endpoint):
    """create_from_draft checks the endpoint's project itself, not only the view: nothing is created."""
    _move_flow(flow_version, team)
    member(deployer, ProjectRole.READER, team)
    draft = DeploymentDraft.start(deployer, flow_version)
    draft.save_step("basic", BASIC)
    with pytest.raises(AccessDenied) as denied:
        wizard_services.create_from_draft(draft, deployer)
    assert "You are Reader of project 'team-b'" in denied.value.message
    assert not Deployment.objects.exists()
    draft.refresh_from_db()
    assert draft.deployment is None


def test_it_refuses_create_of_a_flow_the_user_does_not_see(django_user_model, flow_version, team, redis_url):
    outsider = member(django_user_model.objects.create_user("out", password="out-pass-123"), "contributor", team)
    draft = DeploymentDraft.start(outsider, flow_version)
    draft.save_step("basic", {**BASIC, "endpoint_mode": ["new"], "endpoint_name": ["ep-new"]})
    with pytest.raises(AccessDenied) as denied:
        wizard_services.create_from_draft(draft, outsider)
    assert not denied.value.visible
    assert not Endpoint.objects.filter(name="ep-new").exists()


def test_it_creates_a_new_endpoint_in_the_flows_project(
    deployer_client, deployer, draft, team, django_capture_on_commit_callbacks
):
    """Whatever project the top bar shows: the endpoint goes where the flow and its connections are."""
    _move_flow(draft.flow_version, team)
    member(deployer, ProjectRole.CONTRIBUTOR, team)
    basic = {key: values[0] for key, values in BASIC.items()}
    basic.update(endpoint_mode="new", endpoint_name="ep-in-team", existing_endpoint="", go="review")
    assert deployer_client.post(draft.step_url("basic"), basic).status_code == 302
    with django_capture_on_commit_callbacks(execute=False):
        response = deployer_client.post(draft.step_url("review"))
    assert response["Location"] == "/deployments/ep-in-team/blue/"
    assert Endpoint.objects.get(name="ep-in-team").project == team


def test_it_refuses_a_new_endpoint_where_the_user_is_reader(deployer_client, deployer, draft, team):
    _move_flow(draft.flow_version, team)
    member(deployer, ProjectRole.READER, team)
    basic = {key: values[0] for key, values in BASIC.items()}
    basic.update(endpoint_mode="new", endpoint_name="ep-in-team", existing_endpoint="", go="review")
    deployer_client.post(draft.step_url("basic"), basic)
    response = deployer_client.post(draft.step_url("review"))
    assert response.status_code == 403
    assert "You are Reader of project &#x27;team-b&#x27;" in response.content.decode()
    assert not Endpoint.objects.filter(name="ep-in-team").exists()


def test_it_hides_flows_of_other_projects_from_the_wizard(client, django_user_model, flow_version, team):
    outsider = member(django_user_model.objects.create_user("out", password="out-pass-123"), "contributor", team)
    client.force_login(outsider)
    assert flow_version.flow.name not in client.get("/deployments/new/").content.decode()
    assert client.post("/deployments/new/", {"flow_version": flow_version.pk}).status_code == 404


def test_it_refuses_a_deployment_of_another_projects_flow(flow_version, team, their_endpoint):
    """The service refuses it whoever calls it: the instance would read the other project's connections."""
    from django.core.exceptions import ValidationError

    their_endpoint.refresh_from_db()
    with pytest.raises(ValidationError) as refused:
        services.create_or_update_deployment(their_endpoint, "blue", flow_version, vm_size="Standard_DS1_v2")
    assert "a deployment serves a flow of its endpoint's project" in refused.value.message_dict["flow"][0]
    assert not Deployment.objects.exists()
