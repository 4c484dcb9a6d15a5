"""The connection provider instances call: a token per instance start, bound to the instance, its deployment
and generation, short-lived, accepted only from the instances' network, and never written to a log."""

import base64
import logging
import time
from urllib.parse import urlsplit

import pytest

from endpoints.connections import mint_token, provider_url
from endpoints.models import Deployment, DeploymentState, Endpoint, Instance, InstanceState
from endpoints.providers.local import instances as local_instances
from flows.models import Flow, FlowSource, FlowVersion
from workspace import identities
from workspace.connections import ConnectionSpec, save_connection
from workspace.models import BuiltInRole

pytestmark = pytest.mark.django_db

PROVIDER = "/internal/connection-provider/connections"
API_KEY = "sk-provider-test-3b9e"


@pytest.fixture
def deployment(settings):
    """blue, generation 2 live, whose flow uses open_ai_connection; the connection exists."""
    settings.FLOWDEPLOY_STUDIO_URL = "http://127.0.0.1:8000"
    save_connection(
        ConnectionSpec(
            name="open_ai_connection",
            type="open_ai",
            configs={"base_url": "http://127.0.0.1:9/v1"},
            secrets={"api_key": API_KEY},
        )
    )
    flow = Flow.objects.create(name="chat")
    version = FlowVersion.objects.create(
        flow=flow,
        version=1,
        content_hash="chat-hash",
        source=FlowSource.FOLDER,
        connections=[{"name": "open_ai_connection", "nodes": ["chat"], "types": ["OpenAIConnection"]}],
    )
    endpoint = Endpoint.objects.create(name="ep-provider", traffic={"blue": 100})
    # Its identity may read connection secrets (tests/endpoints/test_identity_enforcement.py: when it may not).
    identities.grant(endpoint.project, identities.system_principal(endpoint), BuiltInRole.CONNECTION_SECRETS_READER)
    return Deployment.objects.create(
        endpoint=endpoint,
        name="blue",
        flow_version=version,
        state=DeploymentState.SUCCEEDED,
        phase="Succeeded",
        generation=2,
        live_generation=2,
    )


@pytest.fixture
def instance(deployment):
    return Instance.objects.create(deployment=deployment, generation=2, ordinal=1, state=InstanceState.STARTING)


def _authorization(url: str) -> str:
    """The header httpx (promptflow's HTTP client) sends for a URL with user info."""
    parts = urlsplit(url)
    return "Basic " + base64.b64encode(f"{parts.username}:{parts.password}".encode()).decode()


def _token(url: str) -> str:
    return urlsplit(url).password


def _get(client, url: str, name: str | None = "open_ai_connection", **extra):
    path = PROVIDER if name is None else f"{PROVIDER}/{name}"
    extra.setdefault("HTTP_AUTHORIZATION", _authorization(url))
    return client.get(path, **extra)


def _forbidden(response) -> bool:
    return response.status_code == 403 and response.json()["error"]["code"] == "Forbidden"


def test_it_gives_a_starting_instance_its_connection(client, instance):
    response = _get(client, provider_url(instance))
    assert response.status_code == 200
    payload = response.json()
    assert payload["name"] == "open_ai_connection"
    assert payload["value"]["api_key"] == API_KEY
    assert payload["value"]["base_url"] == "http://127.0.0.1:9/v1"


def test_it_lists_the_connections_the_flow_uses(client, instance):
    response = _get(client, provider_url(instance), name=None)
    assert response.status_code == 200
    assert response.json() == [{"name": "open_ai_connection"}]


def test_it_puts_the_token_in_the_user_info_not_the_path(instance):
    url = provider_url(instance)
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
        "http",
        "127.0.0.1",
        8000,
        "/internal/connection-provider",
    )
    assert parts.username == "instance"
    assert parts.password and parts.password not in parts.path


def test_it_mints_a_fresh_token_for_every_start(deployment, instance):
    first = local_instances.instance_env_vars(deployment, instance)["PF_HTTP_CONNECTION_PROVIDER_ENDPOINT"]
    second = local_instances.instance_env_vars(deployment, instance)["PF_HTTP_CONNECTION_PROVIDER_ENDPOINT"]
    assert _token(first) != _token(second)


def test_it_answers_a_ready_instance_and_one_being_restarted(client, instance):
    for state in (InstanceState.READY, InstanceState.CRASHED):
        Instance.objects.filter(pk=instance.pk).update(state=state)
        assert _get(client, provider_url(instance)).status_code == 200, state


def test_it_refuses_the_token_of_a_start_that_crashed(client, instance):
    """Once the crash is recorded (restarts + 1), the token of that start is worthless; the restart gets a new one."""
    url = provider_url(instance)
    Instance.objects.filter(pk=instance.pk).update(state=InstanceState.CRASHED, restarts=1)
    assert _forbidden(_get(client, url))
    instance.refresh_from_db()
    assert _get(client, provider_url(instance)).status_code == 200


def test_it_refuses_a_token_signed_with_another_key(client, instance, settings):
    settings.SECRET_KEY = "somebody-elses-secret-key"
    forged = provider_url(instance)
    settings.SECRET_KEY = "flowdeploy-test-secret-key"
    assert _forbidden(_get(client, forged))


def test_it_refuses_a_tampered_token(client, instance, deployment):
    other = Instance.objects.create(deployment=deployment, generation=2, ordinal=2, state=InstanceState.READY)
    payload, _ = mint_token(instance).split(".")
    _, other_signature = mint_token(other).split(".")
    url = f"http://instance:{payload}.{other_signature}@127.0.0.1:8000/internal/connection-provider"
    assert _forbidden(_get(client, url))


