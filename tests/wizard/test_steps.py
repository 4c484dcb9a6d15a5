"""The wizard steps: each field's validation message, the live htmx fragments and the full pages."""

import re

import pytest

from endpoints import services
from endpoints.models import DeploymentState, Endpoint
from workspace.models import ManagedIdentity

pytestmark = pytest.mark.django_db

BASIC = {
    "endpoint_mode": "new",
    "endpoint_name": "ep-wizard",
    "existing_endpoint": "",
    "deployment_name": "blue",
    "vm_size": "Standard_DS1_v2",
    "instance_count": "1",
}


def _post(client, draft, step, data, **extra):
    return client.post(draft.step_url(step), data, **extra)


def _field_block(html: str, name: str) -> str:
    """A field's own block of the page (label, input, help, errors)."""
    found = re.search(rf'<div class="field" id="field-{name}">.*?\n</div>', html, re.S)
    assert found, f"no field {name}"
    return found.group(0)


def test_it_shows_basic_settings_with_the_labels_of_azure(deployer_client, draft):
    html = deployer_client.get(draft.step_url("basic")).content.decode()
    for label in ("Endpoint", "New", "Existing", "Endpoint name", "Deployment name", "Virtual machine"):
        assert f">{label}<" in html or f"> {label}<" in html
    assert "Instance count" in html
    assert "Inference data collection" in html
    assert "For high availability, we recommend that you set the value to at least 3" in html
    assert "including 20% reserved for upgrades" in html
    assert "Review + Create" in html


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"endpoint_name": "1-bad"}, "Endpoint name must be 3 to 32 characters"),
        ({"endpoint_name": ""}, "Enter the endpoint name."),
        ({"deployment_name": "x"}, "Deployment name must be 3 to 32 characters"),
        ({"deployment_name": ""}, "This field is required."),
        ({"endpoint_mode": "existing"}, "Choose an existing endpoint."),
        ({"instance_count": "0"}, "Instance count must be a whole number from 1 to 20."),
        ({"instance_count": "-1"}, "Instance count must be a whole number from 1 to 20."),
        ({"instance_count": "2.5"}, "Instance count must be a whole number from 1 to 20."),
        ({"instance_count": ""}, "Instance count must be a whole number from 1 to 20."),
        ({"instance_count": "100"}, "Instance count must be a whole number from 1 to 20."),
        ({"vm_size": "Standard_Huge"}, "Select a valid choice."),
    ],
)
def test_it_refuses_a_bad_basic_field_with_its_message(deployer_client, draft, changes, message):
    response = _post(deployer_client, draft, "basic", {**BASIC, **changes, "go": "next"})
    assert response.status_code == 400
    assert message in response.content.decode()
    draft.refresh_from_db()
    assert draft.raw("basic") is None


def test_it_refuses_a_taken_endpoint_name(deployer_client, draft):
    services.create_endpoint("ep-wizard")
    response = _post(deployer_client, draft, "basic", {**BASIC, "go": "next"})
    assert response.status_code == 400
    assert "Endpoint name ep-wizard is already taken." in response.content.decode()


def test_it_refuses_an_instance_count_that_does_not_fit_on_this_step(deployer_client, draft, settings):
    settings.FLOWDEPLOY_LOCAL_CAPACITY_MIB = 1024
    response = _post(deployer_client, draft, "basic", {**BASIC, "instance_count": "4", "go": "next"})
    assert response.status_code == 400
    assert "4 x Standard_DS1_v2 needs 1.2 GiB (including 20% reserved for upgrades)" in response.content.decode()


def test_it_saves_basic_settings_and_goes_next(deployer_client, draft):
    response = _post(deployer_client, draft, "basic", {**BASIC, "go": "next"})
    assert response.status_code == 302
    assert response["Location"] == draft.step_url("endpoint")
    draft.refresh_from_db()
    assert draft.raw("basic")["endpoint_name"] == ["ep-wizard"]
    page = deployer_client.get(draft.step_url("basic")).content.decode()
    assert 'value="ep-wizard"' in page  # a refresh or the back button loses nothing


