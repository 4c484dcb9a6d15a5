"""The Deployments list and a deployment's Details tab: state, events, properties, polling only while busy,
and the traffic, scale and delete actions (their Celery work is captured, not run: the browser tests run it)."""

import re

import pytest

from endpoints import services
from endpoints.models import Deployment, DeploymentState, Endpoint, Instance, InstanceState
from workspace.models import Notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def flow_version(import_flow):
    return import_flow("web-classification-offline")


@pytest.fixture
def deployment(flow_version, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        endpoint = services.create_endpoint("ep-pages", tags={"team": "search"})
        return services.create_or_update_deployment(endpoint, "blue", flow_version, vm_size="Standard_DS1_v2")


def _succeed(deployment: Deployment, traffic: int | None = 100) -> Deployment:
    Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.SUCCEEDED, phase="Succeeded")
    if traffic is not None:
        Endpoint.objects.filter(pk=deployment.endpoint_id).update(traffic={deployment.name: traffic})
    deployment.refresh_from_db()
    return deployment


@pytest.fixture
def green(flow_version, deployment, django_capture_on_commit_callbacks):
    _succeed(deployment)
    with django_capture_on_commit_callbacks(execute=False):
        other = services.create_or_update_deployment(
            deployment.endpoint, "green", flow_version, vm_size="Standard_DS1_v2"
        )
    return _succeed(other, traffic=None)


# --- the list ---------------------------------------------------------------------------------


def test_it_lists_endpoints_and_their_deployments(admin_client, deployment):
    html = admin_client.get("/deployments/").content.decode()
    assert "ep-pages" in html
    assert 'href="/deployments/ep-pages/blue/"' in html
    assert '<span class="badge creating">Creating</span>' in html
    assert "Standard_DS1_v2" in html
    assert "(0 healthy)" in html


def test_it_counts_healthy_instances_of_the_live_generation_only(admin_client, deployment):
    Deployment.objects.filter(pk=deployment.pk).update(live_generation=1, state=DeploymentState.SUCCEEDED)
    Instance.objects.create(deployment=deployment, generation=1, ordinal=1, state=InstanceState.READY)
    Instance.objects.create(deployment=deployment, generation=1, ordinal=2, state=InstanceState.CRASHED)
    Instance.objects.create(deployment=deployment, generation=0, ordinal=1, state=InstanceState.READY)
    html = admin_client.get("/deployments/").content.decode()
    assert "(1 healthy)" in html


def test_it_polls_the_list_only_while_something_is_busy(admin_client, deployment):
    assert 'hx-trigger="every 2s"' in admin_client.get("/deployments/").content.decode()
    _succeed(deployment)
    fragment = admin_client.get("/deployments/", HTTP_HX_REQUEST="true").content.decode()
    assert fragment.strip().startswith('<div id="rows"')
    assert "hx-trigger" not in fragment
    assert 'data-busy="false"' in fragment


def test_it_searches_and_filters_by_state(admin_client, deployment, green, flow_version):
    Deployment.objects.filter(pk=green.pk).update(state=DeploymentState.FAILED)
    other = services.create_endpoint("ep-other")
    Deployment.objects.create(endpoint=other, name="red", flow_version=flow_version, state=DeploymentState.SUCCEEDED)

    html = admin_client.get("/deployments/", {"q": "gree"}).content.decode()
    assert 'data-deployment="green"' in html
    assert 'data-deployment="blue"' not in html
    assert 'data-endpoint="ep-other"' not in html

    html = admin_client.get("/deployments/", {"q": "ep-oth"}).content.decode()
    assert 'data-deployment="red"' in html
    assert 'data-endpoint="ep-pages"' not in html

    html = admin_client.get("/deployments/", {"state": "Failed"}).content.decode()
    assert 'data-deployment="green"' in html
    assert 'data-deployment="blue"' not in html
    assert 'data-deployment="red"' not in html

    html = admin_client.get("/deployments/", {"q": "nothing-like-this"}).content.decode()
    assert "No endpoints match this search." in html


