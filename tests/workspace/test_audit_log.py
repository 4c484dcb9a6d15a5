"""The audit log: where calls come from, sign-in events, and the Owners' audit page with its filters."""

import datetime

import pytest

from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from workspace import audit
from workspace.models import AuditEvent, Membership, Project, ProjectRole

pytestmark = pytest.mark.django_db


@pytest.fixture
def projects():
    return Project.objects.create(name="alpha"), Project.objects.create(name="beta")


@pytest.fixture
def owner(django_user_model, projects):
    user = django_user_model.objects.create_user("olivia", password="pw-olivia-123")
    Membership.objects.create(user=user, project=projects[0], role=ProjectRole.OWNER)
    Membership.objects.create(user=user, project=projects[1], role=ProjectRole.READER)
    return user


@pytest.fixture
def reader(django_user_model, projects):
    user = django_user_model.objects.create_user("rita", password="pw-rita-1234")
    Membership.objects.create(user=user, project=projects[0], role=ProjectRole.READER)
    return user


def request_from(remote_addr, forwarded=None):
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    return RequestFactory().get("/", REMOTE_ADDR=remote_addr, **headers)


# --- record() -----------------------------------------------------------------------------------


def test_it_keeps_existing_callers_working(admin_user):
    """Positional actor, action, target and free detail keys (even `source`) work as before."""
    audit.record(admin_user, "flow.import", "chat v1", source="upload")
    event = AuditEvent.objects.get()
    assert event.detail == {"source": "upload"} and event.source is None and event.project is None


def test_it_records_the_project_and_the_callers_address(admin_user, projects):
    """`project` (a Project or its id) and `request` (REMOTE_ADDR) are stored in their own fields."""
    audit.record(admin_user, "endpoint.create", "ep", request=request_from("10.1.2.3"), project=projects[0])
    audit.record(admin_user, "endpoint.create", "ep2", project=projects[1].pk)
    first, second = AuditEvent.objects.order_by("id")
    assert (first.project, first.source, first.detail) == (projects[0], "10.1.2.3", {})
    assert second.project == projects[1]


def test_it_ignores_x_forwarded_for_from_an_untrusted_peer(admin_user, settings):
    """A client cannot choose the address the log shows by sending X-Forwarded-For."""
    settings.FLOWDEPLOY_TRUSTED_PROXIES = []
    audit.record(admin_user, "x", "y", request=request_from("203.0.113.9", "198.51.100.1"))
    assert AuditEvent.objects.get().source == "203.0.113.9"


def test_it_believes_x_forwarded_for_from_a_trusted_proxy(admin_user, settings):
    """Behind listed proxies the address is the first one from the right that is not a trusted proxy."""
    settings.FLOWDEPLOY_TRUSTED_PROXIES = ["10.0.0.0/8"]
    audit.record(admin_user, "x", "1", request=request_from("10.0.0.5", "198.51.100.1"))
    audit.record(admin_user, "x", "2", request=request_from("10.0.0.5", "6.6.6.6, 198.51.100.2, 10.0.0.7"))
    audit.record(admin_user, "x", "3", request=request_from("10.0.0.5", "not-an-address"))
    assert list(AuditEvent.objects.order_by("id").values_list("source", flat=True)) == [
        "198.51.100.1",
        "198.51.100.2",
        "10.0.0.5",
    ]


# --- sign-in and sign-out -------------------------------------------------------------------------


def test_it_records_a_local_sign_in_and_sign_out(client, owner):
    """The sign-in form and Sign out each write an event with the caller's address."""
    response = client.post(reverse("login"), {"username": "olivia", "password": "pw-olivia-123"})
    assert response.status_code == 302
    client.post(reverse("logout"))
    sign_in, sign_out = AuditEvent.objects.order_by("id")
    assert (sign_in.action, sign_in.actor, sign_in.detail["method"], sign_in.source) == (
        audit.SIGN_IN,
        owner,
        "password",
        "127.0.0.1",
    )
    assert (sign_out.action, sign_out.actor) == (audit.SIGN_OUT, owner)


def test_it_records_a_failed_sign_in_without_the_password(client, owner):
    """A wrong password is recorded under the username typed, never with the password."""
    response = client.post(reverse("login"), {"username": "olivia", "password": "wrong-guess-42"})
    assert response.status_code == 200
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.target, event.source) == (
        audit.SIGN_IN_FAILED,
        None,
        "olivia",
        "127.0.0.1",
    )
    assert "wrong-guess-42" not in str(event.detail)


# --- the audit page -------------------------------------------------------------------------------