def test_it_checks_the_endpoint_name_as_you_type(deployer_client, draft):
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TRIGGER_NAME": "endpoint_name"}
    url = draft.step_url("basic")
    free = deployer_client.get(url, {"endpoint_name": "ep-free"}, **headers)
    assert free.status_code == 200
    html = free.content.decode()
    assert html.strip().startswith('<div id="name-check"')
    assert "ep-free is available." in html
    assert "<html" not in html
    bad = deployer_client.get(url, {"endpoint_name": "-no"}, **headers).content.decode()
    assert "Endpoint name must be 3 to 32 characters" in bad
    services.create_endpoint("ep-taken")
    taken = deployer_client.get(url, {"endpoint_name": "ep-taken"}, **headers).content.decode()
    assert "Endpoint name ep-taken is already taken." in taken


def test_it_updates_the_capacity_line_when_size_or_count_change(deployer_client, draft):
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TRIGGER_NAME": "instance_count"}
    url = draft.step_url("basic")
    one = deployer_client.get(url, {"vm_size": "Standard_DS1_v2", "instance_count": "1"}, **headers).content.decode()
    assert one.strip().startswith('<div id="capacity"')
    assert "For high availability, we recommend that you set the value to at least 3" in one
    assert "Needs 0.3 GiB" in one
    three = deployer_client.get(url, {"vm_size": "Standard_DS4_v2", "instance_count": "3"}, **headers).content.decode()
    assert "at least 3" not in three
    assert "Needs 5.4 GiB" in three


def test_it_says_when_the_count_does_not_fit_in_the_capacity_line(deployer_client, draft, settings):
    settings.FLOWDEPLOY_LOCAL_CAPACITY_MIB = 1024
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TRIGGER_NAME": "vm_size"}
    html = deployer_client.get(
        draft.step_url("basic"), {"vm_size": "Standard_DS4_v2", "instance_count": "1"}, **headers
    ).content.decode()
    assert "This does not fit" in html


def test_it_asks_for_the_basic_settings_first(deployer_client, draft):
    for step in ("endpoint", "deployment", "outputs", "review"):
        response = deployer_client.get(draft.step_url(step))
        assert response.status_code == 302
        assert response["Location"] == draft.step_url("basic")


def test_it_validates_the_endpoint_step(deployer_client, draft):
    _post(deployer_client, draft, "basic", {**BASIC, "go": "next"})
    page = deployer_client.get(draft.step_url("endpoint")).content.decode()
    for text in (
        "Key-based authentication",
        "Token-based authentication",
        "Primary and secondary keys that do not expire.",
        "Tokens that expire and are refreshed.",
        "System-assigned",
        "User-assigned",
        "Enforce access to connection secrets",
        "Tags",
    ):
        assert text in page
    response = _post(
        deployer_client, draft, "endpoint", {"auth_type": "key", "identity_type": "user_assigned", "go": "next"}
    )
    assert response.status_code == 400
    assert "Name the user-assigned identity." in response.content.decode()
    response = _post(
        deployer_client,
        draft,
        "endpoint",
        {"auth_type": "key", "identity_type": "system_assigned", "tags": "team=search\nnot a tag", "go": "next"},
    )
    assert response.status_code == 400
    assert "Line 2: write each tag as key=value." in response.content.decode()
    response = _post(deployer_client, draft, "endpoint", {"auth_type": "nope", "identity_type": "system_assigned"})
    assert "Select a valid choice." in response.content.decode()
    response = _post(
        deployer_client,
        draft,
        "endpoint",
        {"auth_type": "aml_token", "identity_type": "user_assigned", "user_assigned_identity": "id-search"},
    )
    assert "Project &#x27;default&#x27; has no user-assigned identity named &#x27;id-search&#x27;" in (
        response.content.decode()
    )
    ManagedIdentity.objects.create(project=draft.flow_version.flow.project, name="id-search")
    response = _post(
        deployer_client,
        draft,
        "endpoint",
        {"auth_type": "aml_token", "identity_type": "user_assigned", "user_assigned_identity": "id-search"},
    )
    assert response.status_code == 302
    assert response["Location"] == draft.step_url("deployment")


