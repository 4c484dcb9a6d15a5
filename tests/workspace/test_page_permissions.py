"""Who may open which page: every web route against an anonymous visitor, a Reader, a Contributor and an Owner of
the project that owns the objects, and an Owner of ANOTHER project only (workspace/access.py).

The routes are enumerated from the URLconf, so a new route without a row in MATRIX fails
test_it_has_a_row_for_every_web_route. Objects are rows made directly (nothing runs: no worker, no gateway).

Expected answers: LOGIN (302 to sign in), OK (the rule let the request through: 200, a redirect elsewhere than
the sign-in page, or the view's own 400/422 about the input), 403 (a member whose role is too low), 404 (not a
member of the object's project: its name does not leak), or a literal status.
"""

from datetime import UTC, datetime

import pytest
from roles import member

from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from endpoints import services as endpoint_services
from endpoints.models import AuthType, Deployment, DeploymentState
from flows.models import BulkRun, Flow, FlowSource, FlowVersion, TestRun
from monitoring.models import Span
from serving import collector
from wizard.models import DeploymentDraft
from workspace import notifications
from workspace.connections import ConnectionSpec, save_connection
from workspace.models import ManagedIdentity, Project, RoleAssignment

pytestmark = pytest.mark.django_db

LOGIN, OK = "login", "ok"
ROLES = ("anonymous", "reader", "contributor", "owner", "outsider")

# Not web pages of the studio, so not in the matrix (their access is tested where they are owned):
SKIPPED_PREFIXES = (
    "api/",  # the JSON API: token authentication, its own tests (tests/api)
    "admin/",  # Django's admin site: staff only, Django's own rule (tests/workspace/test_admin_console.py)
    "internal/",  # what instances call (endpoints/urls_internal.py): instance tokens, not users
)

