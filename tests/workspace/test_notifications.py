import pytest

from django.test import RequestFactory
from django.urls import reverse

from workspace import notifications
from workspace.context_processors import notifications as bell_context
from workspace.models import Notification

pytestmark = pytest.mark.django_db

BELL = reverse("workspace:bell")


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("ann", password="pw-ann-12345")


@pytest.fixture
def user_client(client, user):
    client.force_login(user)
    return client


def test_it_creates_and_updates_a_notification(user):
    """notify() creates an unread notification; update() changes its body and level."""
    note = notifications.notify(user, "Bulk test run", "Queued", link="/flows/1/", level="running")
    assert (note.title, note.body, note.level, note.read_at) == ("Bulk test run", "Queued", "running", None)
    notifications.update(note.pk, body="3 of 10 lines")
    note.refresh_from_db()
    assert (note.body, note.level) == ("3 of 10 lines", "running")
    notifications.update(note.pk, body="Done", level="success")
    note.refresh_from_db()
    assert (note.body, note.level) == ("Done", "success")


def test_it_marks_a_finished_job_unread_again(user):
    """A notification that turns success or error becomes unread, so the bell shows the result."""
    note = notifications.notify(user, "Bulk test run", level="running")
    note.mark_read()
    notifications.update(note.pk, level="error", body="Line 3 failed")
    note.refresh_from_db()
    assert note.read_at is None


def test_it_refuses_an_unknown_level(user):
    """notify() and update() refuse a level that is not info, success, error or running."""
    with pytest.raises(ValueError, match="level must be one of"):
        notifications.notify(user, "x", level="warning")
    note = notifications.notify(user, "x")
    with pytest.raises(ValueError, match="level must be one of"):
        notifications.update(note.pk, level="bad")


def test_it_ignores_updates_to_a_missing_notification():
    """update() of an id that does not exist does nothing."""
    notifications.update(123456, body="x")


def test_it_orders_newest_first(user):
    """Notifications come newest first."""
    first = notifications.notify(user, "first")
    second = notifications.notify(user, "second")
    assert list(Notification.objects.filter(user=user)) == [second, first]


def test_it_gives_the_bell_context_in_two_queries(user, django_assert_num_queries):
    """The context processor gives the latest 10 and the unread count with two queries."""
    for i in range(12):
        notifications.notify(user, f"n{i}")
    Notification.objects.filter(title="n0").update(read_at="2025-01-01T00:00:00Z")
    request = RequestFactory().get("/")
    request.user = user
    with django_assert_num_queries(2):
        context = bell_context(request)
        assert len(list(context["notifications"])) == 10
        assert context["unread_notifications"] == 11


def test_it_gives_anonymous_users_an_empty_bell(django_assert_num_queries):
    """Anonymous requests get no notifications and run no query."""
    from django.contrib.auth.models import AnonymousUser

    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    with django_assert_num_queries(0):
        context = bell_context(request)
    assert context == {
        "notifications": [],
        "unread_notifications": 0,
        "notifications_running": False,
        "current_project": None,
        "switchable_projects": [],
        "can_audit": False,
        "can_manage_project": False,
    }


def test_it_shows_the_bell_on_pages(user_client, user):
    """Every signed-in page has the bell with its unread count and a polling panel inside <details>."""
    notifications.notify(user, "Bulk test run", "Running line 3", level="running")
    html = user_client.get(reverse("workspace:connections")).content.decode()
    assert '<details class="bell"' in html
    assert '<span id="bell-count" class="count">1</span>' in html
    assert 'hx-get="/notifications/bell/" hx-trigger="every 2s" hx-swap="outerHTML"' in html
    assert "Bulk test run" in html


def test_it_polls_slower_when_no_job_is_running(user_client, user):
    """A running job's phase shows within 2 s; with nothing running the bell polls every 10 s."""
    notifications.notify(user, "Keys regenerated", level="success")
    html = user_client.get(reverse("workspace:connections")).content.decode()
    assert 'hx-get="/notifications/bell/" hx-trigger="every 10s" hx-swap="outerHTML"' in html


