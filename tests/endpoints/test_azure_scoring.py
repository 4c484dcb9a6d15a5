"""Scoring an Azure ML endpoint from the studio: the Consume tab's URL and samples, the Test tab (form, JSON
and the streamed chat) and the API's invoke all go to Azure's scoring URI with the key or token read from
Azure. Azure is two fakes here: the fake ARM (tests/fake_arm.py) the provider deploys to, and a real HTTP
server on loopback (tests/fake_azure_scoring.py) at the scoring URI that ARM reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fake_arm import FakeArm
from fake_azure_scoring import FakeAzureScoring, answer_text
from roles import member

from django.urls import reverse

from endpoints import provisioning, samples, services
from endpoints.models import Deployment, DeploymentState, Endpoint, Provider
from workspace.models import ProjectRole

pytest_plugins = ["fake_arm"]  # the azure and fake_azure fixtures

pytestmark = pytest.mark.filterwarnings("ignore")  # azure-ai-ml's experimental-class and marshmallow warnings

RUNNERS = {"python": [sys.executable], "python_requests": [sys.executable], "javascript": ["node"], "curl": ["bash"]}


@pytest.fixture
def scoring(azure: FakeArm) -> Iterator[FakeAzureScoring]:
    """Azure's scoring front end on loopback: endpoints the fake ARM makes get their scoring URI there."""
    with FakeAzureScoring(azure) as server:
        azure.scoring_base = server.url
        yield server


@pytest.fixture
def owner(django_user_model):
    return member(django_user_model.objects.create_user("azure-owner", password="pw-azure-1"), ProjectRole.OWNER)


@pytest.fixture
def studio(client, owner):
    client.force_login(owner)
    return client


def deploy(import_flow, owner, flow: str = "chat-stream-offline", **endpoint_kwargs) -> Deployment:
    """Endpoint ep-azure with deployment blue on the fake, provisioned here as the Celery job would."""
    endpoint = services.create_endpoint("ep-azure", user=owner, provider=Provider.AZUREML, **endpoint_kwargs)
    deployment = services.create_or_update_deployment(
        endpoint, "blue", import_flow(flow), user=owner, vm_size="Standard_DS3_v2"
    )
    provisioning.provision(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.state == DeploymentState.SUCCEEDED, deployment.failure_reason
    return deployment


def _primary_key(azure: FakeArm) -> str:
    return azure.endpoint_keys["ep-azure"]["primaryKey"]


def _test(studio, deployment: Deployment, data: dict):
    return studio.post(reverse("endpoints:test", args=[deployment.endpoint.name, deployment.name]), data)


def _events(chunks) -> list[tuple[str, dict]]:
    events = []
    for block in b"".join(chunks).decode().split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.splitlines())
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def _run(sample: samples.Sample, folder: Path, key: str) -> subprocess.CompletedProcess:
    """Run a sample as a user would: saved to a file, the key in the environment variable it reads."""
    path = folder / sample.filename
    path.write_text(sample.source, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in (samples.KEY_ENV, samples.TOKEN_ENV)}
    command = [*RUNNERS[sample.language], str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env={**env, samples.KEY_ENV: key})


def test_it_shows_azures_scoring_uri_and_its_samples_reach_it(azure, scoring, import_flow, owner, studio, tmp_path):
    """The Consume tab names the scoring URI Azure reported; Python, JavaScript and curl samples, run with the
    key from Azure, get Azure's answer, pinned to the deployment."""
    deploy(import_flow, owner)
    scoring_uri = f"{scoring.url}/ep-azure/score"
    assert Endpoint.objects.get(name="ep-azure").scoring_uri == scoring_uri

    response = studio.get("/deployments/ep-azure/blue/consume/")

    html = response.content.decode()
    assert f'<code id="rest-endpoint">{scoring_uri}</code>' in html
    assert f'<code id="swagger-uri">{scoring.url}/ep-azure/swagger.json</code>' in html
    rendered = {sample.language: sample for sample in response.context["samples"]}
    assert all(scoring_uri in sample.source for sample in rendered.values())
    assert all("azureml-model-deployment" in sample.source for sample in rendered.values())
    for language in RUNNERS:
        done = _run(rendered[language], tmp_path, _primary_key(azure))
        assert done.returncode == 0, f"{language}: {done.stdout}{done.stderr}"
        assert json.loads(done.stdout) == {"answer": "Azure says: Tell me about deployments"}, language
        seen = scoring.requests[-1]
        assert (seen.headers["authorization"], seen.headers["azureml-model-deployment"]) == (
            f"Bearer {_primary_key(azure)}",
            "blue",
        ), language
    assert scoring.statuses() == [200] * len(RUNNERS)


def test_the_test_tab_scores_through_azure_with_the_key_from_azure(azure, scoring, import_flow, owner, studio):
    """The form and the JSON editor get the scoring server's answer; it saw Azure's primary key and the pinned
    deployment, and the page never shows the key."""
    blue = deploy(import_flow, owner, flow="web-classification-offline")

    by_form = _test(studio, blue, {"fd-editor": "form", "location": "Paris", "url": "https://example.com/a"})
    result = by_form.context["result"]
    sent = {"location": "Paris", "url": "https://example.com/a"}
    assert (result.status, result.body, result.deployment) == (200, {"answer": answer_text(sent)}, "blue")
    assert result.request_id and result.latency_ms > 0
    (seen,) = scoring.requests
    assert seen.path == "/ep-azure/score" and seen.body == sent
    assert seen.headers["authorization"] == f"Bearer {_primary_key(azure)}"
    assert seen.headers["azureml-model-deployment"] == "blue"
    assert _primary_key(azure) not in by_form.content.decode()

    by_json = _test(studio, blue, {"fd-editor": "json", "fd-json": '{"location": "Oslo"}'})
    seen = scoring.requests[-1]
    assert seen.body["location"] == "Oslo"
    assert by_json.context["result"].body == {"answer": answer_text(seen.body)}