def test_it_refuses_an_expired_token(client, instance, settings):
    settings.FLOWDEPLOY_PROVIDER_TOKEN_LIFETIME = 180
    fresh = mint_token(instance, now=time.time() - 170)
    expired = mint_token(instance, now=time.time() - 181)
    assert _get(client, f"http://instance:{fresh}@127.0.0.1:8000").status_code == 200
    assert _forbidden(_get(client, f"http://instance:{expired}@127.0.0.1:8000"))


def test_it_refuses_a_retired_generations_instance(client, deployment):
    """Generation 1 was replaced by 2: its instances fail even if a row still says Ready or Draining."""
    for state in (InstanceState.READY, InstanceState.DRAINING, InstanceState.STOPPED):
        old = Instance.objects.create(deployment=deployment, generation=1, ordinal=1, state=state)
        assert _forbidden(_get(client, provider_url(old))), state
        old.delete()


def test_it_answers_the_generation_an_update_is_starting(client, deployment):
    """While generation 3 starts, generation 2 still serves: both may fetch."""
    Deployment.objects.filter(pk=deployment.pk).update(generation=3, state=DeploymentState.UPDATING)
    live = Instance.objects.create(deployment=deployment, generation=2, ordinal=1, state=InstanceState.CRASHED)
    starting = Instance.objects.create(deployment=deployment, generation=3, ordinal=1)
    assert _get(client, provider_url(live)).status_code == 200
    assert _get(client, provider_url(starting)).status_code == 200


def test_it_refuses_a_stopped_instance(client, instance):
    url = provider_url(instance)
    Instance.objects.filter(pk=instance.pk).update(state=InstanceState.STOPPED)
    assert _forbidden(_get(client, url))


def test_it_refuses_a_deleted_deployments_instance(client, deployment, instance):
    url = provider_url(instance)
    Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.DELETING)
    assert _forbidden(_get(client, url))
    deployment.delete()
    assert _forbidden(_get(client, url))


def test_it_refuses_an_instance_of_another_deployment(client, deployment, instance):
    """The token names the deployment too: an instance id under another deployment's name does not pass."""
    other = Deployment.objects.create(endpoint=deployment.endpoint, name="green", flow_version=deployment.flow_version)
    Instance.objects.filter(pk=instance.pk).update(deployment=other)
    assert _forbidden(_get(client, provider_url(Instance(pk=instance.pk, deployment=deployment, generation=2))))


def test_it_refuses_a_call_without_a_token(client, instance):
    assert _forbidden(client.get(f"{PROVIDER}/open_ai_connection"))
    assert _forbidden(client.get(f"{PROVIDER}/open_ai_connection", HTTP_AUTHORIZATION="Bearer x"))
    assert _forbidden(client.get(f"{PROVIDER}/open_ai_connection", HTTP_AUTHORIZATION="Basic !!!"))


def test_it_refuses_a_good_token_from_another_address(client, instance):
    url = provider_url(instance)
    assert _forbidden(_get(client, url, REMOTE_ADDR="192.0.2.10"))
    assert _forbidden(_get(client, url, REMOTE_ADDR="10.0.0.5"))


def test_it_refuses_a_good_token_that_came_through_a_proxy(client, instance):
    url = provider_url(instance)
    assert _forbidden(_get(client, url, HTTP_X_FORWARDED_FOR="198.51.100.7"))
    assert _forbidden(_get(client, url, HTTP_FORWARDED="for=198.51.100.7"))


def test_it_answers_ipv6_loopback_and_the_networks_in_the_setting(client, instance, settings):
    assert _get(client, provider_url(instance), REMOTE_ADDR="::1").status_code == 200
    assert _get(client, provider_url(instance), REMOTE_ADDR="::ffff:127.0.0.1").status_code == 200
    settings.FLOWDEPLOY_PROVIDER_ALLOWED_NETWORKS = ["172.28.57.0/24"]
    assert _get(client, provider_url(instance), REMOTE_ADDR="172.28.57.4").status_code == 200
    assert _forbidden(_get(client, provider_url(instance)))


def test_it_answers_only_for_the_connections_the_flow_uses(client, instance):
    save_connection(ConnectionSpec(name="other", type="open_ai", secrets={"api_key": "sk-other"}))
    response = _get(client, provider_url(instance), name="other")
    assert response.status_code == 404
    assert "sk-other" not in response.content.decode()


def test_it_never_logs_the_token(client, instance, caplog):
    """Django logs 4xx answers with their path ("Forbidden: /internal/..."): the token is not in it."""
    url = provider_url(instance)
    token = _token(url)
    caplog.set_level(logging.DEBUG)
    assert _get(client, url, name="unused").status_code == 404
    assert _forbidden(_get(client, url, REMOTE_ADDR="192.0.2.10"))
    Instance.objects.filter(pk=instance.pk).update(state=InstanceState.STOPPED)
    assert _forbidden(_get(client, url))
    messages = [record.getMessage() for record in caplog.records]
    assert any("Forbidden: /internal/connection-provider/connections/open_ai_connection" in m for m in messages)
    assert any("Not Found: /internal/connection-provider/connections/unused" in m for m in messages)
    for record in caplog.records:
        assert token not in record.getMessage()
        assert token not in repr(record.args)
        assert _authorization(url).split()[1] not in record.getMessage()