def test_it_returns_the_bell_fragment(user_client, user, django_user_model):
    """The bell view returns the panel and an out-of-band unread count, for this user only."""
    other = django_user_model.objects.create_user("bob", password="pw-bob-12345")
    notifications.notify(user, "Import finished", "chat-basic v1", level="success")
    notifications.notify(user, "Bulk test run", level="running")
    notifications.notify(other, "Not for ann")
    response = user_client.get(BELL, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div class="panel" id="bell-panel"')
    assert '<span id="bell-count" class="count" hx-swap-oob="true">2</span>' in html
    assert html.count('class="unread"') == 2
    assert "<strong>Import finished</strong>" in html and "chat-basic v1" in html
    assert "Not for ann" not in html
    assert "<details" not in html


def test_it_shows_no_count_when_all_read(user_client, user):
    """With nothing unread the count is an empty placeholder and the panel says so when empty."""
    html = user_client.get(BELL).content.decode()
    assert '<span id="bell-count" hx-swap-oob="true"></span>' in html
    assert "No notifications yet." in html


def test_it_opens_a_notification_and_marks_it_read(user_client, user):
    """Opening a notification marks it read and redirects to its link."""
    note = notifications.notify(user, "Import finished", link="/flows/7/")
    response = user_client.get(reverse("workspace:notification_open", args=[note.pk]))
    assert response.status_code == 302
    assert response.url == "/flows/7/"
    note.refresh_from_db()
    assert note.read_at is not None
    html = user_client.get(BELL).content.decode()
    assert 'class="unread"' not in html


def test_it_does_not_redirect_to_other_sites(user_client, user):
    """A link to another site is not followed; the user goes to the home page."""
    note = notifications.notify(user, "x", link="https://evil.example/")
    response = user_client.get(reverse("workspace:notification_open", args=[note.pk]))
    assert response.url == "/"


def test_it_404s_for_someone_elses_notification(user_client, django_user_model):
    """A notification of another user is 404 and stays unread."""
    other = django_user_model.objects.create_user("bob", password="pw-bob-12345")
    note = notifications.notify(other, "Bob's run", link="/flows/1/")
    response = user_client.get(reverse("workspace:notification_open", args=[note.pk]))
    assert response.status_code == 404
    note.refresh_from_db()
    assert note.read_at is None


def test_it_marks_all_read(user_client, user, django_user_model):
    """POST read-all marks this user's notifications read (htmx gets the fresh fragment)."""
    other = django_user_model.objects.create_user("bob", password="pw-bob-12345")
    notifications.notify(user, "a")
    notifications.notify(user, "b")
    theirs = notifications.notify(other, "c")
    response = user_client.post(reverse("workspace:notifications_read_all"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert '<span id="bell-count" hx-swap-oob="true"></span>' in response.content.decode()
    assert not Notification.objects.filter(user=user, read_at=None).exists()
    theirs.refresh_from_db()
    assert theirs.read_at is None


def test_it_requires_post_and_login_for_read_all(user_client, client):
    """read-all refuses GET and anonymous users."""
    assert user_client.get(reverse("workspace:notifications_read_all")).status_code == 405
    client.logout()
    assert client.post(reverse("workspace:notifications_read_all")).status_code == 302


def test_it_stops_polling_when_signed_out(client):
    """The bell answers 286 (htmx: stop polling) once the session is gone."""
    response = client.get(BELL, headers={"HX-Request": "true"})
    assert response.status_code == 286
    assert response.content == b""


def test_it_lists_notifications_in_admin(admin_client, user):
    """The admin lists notifications with their user and level."""
    notifications.notify(user, "Bulk test run", level="error")
    html = admin_client.get(reverse("admin:workspace_notification_changelist")).content.decode()
    assert "Bulk test run" in html and "ann" in html