def test_it_validates_the_deployment_step_and_shows_the_flows_environment(deployer_client, import_flow):
    from wizard.models import DeploymentDraft

    version = import_flow("with-requirements")
    deployer_client.post("/deployments/new/", {"flow_version": version.pk})
    draft = DeploymentDraft.objects.get()
    _post(deployer_client, draft, "basic", {**BASIC, "go": "next"})
    page = deployer_client.get(draft.step_url("deployment")).content.decode()
    assert "Environment" in page
    assert "custom environments are for Azure Machine Learning endpoints." in page
    assert version.requirements.strip().splitlines()[0] in page
    base = {"request_timeout_ms": "90000", "max_concurrent_requests_per_instance": "8"}
    response = _post(deployer_client, draft, "deployment", {**base, "request_timeout_ms": "10"})
    assert response.status_code == 400
    assert "Request timeout (ms) must be between 1000 and 3600000." in response.content.decode()
    response = _post(deployer_client, draft, "deployment", {**base, "max_concurrent_requests_per_instance": "0"})
    assert "Max concurrent requests per instance must be between 1 and 1000." in response.content.decode()
    response = _post(deployer_client, draft, "deployment", {**base, "tags": "env=prod", "go": "next"})
    assert response.status_code == 302
    assert response["Location"] == draft.step_url("outputs")


def test_it_lists_every_output_selected_and_needs_one(deployer_client, draft):
    _post(deployer_client, draft, "basic", {**BASIC, "go": "next"})
    page = deployer_client.get(draft.step_url("outputs")).content.decode()
    for name in ("category", "evidence", "location"):
        assert f'value="{name}"' in page
    assert page.count("checked") >= 3
    assert "This flow uses no connections." in page
    response = _post(deployer_client, draft, "outputs", {"go": "review"})
    assert response.status_code == 400
    assert "Select at least one output." in response.content.decode()
    response = _post(deployer_client, draft, "outputs", {"selected_outputs": ["category"], "go": "review"})
    assert response["Location"] == draft.step_url("review")


def test_it_flags_a_missing_connection_on_the_outputs_step(deployer_client, import_flow):
    from wizard.models import DeploymentDraft

    version = import_flow("chat-basic")
    deployer_client.post("/deployments/new/", {"flow_version": version.pk})
    draft = DeploymentDraft.objects.get()
    _post(deployer_client, draft, "basic", {**BASIC, "go": "next"})
    page = deployer_client.get(draft.step_url("outputs")).content.decode()
    assert "Missing" in page
    response = _post(deployer_client, draft, "outputs", {"selected_outputs": list(version.outputs), "go": "review"})
    assert response.status_code == 400
    assert "Connection &#x27;open_ai_connection&#x27; (used by node" in response.content.decode()
    review = deployer_client.get(draft.step_url("review")).content.decode()
    assert "does not exist" in review  # repeated as a warning on Review


def test_it_offers_an_existing_connection_of_a_compatible_type(deployer_client, import_flow, open_ai_connection):
    from wizard.models import DeploymentDraft
    from workspace.connections import ConnectionSpec, save_connection

    save_connection(ConnectionSpec(name="other_openai", type="open_ai", configs={}, secrets={"api_key": "sk-x"}))
    version = import_flow("chat-basic")
    deployer_client.post("/deployments/new/", {"flow_version": version.pk})
    draft = DeploymentDraft.objects.get()
    _post(deployer_client, draft, "basic", {**BASIC, "go": "next"})
    page = deployer_client.get(draft.step_url("outputs")).content.decode()
    assert "open_ai_connection (inherited from the flow)" in page
    assert 'value="other_openai"' in page
    data = {"selected_outputs": list(version.outputs), "connection__open_ai_connection": "other_openai"}
    response = _post(deployer_client, draft, "outputs", {**data, "go": "review"})
    assert response.status_code == 302


