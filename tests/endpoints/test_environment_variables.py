"""A deployment's environment variables: names that change how an instance starts, or that Flowdeploy and
promptflow set, are refused with the field and the name, through the services, the API and the wizard."""

import json

import pytest
from roles import member

from django.core.exceptions import ValidationError

from api.models import PersonalAccessToken
from endpoints import services
from endpoints.environment_variables import MAX_VALUE_BYTES, environment_variable_problems
from endpoints.models import Deployment, DeploymentState
from flows.models import Flow, FlowSource, FlowVersion
from wizard.models import DeploymentDraft
from workspace.models import ProjectRole

REFUSED = [
    ("LD_PRELOAD", "it changes how the dynamic loader starts the instance"),
    ("LD_LIBRARY_PATH", "dynamic loader"),
    ("ld_audit", "dynamic loader"),
    ("GCONV_PATH", "dynamic loader"),
    ("GLIBC_TUNABLES", "dynamic loader"),
    ("PYTHONPATH", "it changes how Python starts in the instance"),
    ("PYTHONHOME", "Python starts"),
    ("PYTHONSTARTUP", "Python starts"),
    ("PYTHONINSPECT", "Python starts"),
    ("PYTHONWARNINGS", "Python starts"),
    ("pythonpath", "Python starts"),
    ("PATH", "where the instance finds programs and writes files"),
    ("HOME", "writes files"),
    ("VIRTUAL_ENV", "writes files"),
    ("TMPDIR", "writes files"),
    ("NO_PROXY", "away from proxies"),
    ("no_proxy", "away from proxies"),
    ("PF_HOME_DIRECTORY", "promptflow's home, connections or serving settings"),
    ("PF_HTTP_CONNECTION_PROVIDER_ENDPOINT", "promptflow's"),
    ("PF_USE_SANDBOX_FOR_JINJA", "promptflow's"),
    ("PROMPTFLOW_PROJECT_PATH", "promptflow's"),
    ("PROMPTFLOW_RESPONSE_INCLUDED_FIELDS", "Choose the outputs with selected_outputs instead."),
    ("PROMPTFLOW_CONNECTIONS", "promptflow's"),
    ("PROMPTFLOW_CONNECTION_PROVIDER", "promptflow's"),
    ("GUNICORN_CMD_ARGS", "gunicorn"),
    ("FLOWDEPLOY_INSTANCE_ID", "the studio's own settings"),
    ("DJANGO_SECRET_KEY", "the studio's own settings"),
    ("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "Azure Monitor"),
    ("APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED", "Azure Monitor"),
]
ACCEPTED = {
    "LOG_LEVEL": "debug",
    "_PRIVATE": "",
    "OPENAI_API_VERSION": "2024-02-01",
    "MY_CONNECTION_API_BASE": "https://example.com/v1",
    "LANG": "de_DE.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HTTPS_PROXY": "http://proxy.example:3128",
    "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/corp.pem",
    "SSL_CERT_FILE": "/etc/ssl/certs/corp.pem",
    "PROMPTFLOW_RUN_MODE": "serving",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    "BIG": "x" * MAX_VALUE_BYTES,
    "UNICODE": "grüße ✓",
}


@pytest.mark.parametrize(("name", "reason"), REFUSED)
def test_it_refuses_names_that_change_how_the_instance_starts(name, reason):
    (problem,) = environment_variable_problems({"LOG_LEVEL": "debug", name: "x"})
    assert problem.startswith(f"Environment variable {name!r} is not allowed: ")
    assert reason in problem


def test_it_says_why_for_the_loader():
    assert environment_variable_problems({"LD_PRELOAD": "/tmp/x.so"}) == [
        "Environment variable 'LD_PRELOAD' is not allowed: it changes how the dynamic loader starts the instance."
    ]


def test_it_accepts_ordinary_names():
    assert environment_variable_problems(ACCEPTED) == []
    assert environment_variable_problems({}) == environment_variable_problems(None) == []


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"1ABC": "x"}, "Environment variable name '1ABC' is not allowed"),
        ({"MY-VAR": "x"}, "name 'MY-VAR' is not allowed"),
        ({"A B": "x"}, "name 'A B' is not allowed"),
        ({"": "x"}, "name '' is not allowed"),
        ({"ÄPFEL": "x"}, "is not allowed: use letters, digits and '_'"),
        ({"A" * 129: "x"}, "at most 128 characters"),
        ({"NUL": "a\0b"}, "Environment variable 'NUL': the value contains a NUL byte."),
        ({"LONG": "x" * (MAX_VALUE_BYTES + 1)}, "Environment variable 'LONG': the value is longer than 32 KiB."),
        ({"WIDE": "é" * (MAX_VALUE_BYTES // 2 + 1)}, "longer than 32 KiB"),
        ({"NUMBER": 3}, "Environment variable 'NUMBER': the value must be a string, not int."),
        ({"NONE": None}, "the value must be a string, not NoneType"),
        ({"SURROGATE": "\ud800"}, "the value is not valid text"),
        ({f"V{i}": "x" for i in range(101)}, "at most 100 environment variables, not 101"),
        (["LOG_LEVEL=debug"], "Environment variables must be NAME: value pairs."),
    ],
)
def test_it_refuses_bad_names_and_values(values, fragment):
    problems = environment_variable_problems(values)
    assert len(problems) == 1, problems
    assert fragment in problems[0]


def test_it_allows_exactly_100_variables():
    assert environment_variable_problems({f"V{i}": "x" for i in range(100)}) == []


# --- through the services, the API and the wizard ---------------------------------------------


@pytest.fixture
def flow_version(db) -> FlowVersion:
    flow = Flow.objects.create(name="web")
    return FlowVersion.objects.create(
        flow=flow,
        version=1,
        content_hash="web-hash",
        source=FlowSource.FOLDER,
        inputs={"url": {"type": "string"}},
        outputs={"category": {"type": "string"}},
        nodes=[{"name": "classify", "type": "python"}],
        connections=[],
    )


@pytest.fixture
def endpoint(db):
    return services.create_endpoint("ep-env")


def test_the_service_refuses_with_the_field_and_every_name(endpoint, flow_version, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks, pytest.raises(ValidationError) as caught:
        services.create_or_update_deployment(
            endpoint,
            "blue",
            flow_version,
            environment_variables={"LOG_LEVEL": "debug", "LD_PRELOAD": "/tmp/x.so", "PYTHONPATH": "/tmp"},
        )
    assert list(caught.value.message_dict) == ["environment_variables"]
    messages = caught.value.message_dict["environment_variables"]
    assert [m.split(" is not allowed")[0] for m in messages] == [
        "Environment variable 'LD_PRELOAD'",
        "Environment variable 'PYTHONPATH'",
    ]
    assert callbacks == [] and not Deployment.objects.exists()


def test_the_service_stores_accepted_variables(endpoint, flow_version, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        deployment = services.create_or_update_deployment(
            endpoint, "blue", flow_version, environment_variables={"LOG_LEVEL": "debug", "LANG": "C.UTF-8"}
        )
    deployment.refresh_from_db()
    assert deployment.environment_variables == {"LOG_LEVEL": "debug", "LANG": "C.UTF-8"}


def test_the_api_answers_400_naming_the_field_and_the_variable(
    client, django_user_model, endpoint, flow_version, django_capture_on_commit_callbacks
):
    staff = django_user_model.objects.create_user("ops", password="pw-env-tests-1", is_staff=True)
    member(staff, ProjectRole.OWNER)
    token = PersonalAccessToken.issue(staff)[1]
    body = {"flow": "web:1", "environment_variables": {"LD_PRELOAD": "/tmp/x.so"}}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.put(
            "/api/v1/online-endpoints/ep-env/deployments/blue",
            data=json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == "environment_variables"
    assert error["message"] == (
        "Environment variable 'LD_PRELOAD' is not allowed: it changes how the dynamic loader starts the instance."
    )
    assert callbacks == [] and not Deployment.objects.exists()


def test_the_wizard_sends_an_update_with_a_refused_variable_back_to_the_deployment_step(
    client, django_user_model, endpoint, flow_version, django_capture_on_commit_callbacks
):
    """The wizard has no field for variables; overwriting a deployment that holds a refused one (saved before
    the rule) stops at Create, on the Deployment step, naming the variable, and changes nothing."""
    with django_capture_on_commit_callbacks(execute=False):
        blue = services.create_or_update_deployment(endpoint, "blue", flow_version)
    Deployment.objects.filter(pk=blue.pk).update(
        state=DeploymentState.SUCCEEDED, environment_variables={"PYTHONSTARTUP": "/tmp/x.py"}
    )
    user = member(django_user_model.objects.create_user("deployer", password="deployer-pass-1"), "contributor")
    client.force_login(user)
    assert client.post("/deployments/new/", {"flow_version": flow_version.pk}).status_code == 302
    draft = DeploymentDraft.objects.get()
    basic = {
        "endpoint_mode": "existing",
        "endpoint_name": "",
        "existing_endpoint": "ep-env",
        "deployment_name": "blue",
        "vm_size": "Standard_DS1_v2",
        "instance_count": "1",
        "confirm_overwrite": "on",
        "go": "review",
    }
    response = client.post(draft.step_url("basic"), basic)
    assert response["Location"] == draft.step_url("review"), response.content.decode()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(draft.step_url("review"), follow=True)
    assert response.redirect_chain[-1][0] == draft.step_url("deployment")
    page = response.content.decode()
    assert "Environment variable &#x27;PYTHONSTARTUP&#x27; is not allowed: it changes how Python starts" in page
    assert callbacks == []
    blue.refresh_from_db()
    assert (blue.generation, blue.state) == (1, DeploymentState.SUCCEEDED)


def test_it_leaves_refused_variables_out_of_a_restart_of_an_older_deployment():
    """A deployment saved before the rule is not restarted with what the rule now refuses."""
    from types import SimpleNamespace

    from endpoints.providers.local.instances import instance_env_vars

    flow_version = SimpleNamespace(outputs={"answer": {}}, connections=[])
    deployment = SimpleNamespace(
        environment_variables={"LD_PRELOAD": "/tmp/evil.so", "MY_SETTING": "1"},
        flow_version=flow_version,
        selected_outputs=[],
    )
    assert instance_env_vars(deployment, None) == {"MY_SETTING": "1"}
