from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from workspace import access, projects
from workspace.access import Action
from workspace.connections import ConnectionSpecError, delete_connection, save_connection
from workspace.forms import MAX_ROWS, ConnectionForm, connection_type_from, posted_rows
from workspace.models import Connection, Notification

# --- access ----------------------------------------------------------------------------------
# Through workspace/access.py: a member of a connection's project sees it (never its secrets); Contributors and
# Owners create (in the current project), change and delete connections.


def _connection(request: HttpRequest, name: str, action: Action) -> Connection:
    return projects.fetch(request, action, Connection.objects.all(), name=name)


def _may_add(user: Any, project: Any) -> bool:
    return project is not None and access.allows(user, Action.DEPLOY, project)


# --- connections -----------------------------------------------------------------------------


@login_required
@require_GET
def connections(request: HttpRequest) -> HttpResponse:
    user = request.user
    rows = list(access.visible(user, Connection.objects.select_related("created_by", "project")))
    for row in rows:
        row.can_change = access.can(user, Action.DEPLOY, row)
        row.can_delete = access.can(user, Action.DELETE, row)
    return render(
        request,
        "workspace/connections.html",
        {
            "connections": rows,
            "can_add": _may_add(user, projects.current_project(request)),
        },
    )


def _form_page(request: HttpRequest, form: ConnectionForm, status: int = 200) -> HttpResponse:
    template = "workspace/connection_form.html"
    if request.htmx and request.method == "GET":
        template += "#type_fields"
    context = {"form": form, "connection": form.instance, "max_rows": MAX_ROWS}
    return render(request, template, context, status=status)


@sensitive_post_parameters()
@login_required
@require_http_methods(["GET", "POST"])
def connection_create(request: HttpRequest) -> HttpResponse:
    project = projects.require_in_current(request, Action.DEPLOY)
    if request.method == "GET":
        connection_type = connection_type_from(request.GET.get("type"))
        initial = {"name": request.GET.get("name", "")}
        return _form_page(request, ConnectionForm(connection_type=connection_type, initial=initial))

    connection_type = connection_type_from(request.POST.get("type"))
    rows = posted_rows(request.POST)
    if "add_row" in request.POST:
        # Without JavaScript, "Add row" submits the form: show it again with one more row.
        form = ConnectionForm(request.POST, connection_type=connection_type, rows=rows + 1)
        return _form_page(request, form)
    form = ConnectionForm(request.POST, connection_type=connection_type, rows=rows)
    if form.is_valid():
        spec = form.to_spec()
        if not form.errors:
            try:
                connection = save_connection(spec, actor=request.user, project=project)
            except ConnectionSpecError as exc:
                form.add_spec_errors(exc)
            else:
                messages.success(request, f"Connection {connection.name} created.")
                return redirect("workspace:connections")
    return _form_page(request, form, status=400)


@sensitive_post_parameters()
@login_required
@require_http_methods(["GET", "POST"])
def connection_edit(request: HttpRequest, name: str) -> HttpResponse:
    connection = _connection(request, name, Action.DEPLOY)
    if request.method == "GET":
        if not connection.secrets_readable():
            messages.warning(
                request,
                "The saved secrets of this connection cannot be decrypted with the current "
                "FLOWDEPLOY_SECRET_KEY (or SECRET_KEY). Enter them again to save.",
            )
        return _form_page(request, ConnectionForm(connection_type=connection.type, instance=connection))

    rows = posted_rows(request.POST)
    if "add_row" in request.POST:
        form = ConnectionForm(request.POST, connection_type=connection.type, instance=connection, rows=rows + 1)
        return _form_page(request, form)
    form = ConnectionForm(request.POST, connection_type=connection.type, instance=connection, rows=rows)
    if form.is_valid():
        spec = form.to_spec()
        if not form.errors:
            try:
                save_connection(spec, actor=request.user, update=True)
            except ConnectionSpecError as exc:
                form.add_spec_errors(exc)
            else:
                messages.success(request, f"Connection {connection.name} saved.")
                return redirect("workspace:connections")
    return _form_page(request, form, status=400)


@login_required
@require_GET
def connection_pair_row(request: HttpRequest) -> HttpResponse:
    """One more blank key/value row for the Custom form (htmx "Add row")."""
    projects.require_in_current(request, Action.DEPLOY)
    try:
        index = min(max(int(request.GET.get("index", "0")), 0), MAX_ROWS - 1)
    except ValueError:
        index = 0
    form = ConnectionForm(connection_type=Connection.Type.CUSTOM, rows=index + 1)
    row = form.pair_rows[index]
    return render(
        request,
        "workspace/connection_form.html#pair_row_added",
        {"row": row, "next_index": index + 1, "max_rows": MAX_ROWS},
    )


@login_required
@require_http_methods(["GET", "POST"])
def connection_delete(request: HttpRequest, name: str) -> HttpResponse:
    connection = _connection(request, name, Action.DELETE)
    if request.method == "POST":
        delete_connection(connection, actor=request.user)
        messages.success(request, f"Connection {name} deleted.")
        return redirect("workspace:connections")
    return render(request, "workspace/connection_delete.html", {"connection": connection})


# --- the current project ----------------------------------------------------------------------


@login_required
@require_POST
def switch_project(request: HttpRequest) -> HttpResponse:
    """The top bar's project switcher: new flows, connections and endpoints go to the chosen project."""
    project = projects.choose_project(request, request.POST.get("project"))
    messages.info(request, f"You are working in project {project.name}.")
    back = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(back)
    return redirect("flows:list")


# --- notifications ---------------------------------------------------------------------------


def _bell(request: HttpRequest) -> HttpResponse:
    return render(request, "workspace/_bell.html#bell_refresh")


@require_GET
def bell(request: HttpRequest) -> HttpResponse:
    """The bell's panel and (out of band) its unread count; the panel polls this every 2 s while a job runs,
    else every 10 s.

    Signed out (the session expired), it answers 286 so htmx stops polling instead of
    swapping the sign-in page into the panel.
    """
    if not request.user.is_authenticated:
        return HttpResponse(status=286)
    return _bell(request)


@login_required
@require_GET
def notification_open(request: HttpRequest, pk: int) -> HttpResponse:
    notification = get_object_or_404(Notification, pk=pk, user=request.user)
    notification.mark_read()
    link = notification.link
    if link and url_has_allowed_host_and_scheme(
        link, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(link)
    return redirect("/")


@login_required
@require_POST
def notifications_read_all(request: HttpRequest) -> HttpResponse:
    Notification.objects.filter(user=request.user, read_at=None).update(read_at=timezone.now())
    if request.htmx:
        return _bell(request)
    back = request.headers.get("referer") or ""
    if url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect(reverse("workspace:connections"))