def test_it_shows_an_existing_endpoints_settings_read_only(deployer_client, draft):
    services.create_endpoint("ep-existing", auth_type="aml_token", tags={"team": "search"})
    data = {**BASIC, "endpoint_mode": "existing", "existing_endpoint": "ep-existing", "go": "next"}
    assert _post(deployer_client, draft, "basic", data).status_code == 302
    page = deployer_client.get(draft.step_url("endpoint")).content.decode()
    assert "its settings stay as they are" in page
    assert "Token-based authentication" in page
    assert "team=search" in page
    assert 'name="auth_type"' not in page
    assert _post(deployer_client, draft, "endpoint", {"go": "next"})["Location"] == draft.step_url("deployment")


def test_it_asks_to_confirm_an_overwrite(deployer_client, draft, flow_version, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        endpoint = services.create_endpoint("ep-existing")
        existing = services.create_or_update_deployment(endpoint, "blue", flow_version, vm_size="Standard_DS1_v2")
    existing.__class__.objects.filter(pk=existing.pk).update(state=DeploymentState.SUCCEEDED)
    data = {**BASIC, "endpoint_mode": "existing", "existing_endpoint": "ep-existing", "go": "review"}
    response = _post(deployer_client, draft, "basic", data)
    assert response.status_code == 400
    html = response.content.decode()
    assert "Endpoint ep-existing already has a deployment named blue" in html
    assert "it will be overwritten with this configuration" in html
    assert "Overwrite the existing deployment" in html
    response = _post(deployer_client, draft, "basic", {**data, "confirm_overwrite": "on"})
    assert response["Location"] == draft.step_url("review")
    review = deployer_client.get(draft.step_url("review")).content.decode()
    assert "Deployment blue on endpoint ep-existing will be overwritten with this configuration." in review


def test_it_refuses_to_overwrite_a_busy_deployment(
    deployer_client, draft, flow_version, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        endpoint = services.create_endpoint("ep-existing")
        services.create_or_update_deployment(endpoint, "blue", flow_version, vm_size="Standard_DS1_v2")
    data = {**BASIC, "endpoint_mode": "existing", "existing_endpoint": "ep-existing", "confirm_overwrite": "on"}
    response = _post(deployer_client, draft, "basic", data)
    assert response.status_code == 400
    assert "Deployment blue is creating; wait until it finishes." in response.content.decode()
    assert Endpoint.objects.count() == 1


# --- issue 10: nothing lost, one rule, every error at once ---------------------------------------


@pytest.mark.parametrize("typed", ["0", "-1", "2.5", "", "21"])
def test_it_refuses_a_bad_count_in_the_live_capacity_line_with_the_same_message(deployer_client, draft, typed):
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TRIGGER_NAME": "instance_count"}
    html = deployer_client.get(
        draft.step_url("basic"), {"vm_size": "Standard_DS1_v2", "instance_count": typed}, **headers
    ).content.decode()
    assert '<div class="error" id="capacity-error">Instance count must be a whole number from 1 to 20.</div>' in html
    assert "Needs" not in html


def test_it_refuses_an_endpoint_name_that_differs_only_in_case(deployer_client, draft):
    services.create_endpoint("My-Ep")
    response = _post(deployer_client, draft, "basic", {**BASIC, "endpoint_name": "my-ep", "go": "next"})
    assert response.status_code == 400
    message = "Endpoint name my-ep is already taken by endpoint My-Ep: endpoint names are case-insensitive."
    assert message in response.content.decode()
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TRIGGER_NAME": "endpoint_name"}
    live = deployer_client.get(draft.step_url("basic"), {"endpoint_name": "MY-EP"}, **headers).content.decode()
    assert "Endpoint name MY-EP is already taken by endpoint My-Ep" in live


def test_it_shows_every_basic_fields_error_at_once(deployer_client, draft):
    data = {**BASIC, "endpoint_name": "1-bad", "deployment_name": "x", "instance_count": "0", "go": "next"}
    html = _post(deployer_client, draft, "basic", data).content.decode()
    for field, message in (
        ("endpoint_name", "Endpoint name must be 3 to 32 characters"),
        ("deployment_name", "Deployment name must be 3 to 32 characters"),
        ("instance_count", "Instance count must be a whole number from 1 to 20."),
    ):
        assert message in _field_block(html, field), field


def test_it_shows_every_deployment_fields_error_at_once(deployer_client, draft):
    _post(deployer_client, draft, "basic", {**BASIC, "go": "next"})
    response = _post(
        deployer_client,
        draft,
        "deployment",
        {"request_timeout_ms": "10", "max_concurrent_requests_per_instance": "0", "tags": "oops", "go": "next"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    for field, message in (
        ("request_timeout_ms", "Request timeout (ms) must be between 1000 and 3600000."),
        ("max_concurrent_requests_per_instance", "Max concurrent requests per instance must be between 1 and 1000."),
        ("tags", "Line 1: write each tag as key=value."),
    ):
        assert message in _field_block(html, field), field


def test_it_keeps_what_was_typed_when_going_back(deployer_client, draft):
    """Back saves the step as typed, valid or not, and the step shows it again (with its errors)."""
    _post(deployer_client, draft, "basic", {**BASIC, "go": "next"})
    typed = {"tags": "team=search", "request_timeout_ms": "10", "max_concurrent_requests_per_instance": "4"}
    response = _post(deployer_client, draft, "deployment", {**typed, "go": "back"})
    assert response.status_code == 302
    assert response["Location"] == draft.step_url("endpoint")
    draft.refresh_from_db()
    assert draft.raw("deployment") == {k: [v] for k, v in typed.items()}
    page = deployer_client.get(draft.step_url("deployment")).content.decode()
    assert "team=search</textarea>" in page
    assert 'name="request_timeout_ms" value="10"' in page
    assert 'name="max_concurrent_requests_per_instance" value="4"' in page
    assert "Request timeout (ms) must be between 1000 and 3600000." in page


def test_it_keeps_what_was_typed_when_leaving_by_the_step_list(deployer_client, draft):
    html = deployer_client.get(draft.step_url("basic")).content.decode()
    assert '<button type="submit" form="wizard-form" name="go" value="step:outputs"' in html
    assert '<form method="post" novalidate class="wizard-form" id="wizard-form">' in html
    response = _post(
        deployer_client,
        draft,
        "basic",
        {**BASIC, "endpoint_name": "ep-half", "instance_count": "", "go": "step:deployment"},
    )
    assert response["Location"] == draft.step_url("deployment")
    page = deployer_client.get(draft.step_url("basic")).content.decode()
    assert 'value="ep-half"' in page
    assert "Instance count must be a whole number from 1 to 20." in page  # shown again, with its problem
    review = deployer_client.get(draft.step_url("review")).content.decode()
    assert "This step needs attention" in review


def test_it_makes_enter_in_a_field_mean_next(deployer_client, draft):
    """The form's first submit button is a hidden Next; Back and the step list come after it in the page."""
    _post(deployer_client, draft, "basic", {**BASIC, "go": "next"})
    html = deployer_client.get(draft.step_url("deployment")).content.decode()
    form = html[html.index('id="wizard-form"') :]
    first = form[form.index("<button") : form.index("</button>")]
    assert 'name="go" value="next"' in first
    assert html.index('id="wizard-form"') < html.index('value="step:basic"')
    assert '<button type="submit" name="go" value="back">Back</button>' in html


def test_it_shows_a_connection_problem_beside_its_connection(deployer_client, import_flow):
    from wizard.models import DeploymentDraft

    version = import_flow("chat-basic")
    deployer_client.post("/deployments/new/", {"flow_version": version.pk})
    draft = DeploymentDraft.objects.get()
    _post(deployer_client, draft, "basic", {**BASIC, "go": "next"})
    response = _post(deployer_client, draft, "outputs", {"selected_outputs": list(version.outputs), "go": "review"})
    html = response.content.decode()
    field = html[html.index('name="connection__open_ai_connection"') :]
    field = field[: field.index('<div class="field">') if '<div class="field">' in field else None]
    assert "Connection &#x27;open_ai_connection&#x27; (used by node" in field