def test_the_chat_window_streams_azures_answer(azure, scoring, import_flow, owner, studio):
    """A chat turn asks Azure for server-sent events and passes each chunk on as a delta, then done."""
    blue = deploy(import_flow, owner)

    response = studio.post(reverse("endpoints:chat", args=["ep-azure", "blue"]), {"question": "how are you"})

    assert response.status_code == 200 and response.streaming
    events = _events(response.streaming_content)
    deltas = [data["text"] for event, data in events if event == "delta"]
    assert deltas == ["Azure", " says:", " how", " are", " you"]
    event, done = events[-1]
    assert event == "done", events
    assert (done["status"], done["deployment"], done["chunks"]) == (200, "blue", 5)
    assert done["answer"] == "Azure says: how are you"
    (seen,) = scoring.requests
    assert seen.headers["accept"] == "text/event-stream, application/json"
    assert seen.headers["authorization"] == f"Bearer {_primary_key(azure)}"
    assert seen.headers["azureml-model-deployment"] == blue.name


def test_the_apis_invoke_returns_azures_answer(azure, scoring, import_flow, owner, client):
    from api.models import PersonalAccessToken

    deploy(import_flow, owner)
    headers = {"Authorization": f"Bearer {PersonalAccessToken.issue(owner)[1]}"}
    url = "/api/v1/online-endpoints/ep-azure/invoke"

    routed = client.post(url, {"question": "hi"}, content_type="application/json", headers=headers)
    pinned = client.post(f"{url}?deployment_name=blue", {"question": "yo"}, "application/json", headers=headers)

    assert routed.status_code == 200, routed.content
    assert routed.json() == {"answer": "Azure says: hi"}
    assert routed["azureml-model-deployment"] == "blue" and routed["x-request-id"]
    assert pinned.json() == {"answer": "Azure says: yo"}
    unpinned, pinned_seen = scoring.requests
    assert "azureml-model-deployment" not in unpinned.headers  # Azure routed it by the endpoint's traffic
    assert pinned_seen.headers["azureml-model-deployment"] == "blue"
    assert {r.headers["authorization"] for r in scoring.requests} == {f"Bearer {_primary_key(azure)}"}


def test_a_regenerated_key_refuses_the_old_one_and_the_test_tab_uses_the_new(
    azure, scoring, import_flow, owner, studio
):
    blue = deploy(import_flow, owner, flow="web-classification-offline")
    old = _primary_key(azure)

    services.regenerate_key(blue.endpoint, "primary")

    new = _primary_key(azure)
    assert new != old
    refused = httpx.post(blue.endpoint.scoring_uri, json={}, headers={"Authorization": f"Bearer {old}"})
    assert refused.status_code == 401
    result = _test(studio, blue, {"fd-editor": "json", "fd-json": "{}"}).context["result"]
    assert result.status == 200, result.error_message
    assert scoring.requests[-1].headers["authorization"] == f"Bearer {new}"


def test_a_token_endpoint_is_tested_with_a_token_from_azure(azure, scoring, import_flow, owner, studio):
    """With AMLToken auth, Azure's scoring accepts the token its `token` action issued, and no key."""
    blue = deploy(import_flow, owner, flow="web-classification-offline", auth_type="aml_token")

    result = _test(studio, blue, {"fd-editor": "json", "fd-json": "{}"}).context["result"]

    assert result.status == 200, result.error_message
    (token,) = azure.endpoint_tokens["ep-azure"]
    assert scoring.requests[-1].headers["authorization"] == f"Bearer {token}"
    key = {"Authorization": f"Bearer {_primary_key(azure)}"}
    with_a_key = httpx.post(blue.endpoint.scoring_uri, json={}, headers=key)
    assert with_a_key.status_code == 401


def test_it_names_azures_scoring_uri_when_it_is_not_reachable(azure, import_flow, owner, studio):
    azure.scoring_base = "http://127.0.0.1:9"  # nothing listens there
    blue = deploy(import_flow, owner, flow="web-classification-offline")

    result = _test(studio, blue, {"fd-editor": "json", "fd-json": "{}"}).context["result"]

    assert (result.status, result.failure) == (502, "GatewayUnavailable")
    assert result.error_message.startswith("Azure's scoring URI http://127.0.0.1:9/ep-azure/score is not reachable")
    assert "scoring gateway" not in result.error_message


def test_it_says_an_azure_endpoint_has_no_scoring_uri_before_azure_made_it(azure, owner, client):
    from api.models import PersonalAccessToken

    services.create_endpoint("ep-azure", user=owner, provider=Provider.AZUREML)
    headers = {"Authorization": f"Bearer {PersonalAccessToken.issue(owner)[1]}"}

    answer = client.post("/api/v1/online-endpoints/ep-azure/invoke", {}, "application/json", headers=headers)

    assert answer.status_code == 502
    assert answer.json()["error"]["message"] == (
        "Endpoint ep-azure has no scoring URI yet: Azure Machine Learning has not finished creating it."
    )
    assert azure.calls("POST", "/listKeys") == []  # nothing asked of Azure
