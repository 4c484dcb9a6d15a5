import pytest

from django.contrib.auth.models import AnonymousUser
from django.urls import reverse

from workspace import audit
from workspace.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_it_records_an_event(admin_user):
    """record() stores actor, action, target and detail."""
    audit.record(admin_user, "flow.import", "chat-basic v1", source="upload", size=3)
    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.target) == (admin_user, "flow.import", "chat-basic v1")
    assert event.detail == {"source": "upload", "size": 3}


def test_it_records_system_and_anonymous_actions_without_actor():
    """None and AnonymousUser are stored as no actor."""
    audit.record(None, "endpoint.reconcile", "ep1")
    audit.record(AnonymousUser(), "endpoint.reconcile", "ep2")
    assert list(AuditEvent.objects.values_list("actor", flat=True)) == [None, None]


def test_it_masks_detail_keys_that_name_secrets(admin_user):
    """Detail values under secret-looking keys (api_key, password, token...) are masked."""
    audit.record(admin_user, "x", "y", api_key="sk-leak", password="p", token="t", name="ok")
    assert AuditEvent.objects.get().detail == {
        "api_key": "***",
        "password": "***",
        "token": "***",
        "name": "ok",
    }


def test_it_stores_non_json_detail_as_text(admin_user):
    """Dates and other values are stored in a JSON-safe form."""
    import datetime

    audit.record(admin_user, "x", "y", when=datetime.date(2025, 1, 2), path=object())
    detail = AuditEvent.objects.get().detail
    assert detail["when"] == "2025-01-02"
    assert isinstance(detail["path"], str)


def test_it_shows_a_read_only_admin(admin_client, admin_user):
    """The admin lists events and can filter them, but cannot add, change or delete them."""
    audit.record(admin_user, "connection.create", "gpt", type="open_ai")
    html = admin_client.get(reverse("admin:workspace_auditevent_changelist")).content.decode()
    assert "connection.create" in html and "gpt" in html
    filtered = admin_client.get(reverse("admin:workspace_auditevent_changelist"), {"action": "connection.create"})
    assert filtered.status_code == 200
    searched = admin_client.get(reverse("admin:workspace_auditevent_changelist"), {"q": "gpt"})
    assert "connection.create" in searched.content.decode()
    event = AuditEvent.objects.get(action="connection.create")
    assert admin_client.get(reverse("admin:workspace_auditevent_add")).status_code == 403
    change = admin_client.get(reverse("admin:workspace_auditevent_change", args=[event.pk]))
    assert change.status_code == 200 and 'name="_save"' not in change.content.decode()
    assert admin_client.post(reverse("admin:workspace_auditevent_delete", args=[event.pk])).status_code == 403


def test_it_records_admin_deletes_of_connections(admin_client):
    """Deleting a connection in the admin writes a connection.delete event."""
    from workspace.connections import ConnectionSpec, save_connection

    connection = save_connection(ConnectionSpec("gpt", "serp", {}, {"api_key": "k"}))
    admin_client.post(reverse("admin:workspace_connection_delete", args=[connection.pk]), {"post": "yes"})
    assert AuditEvent.objects.filter(action="connection.delete", target="gpt").exists()