def test_it_shows_the_traffic_split_and_mirror_in_the_list(admin_client, green):
    services.set_traffic(green.endpoint, {"blue": 100}, {"green": 20})
    html = admin_client.get("/deployments/").content.decode()
    assert "100%" in html
    assert "(mirror 20%)" in html


# --- Details ----------------------------------------------------------------------------------


def test_it_polls_the_details_while_the_deployment_is_being_created(admin_client, deployment, settings):
    response = admin_client.get("/deployments/ep-pages/blue/")
    html = response.content.decode()
    assert 'hx-trigger="every 1s"' in html
    assert f"{settings.FLOWDEPLOY_GATEWAY_URL}/endpoints/ep-pages/score" in html
    assert f"{settings.FLOWDEPLOY_GATEWAY_URL}/endpoints/ep-pages/swagger.json" in html
    assert "provisioning is queued" in html
    fragment = admin_client.get("/deployments/ep-pages/blue/", HTTP_HX_REQUEST="true").content.decode()
    assert fragment.strip().startswith('<div id="status"')
    assert "<html" not in fragment


def test_it_stops_polling_when_final_and_shows_the_failure_reason(admin_client, deployment):
    Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.FAILED, failure_reason="Out of luck.")
    fragment = admin_client.get("/deployments/ep-pages/blue/", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in fragment
    assert 'data-state="Failed"' in fragment
    assert "Out of luck." in fragment


def test_it_shows_the_properties_of_endpoint_and_deployment(admin_client, deployment):
    html = admin_client.get("/deployments/ep-pages/blue/").content.decode()
    for label in (
        "Authentication type",
        "Key-based authentication",
        "System-assigned",
        "Principal ID",
        str(deployment.endpoint.principal_id),
        "Virtual machine",
        "Environment",
        "Outputs",
        "All outputs (category, evidence, location)",
        "Connections",
        "team: search",
        "Request timeout",
        "Created by",
    ):
        assert label in html, label
    for tab in ("Details", "Test", "Consume", "Logs"):
        assert f">{tab}</a>" in html


def test_it_shows_no_keys(admin_client, deployment):
    html = admin_client.get("/deployments/ep-pages/blue/").content.decode()
    for key in services.credentials(deployment.endpoint).values():
        assert key not in html


def test_it_answers_404_for_an_unknown_deployment(admin_client):
    assert admin_client.get("/deployments/nope/blue/").status_code == 404


def test_it_hides_the_actions_from_users_without_rights(viewer_client, deployment):
    html = viewer_client.get("/deployments/ep-pages/blue/").content.decode()
    assert "Update traffic" not in html
    assert "Delete endpoint" not in html
    assert viewer_client.post("/endpoints/ep-pages/traffic/", {"deployment": "blue"}).status_code == 403
    assert viewer_client.post("/deployments/ep-pages/blue/scale/", {"instance_count": 2}).status_code == 403
    assert viewer_client.get("/deployments/ep-pages/blue/delete/").status_code == 403
    assert viewer_client.post("/endpoints/ep-pages/delete/").status_code == 403
    assert Endpoint.objects.filter(name="ep-pages", deleting=False).exists()


# --- traffic ----------------------------------------------------------------------------------


def test_it_updates_the_traffic_split_after_confirming_what_changes(admin_client, green):
    split = {"deployment": "blue", "traffic-blue": "0", "traffic-green": "100", "mirror-blue": "0", "mirror-green": "0"}
    asked = admin_client.post("/endpoints/ep-pages/traffic/", split, HTTP_HX_REQUEST="true")
    html = asked.content.decode()
    assert "Update the traffic of endpoint ep-pages?" in html
    assert "blue: live traffic 100% → 0% (it stops receiving live traffic)." in html
    assert "green: live traffic 0% → 100%." in html
    assert Endpoint.objects.get(name="ep-pages").traffic == {"blue": 100}

    response = admin_client.post("/endpoints/ep-pages/traffic/", {**split, "confirm": "1"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Traffic of ep-pages updated: green 100%." in response.content.decode()
    assert Endpoint.objects.get(name="ep-pages").traffic == {"green": 100}


def test_it_says_when_the_traffic_does_not_change(admin_client, green):
    response = admin_client.post(
        "/endpoints/ep-pages/traffic/", {"deployment": "blue", "traffic-blue": "100"}, HTTP_HX_REQUEST="true"
    )
    assert "Nothing to update: the split is the same." in response.content.decode()


def test_it_refuses_weights_that_do_not_sum_to_100_and_keeps_what_was_typed(admin_client, green):
    response = admin_client.post(
        "/endpoints/ep-pages/traffic/",
        {"deployment": "blue", "traffic-blue": "70", "traffic-green": "20"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "Traffic must add up to 100%, not 90%." in html
    assert 'name="traffic-green" id="traffic-green" aria-label="Traffic for green" value="20"' in html
    assert Endpoint.objects.get(name="ep-pages").traffic == {"blue": 100}


def test_it_names_the_deployment_of_a_bad_weight(admin_client, green):
    response = admin_client.post("/endpoints/ep-pages/traffic/", {"deployment": "blue", "traffic-green": "lots"})
    assert response.status_code == 422
    assert "Traffic for green must be a whole number of percent, not &#x27;lots&#x27;." in response.content.decode()


def test_it_sets_mirror_traffic_within_azures_rules(admin_client, green):
    ok = admin_client.post(
        "/endpoints/ep-pages/traffic/",
        {"deployment": "blue", "traffic-blue": "100", "mirror-green": "10", "confirm": "1"},
    )
    assert ok.status_code == 302
    assert Endpoint.objects.get(name="ep-pages").mirror_traffic == {"green": 10}
    too_much = admin_client.post(
        "/endpoints/ep-pages/traffic/", {"deployment": "blue", "traffic-blue": "100", "mirror-green": "60"}
    )
    assert too_much.status_code == 422
    assert "Mirror traffic for green is at most 50%." in too_much.content.decode()


# --- scale ------------------------------------------------------------------------------------


def test_it_scales_by_rolling_out_the_same_flow_version(admin_client, deployment, django_capture_on_commit_callbacks):
    _succeed(deployment)
    asked = admin_client.post("/deployments/ep-pages/blue/scale/", {"instance_count": "2"})
    html = asked.content.decode()
    assert "Scale ep-pages/blue from 1 to 2 instance(s)?" in html
    assert "2 new instance(s) of Standard_DS1_v2 start" in html
    assert "The 0 current instance(s) stop after finishing the requests in flight" in html
    assert '<input type="hidden" name="confirm" value="1">' in html
    assert Deployment.objects.get(pk=deployment.pk).instance_count == 1
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post("/deployments/ep-pages/blue/scale/", {"instance_count": "2", "confirm": "1"})
    assert response.status_code == 302
    deployment.refresh_from_db()
    assert (deployment.instance_count, deployment.state, deployment.generation) == (2, DeploymentState.UPDATING, 2)
    assert len(callbacks) == 1  # the provisioning task, on commit
    note = Notification.objects.get(title="Prompt flow deployment")
    assert note.link == "/deployments/ep-pages/blue/"
    assert "Scaling ep-pages/blue to 2 instance(s)" in note.body


def test_it_refuses_a_scale_that_does_not_fit_or_is_not_a_number(admin_client, deployment, settings):
    _succeed(deployment)
    settings.FLOWDEPLOY_MAX_INSTANCES = 3
    response = admin_client.post("/deployments/ep-pages/blue/scale/", {"instance_count": "5"})
    assert response.status_code == 422
    assert "Instance count must be a whole number from 1 to 3." in response.content.decode()
    response = admin_client.post("/deployments/ep-pages/blue/scale/", {"instance_count": "many", "confirm": "1"})
    assert "Instance count must be a whole number from 1 to 3." in response.content.decode()
    deployment.refresh_from_db()
    assert (deployment.instance_count, deployment.state) == (1, DeploymentState.SUCCEEDED)


def test_it_names_the_lost_capacity_when_scaling_in(admin_client, deployment):
    _succeed(deployment)
    Deployment.objects.filter(pk=deployment.pk).update(instance_count=3, max_concurrent_requests_per_instance=8)
    html = admin_client.post("/deployments/ep-pages/blue/scale/", {"instance_count": "1"}).content.decode()
    assert "Capacity: at most 8 requests at once instead of 24; more answer 429." in html


# --- delete -----------------------------------------------------------------------------------


def test_it_confirms_a_deployment_delete_naming_what_is_lost(admin_client, deployment):
    _succeed(deployment)
    html = admin_client.get("/deployments/ep-pages/blue/delete/").content.decode()
    assert "Delete deployment blue of endpoint ep-pages?" in html
    assert "Its 0 running instance(s)" in html
    assert "Its instance logs and its event history." in html
    assert "The 100% of the endpoint&#x27;s traffic it receives" in html
    assert Deployment.objects.get(pk=deployment.pk).state == DeploymentState.SUCCEEDED


def test_it_deletes_a_deployment_as_a_long_job_with_its_notification(
    admin_client, green, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post("/deployments/ep-pages/green/delete/")
    assert response["Location"] == "/deployments/"
    assert Deployment.objects.get(pk=green.pk).state == DeploymentState.DELETING
    assert len(callbacks) == 1
    note = Notification.objects.get(title="Delete deployment")
    assert (note.level, note.body) == ("running", "Deleting deployment ep-pages/green…")


def test_it_refuses_to_delete_a_deployment_that_still_gets_traffic(admin_client, green):
    response = admin_client.post("/deployments/ep-pages/blue/delete/")
    assert response.status_code == 422
    assert "Deployment blue still receives 100% of the live traffic of endpoint ep-pages" in response.content.decode()
    assert Deployment.objects.get(name="blue").state == DeploymentState.SUCCEEDED


def test_it_says_up_front_that_a_deployment_with_traffic_cannot_be_deleted(admin_client, green):
    """As on Azure: the confirmation says why and what to do, and offers no Delete button."""
    response = admin_client.get("/deployments/ep-pages/blue/delete/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Deployment blue still receives 100% of the live traffic of endpoint ep-pages" in html
    assert "a deployment with traffic cannot be deleted. Set its traffic to 0% first" in html
    assert 'href="/deployments/ep-pages/blue/#traffic"' in html
    assert ">Delete deployment</button>" not in html
    assert "This cannot be undone" not in html
    # green has no traffic: its confirmation has the button
    assert ">Delete deployment</button>" in admin_client.get("/deployments/ep-pages/green/delete/").content.decode()


def test_it_confirms_and_deletes_an_endpoint(admin_client, green, django_capture_on_commit_callbacks):
    html = admin_client.get("/endpoints/ep-pages/delete/").content.decode()
    assert "Delete endpoint ep-pages and everything deployed to it?" in html
    assert "Its 2 deployment(s) (blue, green)" in html
    assert "Its primary and secondary keys" in html
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post("/endpoints/ep-pages/delete/")
    assert response["Location"] == "/deployments/"
    assert Endpoint.objects.get(name="ep-pages").deleting
    assert set(Deployment.objects.values_list("state", flat=True)) == {DeploymentState.DELETING}
    assert len(callbacks) == 1
    assert Notification.objects.get(title="Delete endpoint").level == "running"


def test_it_sends_a_poll_of_a_deleted_deployment_to_the_list(admin_client, deployment):
    """Someone else deleted it: the page's poll leaves for the list instead of polling a 404 forever."""
    deployment.delete()
    for url in ("/deployments/ep-pages/blue/", "/deployments/ep-pages/blue/logs/?follow=on"):
        response = admin_client.get(url, HTTP_HX_REQUEST="true")
        assert response["HX-Redirect"] == "/deployments/"
        assert admin_client.get(url).status_code == 404


def test_it_shows_the_latest_events_and_says_where_the_rest_are(admin_client, deployment):
    for n in range(60):
        deployment.event(f"Instance 1 exited; restarting (restart {n}).")
    html = admin_client.get("/deployments/ep-pages/blue/").content.decode()
    assert "The latest 50 of 61 events" in html
    assert "restart 59" in html
    assert "restart 9)" not in html
    assert html.index("restart 58") < html.index("restart 59")


# --- the page follows a running job (issue 10, 1) ---------------------------------------------


def _poll(client, url="/deployments/ep-pages/blue/", **params):
    return client.get(url, params, HTTP_HX_REQUEST="true").content.decode()


def test_it_refreshes_header_badge_banner_and_traffic_with_each_poll_while_busy(admin_client, deployment):
    page = admin_client.get("/deployments/ep-pages/blue/").content.decode()
    assert '<span class="badge creating" id="state-badge">Creating</span>' in page
    assert "Deployment blue is being created (Queued)." in page
    seen = re.search(r'id="traffic-seen" name="traffic_seen" value="(\w+)"', page).group(1)
    scale_seen = re.search(r'id="scale-seen" name="scale_seen" value="([\w-]+)"', page).group(1)
    assert 'hx-include="#traffic-seen, #scale-seen"' in page

    # Nothing changed: the header comes along (it is small), traffic and scale do not.
    fragment = _poll(admin_client, traffic_seen=seen, scale_seen=scale_seen)
    assert fragment.strip().startswith('<div id="status"')
    assert (
        '<div id="deployment-head" class="deployment-head" data-state="Creating" hx-swap-oob="outerHTML">' in fragment
    )
    assert 'id="traffic"' not in fragment
    assert 'id="scale"' not in fragment

    # The job ends: the first deployment got all the traffic.
    _succeed(deployment)
    fragment = _poll(admin_client, traffic_seen=seen, scale_seen=scale_seen)
    assert "hx-trigger" not in fragment  # final: no more polling
    assert '<span class="badge succeeded" id="state-badge">Succeeded</span>' in fragment
    assert 'id="deployment-banner"' not in fragment
    assert '<section class="card" id="traffic" data-keep-edits hx-swap-oob="outerHTML">' in fragment
    assert 'aria-label="Traffic for blue" value="100"' in fragment
    assert '<section class="card" id="scale" data-keep-edits hx-swap-oob="outerHTML">' in fragment
    scale = fragment[fragment.index('id="scale"') :]
    assert 'id="instance-count-input" name="instance_count"' in scale
    assert " disabled" not in scale[: scale.index("</form>")]  # Scale is offered again


def test_it_refreshes_the_header_of_the_other_tabs_until_final(admin_client, deployment):
    page = admin_client.get("/deployments/ep-pages/blue/test/").content.decode()
    assert 'hx-get="/deployments/ep-pages/blue/?part=head&amp;tab=test" hx-trigger="every 1s"' in page
    assert "Deployment blue is being created" in page
    Deployment.objects.filter(pk=deployment.pk).update(phase="BuildingEnvironment")
    head = _poll(admin_client, part="head", tab="test")
    assert head.strip().startswith('<div id="deployment-head"')
    assert "(BuildingEnvironment)" in head
    assert "every 1s" in head
    _succeed(deployment)
    head = _poll(admin_client, part="head", tab="test")
    assert '<span class="badge succeeded" id="state-badge">Succeeded</span>' in head
    assert "hx-trigger" not in head
    assert 'id="deployment-banner"' not in head


def test_it_shows_an_update_as_updating_then_its_end(admin_client, deployment, django_capture_on_commit_callbacks):
    _succeed(deployment)
    with django_capture_on_commit_callbacks(execute=False):
        admin_client.post("/deployments/ep-pages/blue/scale/", {"instance_count": "2", "confirm": "1"})
    page = admin_client.get("/deployments/ep-pages/blue/").content.decode()
    assert '<span class="badge updating" id="state-badge">Updating</span>' in page
    assert "Deployment blue is being updated (Queued)." in page
    assert 'id="instance-count-input" name="instance_count" min="1" max="20" step="1" value="2" disabled' in page
    _succeed(deployment)
    fragment = _poll(admin_client, scale_seen="Updating-2")
    assert '<span class="badge succeeded" id="state-badge">Succeeded</span>' in fragment
    assert 'id="scale" data-keep-edits hx-swap-oob="outerHTML"' in fragment


# --- Deleting shows once (issue 10, 10) ---------------------------------------------------------


def test_it_shows_deleting_once(admin_client, green, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        admin_client.post("/endpoints/ep-pages/delete/")
    html = admin_client.get("/deployments/").content.decode()
    assert "Deleting Deleting" not in " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert '<span class="badge deleting">Deleting</span></td>' in html
    page = admin_client.get("/deployments/ep-pages/green/").content.decode()
    assert 'id="provisioning-phase"' not in page
    assert "Deployment green is being deleted." in page


# --- every field's error at once, beside its field (issue 10, 6) --------------------------------


def test_it_shows_every_traffic_error_beside_its_field(admin_client, green):
    response = admin_client.post(
        "/endpoints/ep-pages/traffic/",
        {
            "deployment": "blue",
            "traffic-blue": "lots",
            "traffic-green": "150",
            "mirror-blue": "x",
            "mirror-green": "60",
        },
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422
    html = response.content.decode()
    for field, message in (
        ("traffic-blue", "Traffic for blue must be a whole number of percent, not &#x27;lots&#x27;."),
        ("traffic-green", "Traffic for green must be between 0 and 100%."),
        ("mirror-blue", "Mirror traffic for blue must be a whole number of percent, not &#x27;x&#x27;."),
        ("mirror-green", "Mirror traffic for green is at most 50%."),
    ):
        assert f'aria-describedby="{field}-error"' in html, field
        assert f'<div class="error field-error" id="{field}-error">{message}</div>' in html, field
    assert 'value="lots"' in html and 'value="150"' in html  # what was typed stays


def test_it_puts_the_sum_under_the_table_and_a_mirror_conflict_beside_its_field(admin_client, green):
    response = admin_client.post(
        "/endpoints/ep-pages/traffic/",
        {"deployment": "blue", "traffic-blue": "60", "traffic-green": "30", "mirror-green": "10"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert '<p class="error" role="alert">Traffic must add up to 100%, not 90%.</p>' in html
    response = admin_client.post(
        "/endpoints/ep-pages/traffic/",
        {"deployment": "blue", "traffic-blue": "50", "traffic-green": "50", "mirror-green": "10"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert 'id="mirror-green-error">green receives live traffic; it cannot also get mirror traffic.</div>' in html


# --- Scale: one instance-count rule, its error where the user is (issue 10, 4 and 8) -----------


@pytest.mark.parametrize("typed", ["0", "-1", "2.5", "", "21", "100", "two"])
def test_it_refuses_every_bad_scale_count_with_the_same_message_beside_the_field(admin_client, deployment, typed):
    _succeed(deployment)
    response = admin_client.post("/deployments/ep-pages/blue/scale/", {"instance_count": typed})
    assert response.status_code == 422
    html = response.content.decode()
    field = html[
        html.index('id="instance-count-input"') : html.index("</form>", html.index('id="instance-count-input"'))
    ]
    assert 'aria-invalid="true" aria-describedby="scale-error" autofocus' in field
    assert (
        '<p class="error field-error" role="alert" id="scale-error" data-scroll-into-view>'
        "Instance count must be a whole number from 1 to 20.</p>"
    ) in field
    assert Deployment.objects.get(pk=deployment.pk).instance_count == 1