# route: (method, path with {placeholders}, data, (anonymous, reader, contributor, owner, outsider))
# The outsider is Owner of another project: they may create things there (import, connections, the wizard).
MATRIX = {
    "": ("get", "/", None, (OK, OK, OK, OK, OK)),  # a redirect to the flows
    # Django's sign-in pages
    "accounts/login/": ("get", "/accounts/login/", None, (OK, OK, OK, OK, OK)),
    "accounts/logout/": ("post", "/accounts/logout/", None, (LOGIN, LOGIN, LOGIN, LOGIN, LOGIN)),  # then sign in
    "accounts/password_change/": ("get", "/accounts/password_change/", None, (LOGIN, OK, OK, OK, OK)),
    "accounts/password_change/done/": ("get", "/accounts/password_change/done/", None, (LOGIN, OK, OK, OK, OK)),
    "accounts/password_reset/": ("get", "/accounts/password_reset/", None, (OK, OK, OK, OK, OK)),
    "accounts/password_reset/done/": ("get", "/accounts/password_reset/done/", None, (OK, OK, OK, OK, OK)),
    "accounts/reset/<uidb64>/<token>/": ("get", "/accounts/reset/x/y-z/", None, (OK, OK, OK, OK, OK)),
    "accounts/reset/done/": ("get", "/accounts/reset/done/", None, (OK, OK, OK, OK, OK)),
    # Microsoft Entra ID sign-in: not configured in the tests
    "accounts/entra/": ("get", "/accounts/entra/", None, (404, 404, 404, 404, 404)),
    "accounts/entra/callback/": ("get", "/accounts/entra/callback/", None, (404, 404, 404, 404, 404)),
    # Flows: members look and test; Contributors import and run bulk tests
    "flows/": ("get", "/flows/", None, (LOGIN, OK, OK, OK, OK)),
    "flows/import/": ("get", "/flows/import/", None, (LOGIN, 403, OK, OK, OK)),
    "flows/runs/<uuid:run_id>/": ("get", "/flows/runs/{run}/", None, (LOGIN, OK, OK, OK, 404)),
    "flows/bulk-runs/": ("get", "/flows/bulk-runs/", None, (LOGIN, OK, OK, OK, OK)),
    "flows/bulk-runs/<int:pk>/": ("get", "/flows/bulk-runs/{bulk_run}/", None, (LOGIN, OK, OK, OK, 404)),
    "flows/bulk-runs/<int:pk>/download/": (
        "get",
        "/flows/bulk-runs/{bulk_run}/download/",
        None,
        (LOGIN, OK, OK, OK, 404),
    ),
    "flows/<str:name>/": ("get", "/flows/web/", None, (LOGIN, OK, OK, OK, 404)),
    "flows/<str:name>/bulk-runs/": ("get", "/flows/web/bulk-runs/", None, (LOGIN, OK, OK, OK, 404)),
    "flows/<str:name>/versions/<int:version>/": ("get", "/flows/web/versions/1/", None, (LOGIN, OK, OK, OK, 404)),
    "flows/<str:name>/versions/<int:version>/dag.svg": (
        "get",
        "/flows/web/versions/1/dag.svg",
        None,
        (LOGIN, OK, OK, OK, 404),
    ),
    "flows/<str:name>/versions/<int:version>/test/": (
        "post",
        "/flows/web/versions/1/test/",
        {},  # no inputs: the form answers 400, past the access rule
        (LOGIN, OK, OK, OK, 404),
    ),
    "flows/<str:name>/versions/<int:version>/bulk-runs/new/": (
        "get",
        "/flows/web/versions/1/bulk-runs/new/",
        None,
        (LOGIN, 403, OK, OK, 404),
    ),
    "flows/<str:name>/versions/<int:version>/bulk-runs/": (
        "post",
        "/flows/web/versions/1/bulk-runs/",
        {},
        (LOGIN, 403, OK, OK, 404),
    ),
    # The wizard: Contributors deploy; a draft is its owner's (the Contributor's here)
    "deployments/new/": ("get", "/deployments/new/", None, (LOGIN, 403, OK, OK, OK)),
    "deployments/new/<uuid:draft_id>/basic/": (
        "get",
        "/deployments/new/{draft}/basic/",
        None,
        (LOGIN, 403, OK, 404, 404),
    ),
    "deployments/new/<uuid:draft_id>/endpoint/": (
        "get",
        "/deployments/new/{draft}/endpoint/",
        None,
        (LOGIN, 403, OK, 404, 404),
    ),
    "deployments/new/<uuid:draft_id>/deployment/": (
        "get",
        "/deployments/new/{draft}/deployment/",
        None,
        (LOGIN, 403, OK, 404, 404),
    ),
    "deployments/new/<uuid:draft_id>/outputs/": (
        "get",
        "/deployments/new/{draft}/outputs/",
        None,
        (LOGIN, 403, OK, 404, 404),
    ),
    "deployments/new/<uuid:draft_id>/review/": (
        "get",
        "/deployments/new/{draft}/review/",
        None,
        (LOGIN, 403, OK, 404, 404),
    ),
    # Deployments: members look and test; Contributors change, delete and see keys
    "deployments/": ("get", "/deployments/", None, (LOGIN, OK, OK, OK, OK)),
    "deployments/<str:endpoint>/<str:name>/": ("get", "/deployments/ep-one/blue/", None, (LOGIN, OK, OK, OK, 404)),
    "deployments/<str:endpoint>/<str:name>/scale/": (
        "post",
        "/deployments/ep-one/blue/scale/",
        {"instance_count": "2"},  # without `confirm`: the confirmation page
        (LOGIN, 403, OK, OK, 404),
    ),
    "deployments/<str:endpoint>/<str:name>/delete/": (
        "get",
        "/deployments/ep-one/blue/delete/",
        None,
        (LOGIN, 403, OK, OK, 404),
    ),
    "deployments/<str:endpoint>/<str:name>/test/": (
        "post",
        "/deployments/ep-one/blue/test/",
        {"fd-editor": "json", "fd-json": "[]"},  # refused by the page before anything is sent
        (LOGIN, OK, OK, OK, 404),
    ),
    "deployments/<str:endpoint>/<str:name>/test/chat/": (
        "post",
        "/deployments/ep-one/blue/test/chat/",
        {"question": "hi"},  # not a chat flow: 400, past the access rule
        (LOGIN, OK, OK, OK, 404),
    ),
    "deployments/<str:endpoint>/<str:name>/consume/": (
        "get",
        "/deployments/ep-one/blue/consume/",
        None,
        (LOGIN, OK, OK, OK, 404),
    ),
    "deployments/<str:endpoint>/<str:name>/monitoring/": (
        "get",
        "/deployments/ep-one/blue/monitoring/",
        None,
        (LOGIN, OK, OK, OK, 404),
    ),
    # What requests carried (instance logs, collected records and files, traces): Contributors (Action.READ_DATA)
    "deployments/<str:endpoint>/<str:name>/logs/": (
        "get",
        "/deployments/ep-one/blue/logs/",
        None,
        (LOGIN, 403, OK, OK, 404),
    ),
    # The export for Azure ML holds the flow's code and environment variables (no snapshot on disk here: the
    # page sends a Contributor back to the Details tab saying so)
    "deployments/<str:endpoint>/<str:name>/export/": (
        "get",
        "/deployments/ep-one/blue/export/",
        None,
        (LOGIN, 403, OK, OK, 404),
    ),
    "deployments/<str:endpoint>/<str:name>/monitoring/traces/": (
        "get",
        "/deployments/ep-one/blue/monitoring/traces/?request_id=req-1",
        None,
        (LOGIN, 403, OK, OK, 404),
    ),
    "deployments/<str:endpoint>/<str:name>/monitoring/traces/<str:trace_id>/": (
        "get",
        "/deployments/ep-one/blue/monitoring/traces/{trace_id}/",
        None,
        (LOGIN, 403, OK, OK, 404),
    ),
    "endpoints/<str:endpoint>/": ("get", "/endpoints/ep-one/", None, (LOGIN, OK, OK, OK, 404)),
    "endpoints/<str:endpoint>/traffic/": (
        "post",
        "/endpoints/ep-one/traffic/",
        {"deployment": "blue", "traffic-blue": "100", "mirror-blue": "0"},
        (LOGIN, 403, OK, OK, 404),
    ),
    "endpoints/<str:endpoint>/delete/": ("get", "/endpoints/ep-one/delete/", None, (LOGIN, 403, OK, OK, 404)),
    # Grant on Azure: Owners (Action.MANAGE_ACCESS); ep-one runs here, so the Owner is sent back with a message
    "endpoints/<str:endpoint>/azure-roles/grant/": (
        "post",
        "/endpoints/ep-one/azure-roles/grant/",
        {},
        (LOGIN, 403, 403, OK, 404),
    ),
    "endpoints/<str:endpoint>/keys/<str:which>/": (
        "get",
        "/endpoints/ep-one/keys/primary/",
        None,
        (LOGIN, 403, OK, OK, 404),
    ),
    "endpoints/<str:endpoint>/keys/<str:which>/regenerate/": (
        "get",
        "/endpoints/ep-one/keys/primary/regenerate/",
        None,
        (LOGIN, 403, OK, OK, 404),
    ),
    "endpoints/<str:endpoint>/token/": ("post", "/endpoints/ep-token/token/", {}, (LOGIN, 403, OK, OK, 404)),
    # Connections: members see them (never their secrets); Contributors create (in their project), change, delete
    "connections/": ("get", "/connections/", None, (LOGIN, OK, OK, OK, OK)),
    "connections/new/": ("get", "/connections/new/", None, (LOGIN, 403, OK, OK, OK)),
    "connections/new/row/": ("get", "/connections/new/row/", None, (LOGIN, 403, OK, OK, OK)),
    "connections/<str:name>/edit/": ("get", "/connections/gpt/edit/", None, (LOGIN, 403, OK, OK, 404)),
    "connections/<str:name>/delete/": ("get", "/connections/gpt/delete/", None, (LOGIN, 403, OK, OK, 404)),
    # The current project
    "projects/switch/": ("post", "/projects/switch/", {"project": "{project}"}, (LOGIN, OK, OK, OK, 404)),
    # Access control (IAM) and identities: members look; Owners manage access; Contributors manage identities
    "projects/<str:project>/access/": ("get", "/projects/default/access/", None, (LOGIN, OK, OK, OK, 404)),
    "projects/<str:project>/access/add/": (
        "get",
        "/projects/default/access/add/",
        None,
        (LOGIN, 403, 403, OK, 404),
    ),
    "projects/<str:project>/access/<int:pk>/remove/": (
        "post",
        "/projects/default/access/{assignment}/remove/",
        {},
        (LOGIN, 403, 403, OK, 404),
    ),
    "projects/<str:project>/access/members/add/": (
        "post",
        "/projects/default/access/members/add/",
        {},
        (LOGIN, 403, 403, OK, 404),
    ),
    "projects/<str:project>/access/members/<int:pk>/role/": (
        "post",
        "/projects/default/access/members/{reader_membership}/role/",
        {"role": "contributor"},
        (LOGIN, 403, 403, OK, 404),
    ),
    "projects/<str:project>/access/members/<int:pk>/remove/": (
        "post",
        "/projects/default/access/members/{reader_membership}/remove/",
        {},
        (LOGIN, 403, 403, OK, 404),
    ),
    "projects/<str:project>/identities/": (
        "get",
        "/projects/default/identities/",
        None,
        (LOGIN, OK, OK, OK, 404),
    ),
    "projects/<str:project>/identities/<str:name>/delete/": (
        "post",
        "/projects/default/identities/id-one/delete/",
        {},
        (LOGIN, 403, OK, OK, 404),
    ),
    # An identity's ids in Azure: Owners (no workspace is connected here: the Owner is sent back with a message)
    "projects/<str:project>/identities/<str:name>/azure/": (
        "post",
        "/projects/default/identities/id-one/azure/",
        {},
        (LOGIN, 403, 403, OK, 404),
    ),
    # Azure Machine Learning of a project: Owners only, looking too (no workspace is connected here: the test and
    # disconnect routes send the Owner back to the page)
    "projects/<str:project>/azure/": ("get", "/projects/default/azure/", None, (LOGIN, 403, 403, OK, 404)),
    "projects/<str:project>/azure/test/": ("post", "/projects/default/azure/test/", {}, (LOGIN, 403, 403, OK, 404)),
    "projects/<str:project>/azure/disconnect/": (
        "get",
        "/projects/default/azure/disconnect/",
        None,
        (LOGIN, 403, 403, OK, 404),
    ),
    # The audit log: Owners (of some project)
    "audit/": ("get", "/audit/", None, (LOGIN, 403, 403, OK, OK)),
    # The bell: everyone's own (signed out, 286 stops htmx polling)
    "notifications/bell/": ("get", "/notifications/bell/", None, (286, OK, OK, OK, OK)),
    "notifications/read-all/": ("post", "/notifications/read-all/", {}, (LOGIN, OK, OK, OK, OK)),
    "notifications/<int:pk>/": ("get", "/notifications/{notification}/", None, (LOGIN, 404, OK, 404, 404)),
    # Data assets: members see them; Contributors read the records and files and change how a deployment collects
    "data-assets/": ("get", "/data-assets/", None, (LOGIN, OK, OK, OK, OK)),
    "data-assets/<str:endpoint>/<str:deployment>/": (
        "get",
        "/data-assets/ep-one/blue/",
        None,
        (LOGIN, OK, OK, OK, 404),
    ),
    "data-assets/<str:endpoint>/<str:deployment>/policy/": (
        "post",
        "/data-assets/ep-one/blue/policy/",
        {"sampling_percent": "50", "retention_days": "7"},
        (LOGIN, 403, OK, OK, 404),
    ),
    "data-assets/<str:endpoint>/<str:deployment>/download/": (
        "get",
        "/data-assets/ep-one/blue/download/?hour=2026-01-01T00",
        None,
        (LOGIN, 403, OK, OK, 404),
    ),
    "data-assets/<str:endpoint>/<str:deployment>/files/<path:relative>": (
        "get",
        "/data-assets/ep-one/blue/files/{data_file}",
        None,
        (LOGIN, 403, OK, OK, 404),
    ),
}


