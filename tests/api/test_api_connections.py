"""Connections through the API: promptflow's connection YAML as JSON; secrets go in and never come out."""

import json

import pytest
from api_client import error

from workspace.models import Connection

pytestmark = pytest.mark.django_db

API_KEY = "sk-api-test-5ecret-0042"
OPEN_AI = {"name": "gpt", "type": "open_ai", "api_key": API_KEY, "api_base": "http://127.0.0.1:9999/v1"}


def test_it_creates_a_connection_from_promptflows_fields(api):
    response = api.post("/connections", OPEN_AI)
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "gpt" and body["type"] == "open_ai"
    assert body["configs"] == {"base_url": "http://127.0.0.1:9999/v1"}
    assert body["secret_keys"] == ["api_key"]
    assert API_KEY not in response.content.decode()
    assert Connection.objects.get(name="gpt").get_secrets() == {"api_key": API_KEY}


def test_it_creates_a_custom_connection_with_configs_and_secrets(api):
    body = {
        "name": "search",
        "type": "custom",
        "configs": {"endpoint": "https://x.example"},
        "secrets": {"token": "t-5ecret"},
    }
    response = api.post("/connections", body)
    assert response.status_code == 201
    assert response.json()["secret_keys"] == ["token"]
    assert "t-5ecret" not in response.content.decode()


def test_it_never_returns_secrets_in_list_or_show(api):
    api.post("/connections", OPEN_AI)
    for response in (api.get("/connections"), api.get("/connections/gpt")):
        assert response.status_code == 200
        assert API_KEY not in response.content.decode()
    assert [c["name"] for c in api.get("/connections").json()] == ["gpt"]
    assert api.get("/connections/gpt").json()["secret_keys"] == ["api_key"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "open_ai", "api_key": "k"}, "name"),
        ({"name": "x", "type": "nope", "api_key": "k"}, "type"),
        ({"name": "x", "type": "open_ai"}, "api_key"),
        ({"name": "x", "type": "open_ai", "api_key": "k", "base_url": "not-a-url"}, "base_url"),
        ({"name": "x", "type": "open_ai", "api_key": "k", "deployment": "gpt4"}, "deployment"),
        ({"name": "has space", "type": "open_ai", "api_key": "k"}, "name"),
    ],
)
def test_it_names_the_field_that_is_wrong(api, body, field):
    response = api.post("/connections", body)
    assert response.status_code == 400
    assert error(response)["field"] == field
    assert error(response)["code"] == "ValidationError"


def test_it_refuses_a_second_connection_with_the_same_name(api):
    api.post("/connections", OPEN_AI)
    response = api.post("/connections", OPEN_AI)
    assert response.status_code == 409
    assert error(response)["field"] == "name"


def test_it_updates_a_connection_and_keeps_a_secret_left_blank(api):
    api.post("/connections", OPEN_AI)
    response = api.put("/connections/gpt", {"base_url": "http://127.0.0.1:7777/v1", "api_key": ""})
    assert response.status_code == 200
    assert response.json()["configs"] == {"base_url": "http://127.0.0.1:7777/v1"}
    assert Connection.objects.get(name="gpt").get_secrets() == {"api_key": API_KEY}


def test_it_refuses_to_change_a_connections_type(api):
    api.post("/connections", OPEN_AI)
    response = api.put("/connections/gpt", {"type": "serp", "api_key": "k"})
    assert response.status_code == 400
    assert error(response)["field"] == "type"


def test_it_refuses_a_body_naming_another_connection(api):
    api.post("/connections", OPEN_AI)
    response = api.put("/connections/gpt", {"name": "other", "api_key": "k"})
    assert response.status_code == 400
    assert error(response)["field"] == "name"


def test_it_deletes_a_connection(api):
    api.post("/connections", OPEN_AI)
    response = api.delete("/connections/gpt")
    assert response.status_code == 200
    assert response.json() == {"name": "gpt", "deleted": True}
    assert api.get("/connections/gpt").status_code == 404


def test_it_answers_404_for_an_unknown_connection(api):
    response = api.get("/connections/nope")
    assert response.status_code == 404
    assert "nope" in error(response)["message"]


def test_it_lets_a_reader_read_but_not_write(api, reader_api):
    api.post("/connections", OPEN_AI)
    assert reader_api.get("/connections/gpt").status_code == 200
    for response in (
        reader_api.post("/connections", {**OPEN_AI, "name": "mine"}),
        reader_api.put("/connections/gpt", {"api_key": "k"}),
        reader_api.delete("/connections/gpt"),
    ):
        assert response.status_code == 403
        assert "You are Reader of project 'default'" in error(response)["message"]


def test_it_lets_a_contributor_write(contributor_api):
    assert contributor_api.post("/connections", OPEN_AI).status_code == 201
    assert contributor_api.put("/connections/gpt", {"api_key": "k2"}).status_code == 200
    assert contributor_api.delete("/connections/gpt").status_code == 200


def test_it_keeps_secrets_out_of_the_audit_log(api):
    from workspace.models import AuditEvent

    api.post("/connections", OPEN_AI)
    assert API_KEY not in json.dumps(list(AuditEvent.objects.values("detail")))