def test_it_requires_sign_in(client):
    response = client.get(reverse("workspace:audit"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_it_is_for_owners_only(client, reader):
    """A Reader (or Contributor) of every project they belong to gets 403."""
    client.force_login(reader)
    assert client.get(reverse("workspace:audit")).status_code == 403


def test_it_shows_an_owner_their_projects_events_and_their_own_sign_ins(client, owner, reader, projects):
    """An Owner sees events of projects they own and their own sign-ins; not other projects' events
    (even where they are Reader) nor other people's sign-ins."""
    audit.record(reader, "endpoint.create", "alpha-endpoint", project=projects[0])
    audit.record(reader, "endpoint.create", "beta-endpoint", project=projects[1])
    audit.record(reader, audit.SIGN_IN, "rita")
    audit.record(owner, audit.SIGN_IN, "olivia")
    audit.record(None, audit.SIGN_IN_FAILED, "olivia")
    audit.record(owner, "flow.import", "no-project-flow")
    client.force_login(owner)
    html = client.get(reverse("workspace:audit")).content.decode()
    assert "alpha-endpoint" in html
    assert "beta-endpoint" not in html and "no-project-flow" not in html
    # olivia's two sign-ins (the one recorded above and force_login's) and the failed one under her name
    assert html.count(f'data-action="{audit.SIGN_IN}"') == 2
    assert html.count(f'data-action="{audit.SIGN_IN_FAILED}"') == 1
    assert '<td class="mono">rita</td>' not in html  # the target of rita's sign-in


def test_it_shows_a_superuser_everything(client, admin_user, reader, projects):
    audit.record(reader, "endpoint.create", "beta-endpoint", project=projects[1])
    audit.record(reader, audit.SIGN_IN, "rita")
    client.force_login(admin_user)
    html = client.get(reverse("workspace:audit")).content.decode()
    assert "beta-endpoint" in html and f'data-action="{audit.SIGN_IN}"' in html


def test_it_filters_by_action_actor_project_and_dates(client, admin_user, owner, reader, projects):
    audit.record(reader, "endpoint.create", "ep-by-rita", project=projects[0])
    audit.record(owner, "endpoint.delete", "ep-by-olivia", project=projects[0])
    audit.record(owner, "endpoint.create", "ep-in-beta", project=projects[1])
    old = AuditEvent.objects.create(action="endpoint.create", target="ep-long-ago", project=projects[0])
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(days=40))
    client.force_login(admin_user)
    url = reverse("workspace:audit")

    def targets(**filters):
        html = client.get(url, filters).content.decode()
        return {t for t in ("ep-by-rita", "ep-by-olivia", "ep-in-beta", "ep-long-ago") if t in html}

    assert targets(action="endpoint.create") == {"ep-by-rita", "ep-in-beta", "ep-long-ago"}
    assert targets(actor="OLIVIA") == {"ep-by-olivia", "ep-in-beta"}
    assert targets(project="beta") == {"ep-in-beta"}
    today = timezone.now().date()
    assert targets(date_from=str(today - datetime.timedelta(days=1))) == {"ep-by-rita", "ep-by-olivia", "ep-in-beta"}
    assert targets(date_to=str(today - datetime.timedelta(days=30))) == {"ep-long-ago"}
    assert targets(action="endpoint.create", project="alpha", date_to=str(today)) == {"ep-by-rita", "ep-long-ago"}


def test_it_names_a_bad_filter_instead_of_failing(client, admin_user):
    """A date that is not a date, or To before From, comes back as a message naming the field."""
    audit.record(admin_user, "x", "still-listed")
    client.force_login(admin_user)
    response = client.get(reverse("workspace:audit"), {"date_from": "yesterday-ish"})
    html = response.content.decode()
    assert response.status_code == 200 and "From: Enter a valid date." in html and "still-listed" in html
    html = client.get(reverse("workspace:audit"), {"date_from": "2026-02-02", "date_to": "2026-01-01"}).content
    assert b"To: To must be on or after From." in html


def test_it_pages_through_events_keeping_the_filters(client, admin_user):
    for n in range(55):
        audit.record(admin_user, "flow.import", f"flow-{n:02d}")
    audit.record(admin_user, "other.action", "other")
    client.force_login(admin_user)
    first = client.get(reverse("workspace:audit"), {"action": "flow.import"}).content.decode()
    assert first.count('data-action="flow.import"') == 50 and "Page 1 of 2" in first
    assert "?action=flow.import&amp;page=2" in first
    second = client.get(reverse("workspace:audit"), {"action": "flow.import", "page": 2}).content.decode()
    assert second.count('data-action="flow.import"') == 5 and "flow-00" in second


def test_it_links_the_page_for_owners_only(client, owner, reader):
    url = reverse("workspace:audit")
    client.force_login(owner)
    assert client.get(reverse("workspace:connections")).content.decode().count(f'href="{url}"') == 1
    client.force_login(reader)
    assert f'href="{url}"' not in client.get(reverse("workspace:connections")).content.decode()


def test_it_records_where_a_change_made_through_the_api_came_from_and_its_project(
    client, owner, projects, redis_url, django_capture_on_commit_callbacks
):
    """Services below the API record the caller's address and the object's project, so the project's Owners
    find the event on their audit page."""
    from api.models import PersonalAccessToken
    from endpoints import services
    from endpoints.models import Endpoint

    with django_capture_on_commit_callbacks(execute=False):
        endpoint = services.create_endpoint("ep-audited", project=projects[0])
    token = PersonalAccessToken.issue(owner)[1]
    response = client.post(
        f"/api/v1/online-endpoints/{endpoint.name}/regenerate-keys",
        {"key_type": "secondary"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
        REMOTE_ADDR="203.0.113.7",
    )
    assert response.status_code == 200, response.content
    event = AuditEvent.objects.get(action="endpoint.regenerate_key")
    assert (event.actor, event.project, event.source) == (owner, projects[0], "203.0.113.7")
    assert Endpoint.objects.filter(name="ep-audited").exists()
    client.force_login(owner)
    page = client.get(reverse("workspace:audit"), {"action": "endpoint.regenerate_key"}).content.decode()
    assert "ep-audited" in page and "203.0.113.7" in page
