"""Token authentication: personal access tokens, the token endpoint, sessions with CSRF, JSON errors."""

from datetime import timedelta

import pytest
from api_client import PASSWORD, Api, error

from django.utils import timezone

from api.models import PersonalAccessToken, token_digest

pytestmark = pytest.mark.django_db


def test_it_refuses_a_request_without_a_token(anonymous_api):
    response = anonymous_api.get("/online-endpoints")
    assert response.status_code == 401
    assert error(response)["code"] == "Unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_an_unknown_token(client):
    response = Api(client, "fdp_" + "x" * 43).get("/online-endpoints")
    assert response.status_code == 401
    assert "not valid" in error(response)["message"]


def test_it_refuses_a_header_that_is_not_a_bearer_token(client, anonymous_api):
    response = anonymous_api.get("/connections", headers={"Authorization": "Basic b3BzOnB3"})
    assert response.status_code == 401
    assert "Bearer fdp_" in error(response)["message"]


def test_it_refuses_a_revoked_token(client, staff):
    row, token = PersonalAccessToken.issue(staff)
    assert row.revoke()
    assert Api(client, token).get("/connections").status_code == 401


def test_it_refuses_an_expired_token(client, staff):
    row, token = PersonalAccessToken.issue(staff, expires_in=timedelta(days=1))
    PersonalAccessToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Api(client, token).get("/connections").status_code == 401


def test_it_refuses_the_token_of_a_deactivated_user(client, staff):
    _, token = PersonalAccessToken.issue(staff)
    staff.is_active = False
    staff.save()
    assert Api(client, token).get("/connections").status_code == 401


def test_it_accepts_a_valid_token_and_records_its_use(api):
    response = api.get("/me")
    assert response.status_code == 200
    assert response.json()["username"] == "ops"
    assert response.json()["token"]["prefix"] == api.token[:12]
    assert PersonalAccessToken.objects.get().last_used_at is not None


def test_it_stores_only_the_digest_of_a_token(staff):
    row, token = PersonalAccessToken.issue(staff, "laptop")
    assert token.startswith("fdp_") and len(token) > 40
    row.refresh_from_db()
    assert row.digest == token_digest(token)
    assert token not in {str(value) for value in row.__dict__.values()}
    assert token not in repr(row) and token not in str(row)


def test_it_issues_a_token_for_a_username_and_password(anonymous_api, staff):
    response = anonymous_api.post("/auth/token", {"username": "ops", "password": PASSWORD, "name": "ci"})
    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith("fdp_") and body["username"] == "ops" and body["name"] == "ci"
    assert body["prefix"] == body["token"][:12]
    anonymous_api.token = body["token"]
    assert anonymous_api.get("/me").json()["username"] == "ops"


def test_it_refuses_a_token_for_a_wrong_password(anonymous_api, staff):
    response = anonymous_api.post("/auth/token", {"username": "ops", "password": "wrong-password"})
    assert response.status_code == 401
    assert error(response)["message"] == "Wrong username or password."
    assert not PersonalAccessToken.objects.exists()


def test_it_names_the_missing_field_of_a_token_request(anonymous_api):
    response = anonymous_api.post("/auth/token", {"username": "ops"})
    assert response.status_code == 400
    assert error(response)["field"] == "password"


def test_it_gives_a_token_an_expiry_when_asked(anonymous_api, staff):
    response = anonymous_api.post("/auth/token", {"username": "ops", "password": PASSWORD, "expires_in_days": 7})
    expires = PersonalAccessToken.objects.get().expires_at
    assert response.json()["expires_at"] == expires.isoformat()
    assert timedelta(days=6) < expires - timezone.now() <= timedelta(days=7)


def test_it_lets_the_studios_session_read(client, staff):
    client.force_login(staff)
    assert client.get("/api/v1/connections").status_code == 200


def test_it_checks_csrf_for_session_writes_but_not_for_token_writes(client, staff):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)
    body = {"name": "ep-csrf"}
    response = browser.post("/api/v1/online-endpoints", body, content_type="application/json")
    assert response.status_code == 403
    assert error(response)["code"] == "CsrfFailed"
    _, token = PersonalAccessToken.issue(staff)
    tokened = Client(enforce_csrf_checks=True)
    response = tokened.post(
        "/api/v1/online-endpoints", body, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201


def test_it_answers_json_for_an_unknown_route(api):
    response = api.get("/no-such-thing")
    assert response.status_code == 404
    assert error(response)["code"] == "NotFound"


def test_it_answers_405_naming_the_allowed_methods(api):
    response = api.call("PATCH", "/connections", {})
    assert response.status_code == 405
    assert response["Allow"] == "GET, POST"


def test_it_refuses_a_body_that_is_not_json(api):
    response = api.client.post(
        "/api/v1/online-endpoints",
        data="name=x",
        content_type="text/plain",
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert response.status_code == 415
    response = api.client.post(
        "/api/v1/online-endpoints",
        data="{nope",
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert response.status_code == 400
    assert error(response)["code"] == "InvalidJson"


def test_it_lists_tokens_in_the_admin_without_their_digest(admin_client, staff):
    row, _ = PersonalAccessToken.issue(staff, "laptop")
    response = admin_client.get("/admin/api/personalaccesstoken/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "laptop" in html and row.prefix in html and "Last used at" in html
    assert row.digest not in html


def test_it_revokes_tokens_from_the_admin(admin_client, staff):
    row, token = PersonalAccessToken.issue(staff)
    admin_client.post("/admin/api/personalaccesstoken/", {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked
    assert PersonalAccessToken.authenticate(token) is None