def _routes(patterns=None, prefix: str = ""):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route


def web_routes() -> set[str]:
    return {route for route in _routes() if not route.startswith(SKIPPED_PREFIXES)}


def test_it_has_a_row_for_every_web_route():
    """A new page must say who may open it: add its row to MATRIX."""
    assert sorted(web_routes() - set(MATRIX)) == [], "routes without a row in the matrix"


@pytest.fixture
def world(db, settings, tmp_path, django_user_model, django_capture_on_commit_callbacks):
    """The default project's objects, and one user per role."""
    settings.FLOWDEPLOY_GATEWAY_URL = "http://127.0.0.1:9"  # nothing is sent there
    settings.FLOWDEPLOY_DATA_COLLECTION_DIR = tmp_path / "data-collection"
    project = Project.default()
    elsewhere = Project.objects.create(name="elsewhere")
    users = {
        role: member(django_user_model.objects.create_user(role, password=f"{role}-pass-1"), role, project)
        for role in ("reader", "contributor", "owner")
    }
    users["outsider"] = member(
        django_user_model.objects.create_user("outsider", password="out-pass-1"), "owner", elsewhere
    )
    flow = Flow.objects.create(name="web", project=project)
    version = FlowVersion.objects.create(
        flow=flow,
        version=1,
        content_hash="web-hash",
        source=FlowSource.FOLDER,
        inputs={"url": {"type": "string"}},
        outputs={"category": {"type": "string"}},
        nodes=[{"name": "classify", "type": "python"}],
        connections=[],
    )
    with django_capture_on_commit_callbacks(execute=False):  # nothing is published
        endpoint = endpoint_services.create_endpoint("ep-one")
        endpoint_services.create_endpoint("ep-token", auth_type=AuthType.TOKEN)
    endpoint.traffic = {"blue": 100}
    endpoint.save(update_fields=["traffic"])
    Deployment.objects.create(
        endpoint=endpoint,
        name="blue",
        flow_version=version,
        state=DeploymentState.SUCCEEDED,
        live_generation=1,
        data_collection=True,
    )
    save_connection(ConnectionSpec(name="gpt", type="open_ai", configs={}, secrets={"api_key": "sk-matrix-1"}))
    writer = collector.Collector(settings.FLOWDEPLOY_DATA_COLLECTION_DIR, gateway="gw-test")
    at = datetime(2026, 1, 1, 0, 30, tzinfo=UTC).timestamp()
    writer.write([collector.Record("ep-one", "blue", b"req-1", at, 200, b"{}", [b"{}"], b"application/json", False, 2)])
    folder = settings.FLOWDEPLOY_DATA_COLLECTION_DIR / "ep-one" / "blue"
    data_file = next(path for path in folder.rglob("*.jsonl") if "model_inputs" in path.parts)
    Span.objects.create(
        trace_id="0" * 31 + "1",
        span_id="0" * 15 + "1",
        name="flow",
        start=datetime(2026, 1, 1, 0, 30, tzinfo=UTC),
        duration_ms=5.0,
        endpoint_name="ep-one",
        deployment_name="blue",
        request_id="req-1",
    )
    identity = ManagedIdentity.objects.create(project=project, name="id-one")
    assignment = RoleAssignment.objects.create(
        project=project,
        principal_id=identity.principal_id,
        principal_type="user_assigned",
        principal_name="id-one",
        role="acr-pull",
    )
    return {
        "users": users,
        "project": project.pk,
        "run": TestRun.objects.create(flow_version=version).pk,
        "bulk_run": BulkRun.objects.create(flow_version=version, name="run", data_file_name="data.jsonl").pk,
        "draft": DeploymentDraft.start(users["contributor"], version).pk,
        "notification": notifications.notify(users["contributor"], "Hello", link="/flows/").pk,
        "data_file": data_file.relative_to(folder).as_posix(),
        "assignment": assignment.pk,
        "trace_id": "0" * 31 + "1",
        "reader_membership": users["reader"].memberships.get(project=project).pk,
    }


def _answer(response) -> str | int:
    location = response.get("Location", "")
    if response.status_code == 302 and location.startswith("/accounts/login/"):
        return LOGIN
    if response.status_code in (200, 400, 422) or (response.status_code == 302 and location):
        return OK
    return response.status_code


@pytest.mark.parametrize("route", sorted(MATRIX))
def test_it_answers_each_role_as_the_matrix_says(route, world):
    if route not in web_routes():
        pytest.skip(f"{route} is not in the URLconf (any more): remove its row")
    method, path, data, expected = MATRIX[route]
    answers = {}
    for role, want in zip(ROLES, expected, strict=True):
        with transaction.atomic():  # what one role's request changed is undone before the next role's
            client = Client()
            if role != "anonymous":
                client.force_login(world["users"][role])
            url = path.format(**world)
            body = {key: str(value).format(**world) for key, value in (data or {}).items()}
            response = client.post(url, body) if method == "post" else client.get(url)
            transaction.set_rollback(True)
        answers[role] = (_answer(response), want)
        if want == 403:  # the rule's own message, on the 403 page
            assert "needs" in response.content.decode() or "Owners" in response.content.decode(), role
    assert {role: got for role, (got, _) in answers.items()} == {role: want for role, (_, want) in answers.items()}


def test_it_lists_only_the_objects_of_the_users_projects(world):
    """Lists (flows, bulk runs, deployments, connections, data assets, the wizard's flows) show a member the
    project's objects and an Owner of another project none of them."""
    pages = {
        "/flows/": 'href="/flows/web/"',
        "/flows/bulk-runs/": f'href="/flows/bulk-runs/{world["bulk_run"]}/"',
        "/deployments/": 'href="/deployments/ep-one/blue/"',
        "/connections/": '<td class="mono">gpt</td>',
        "/data-assets/": 'data-asset="ep-one/blue"',
        "/deployments/new/": f'name="flow_version" value="{FlowVersion.objects.get().pk}"',
    }
    for role, shown in (("contributor", True), ("outsider", False)):
        client = Client()
        client.force_login(world["users"][role])
        for url, marker in pages.items():
            assert (marker in client.get(url).content.decode()) is shown, (role, url)
