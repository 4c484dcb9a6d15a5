import csv
import io
import json
import uuid
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.html import escape
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from flows import importing, services
from flows.dag import render_dag_svg
from flows.forms import BulkRunForm, FlowInputsForm, FolderImportForm, SampleImportForm, ZipImportForm
from flows.models import FINAL_RUN_STATES, BulkRun, Flow, FlowSource, FlowVersion, TestRun
from runtime.requirements_policy import runtime_provided
from workspace import access, projects
from workspace.access import Action
from workspace.connections import connection_type_names

IMPORT_SOURCES = ("upload", "sample", "folder")


def _flow(request, name: str, action: Action = Action.VIEW) -> Flow:
    """The flow through the access rule: 404 outside the user's projects, 403 when the role is too low."""
    return projects.fetch(request, action, Flow.objects.all(), name=name)


def _version(request, name: str, version: int | None = None, action: Action = Action.VIEW) -> FlowVersion:
    flow = _flow(request, name, action)
    versions = flow.versions.select_related("flow")
    if version is None:
        found = versions.order_by("-version").first()
        if found is None:
            raise Flow.DoesNotExist
        return found
    found = versions.filter(version=version).first()
    if found is None:
        raise Http404(f"Flow {name} has no version {version}.")
    return found


def _can_add_connection(request) -> bool:
    project = projects.current_project(request)
    return project is not None and access.allows(request.user, Action.DEPLOY, project)


def _htmx_template(request, template: str, partial: str) -> str:
    return f"{template}#{partial}" if request.htmx and not request.htmx.boosted else template


@login_required
@require_GET
def flow_list(request):
    flows = access.visible(request.user, Flow.objects.prefetch_related("versions").order_by("name"))
    rows = []
    for flow in flows:
        versions = sorted(flow.versions.all(), key=lambda v: v.version)
        if versions:
            rows.append({"flow": flow, "latest": versions[-1], "count": len(versions)})
    project = projects.current_project(request)
    can_import = project is not None and access.allows(request.user, Action.DEPLOY, project)
    return render(request, "flows/list.html", {"rows": rows, "can_import": can_import})


@login_required
@require_http_methods(["GET", "POST"])
def flow_import(request):
    """Import a flow into the current project (Contributor there); a new version of an existing flow needs
    Contributor in that flow's project; a folder on the server's disk is for superusers only."""
    source = request.GET.get("source") or request.POST.get("source") or "upload"
    if source not in IMPORT_SOURCES:
        source = "upload"
    project = projects.require_in_current(request, Action.DEPLOY)
    if source == "folder":
        projects.require(request, Action.IMPORT_FOLDER, project)
    form_class = {"upload": ZipImportForm, "sample": SampleImportForm, "folder": FolderImportForm}[source]
    form = form_class(request.POST or None, request.FILES or None)
    error = None
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            version = _import_into(request, project, source, form.cleaned_data)
        except importing.FlowImportError as exc:
            error, status = exc, 400
        else:
            messages.success(request, f"Imported {version.flow.name}, version {version.version}.")
            return redirect(version.get_absolute_url())
    elif request.method == "POST":
        status = 400
    context = {
        "form": form,
        "source": source,
        "error": error,
        "project": project,
        "can_import_folder": access.allows(request.user, Action.IMPORT_FOLDER, project),
    }
    return render(request, "flows/import.html", context, status=status)


def _import_into(request, project, source: str, data: dict) -> FlowVersion:
    """A new flow goes to `project`; a new version of an existing flow stays in the flow's project, where the
    user must be Contributor too. A name taken in a project the user does not see is refused as taken."""
    name = _import_name(source, data)
    existing = Flow.objects.filter(name=name.strip()).first() if name else None
    if existing is not None:
        if not access.can(request.user, Action.VIEW, existing):
            raise importing.FlowImportError(f"The flow name {name} is already taken.", code="NameTaken")
        projects.require_on(request, Action.DEPLOY, existing)
    return _import(source, data, request.user, existing.project if existing else project)


def _import_name(source: str, data: dict) -> str:
    """The name the flow will be imported as, as _import chooses it."""
    if data.get("name"):
        return data["name"]
    if source == "upload":
        return importing.default_name(data["file"].name)
    if source == "sample":
        return data["sample"]
    return importing.default_name(Path(data["path"]).expanduser().name)


def _import(source: str, data: dict, user, project) -> FlowVersion:
    if source == "upload":
        upload = data["file"]
        if upload.size > importing.settings.FLOWDEPLOY_MAX_UPLOAD_BYTES:
            raise importing.FlowImportError("The zip file is too large.", code="TooLarge")
        name = data.get("name") or importing.default_name(upload.name)
        return importing.import_zip(upload, name, user, source_detail=upload.name, project=project)
    if source == "sample":
        folder = importing.settings.FLOWDEPLOY_SAMPLES_DIR / data["sample"]
        name = data.get("name") or data["sample"]
        return importing.import_folder(
            folder, name, user, FlowSource.SAMPLE, f"sample {data['sample']}", project=project
        )
    folder = Path(data["path"]).expanduser()
    if not folder.is_absolute():
        raise importing.FlowImportError("Give an absolute path to the folder.", code="NotFound")
    name = data.get("name") or importing.default_name(folder.name)
    return importing.import_folder(folder, name, user, FlowSource.FOLDER, str(folder), project=project)


@login_required
@require_GET
def flow_detail(request, name: str, version: int | None = None):
    try:
        flow_version = _version(request, name, version)
    except Flow.DoesNotExist:
        messages.error(request, f"Flow {name} has no versions.")
        return redirect("flows:list")
    existing = connection_type_names(flow_version.flow.project_id)
    connections = [
        {**entry, "exists": entry["name"] in existing, "actual_type": existing.get(entry["name"], "")}
        for entry in flow_version.connections
    ]
    context = {
        "version": flow_version,
        "flow": flow_version.flow,
        "versions": flow_version.flow.versions.order_by("-version"),
        "connections": connections,
        "dag_svg": render_dag_svg(flow_version.description()),
        "bulk_runs": BulkRun.objects.filter(flow_version__flow=flow_version.flow).select_related("flow_version")[:10],
        "provided_requirements": runtime_provided(flow_version.requirements),
        "can_deploy": access.can(request.user, Action.DEPLOY, flow_version),
        "can_add_connection": _can_add_connection(request),
    }
    return render(request, "flows/detail.html", context)


@login_required
@require_GET
def flow_dag(request, name: str, version: int):
    flow_version = _version(request, name, version)
    return HttpResponse(render_dag_svg(flow_version.description()), content_type="image/svg+xml")


@login_required
@require_http_methods(["GET", "POST"])
def flow_test(request, name: str, version: int):
    """Test runs: looking needs Reader, running one too (Action.TEST)."""
    flow_version = _version(request, name, version, Action.TEST if request.method == "POST" else Action.VIEW)
    if flow_version.is_chat:
        return _chat(request, flow_version)
    form = FlowInputsForm(flow_version, request.POST or None)
    run = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                run = services.start_test_run(flow_version, form.cleaned_data, request.user)
            except ValidationError as exc:
                _add_errors(form, exc)
                status = 400
            else:
                if not request.htmx:
                    return redirect(run.get_absolute_url())
        else:
            status = 400
    template = "flows/test.html"
    if request.htmx and request.method == "POST":
        template += "#run" if run else "#form"
    return render(request, template, {"version": flow_version, "form": form, "run": run}, status=status)


def _add_errors(form, exc: ValidationError) -> None:
    for field, errors in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)


def _chat(request, flow_version: FlowVersion):
    chat_input = flow_version.chat_input
    session = _chat_session(request.POST.get("chat_session") or request.GET.get("chat_session"))
    form = FlowInputsForm(flow_version, request.POST or None, exclude=(chat_input,))
    context = {"version": flow_version, "form": form, "chat_session": session, "turns": [], "error": None}
    if request.method == "POST":
        question = request.POST.get(chat_input, "")
        if not question.strip():
            context["error"] = f"Type a message for '{chat_input}'."
        elif _turn_running(flow_version, session):
            context["error"] = "Wait for the answer to your last message before you send another."
        elif form.is_valid():
            try:
                run = services.start_test_run(
                    flow_version, {**form.cleaned_data, chat_input: question}, request.user, session
                )
            except ValidationError as exc:
                context["error"] = " ".join(f"{m}" for msgs in exc.message_dict.values() for m in msgs)
            else:
                if request.htmx:
                    return render(request, "flows/_chat_turn.html", {"run": run, "version": flow_version})
                return redirect(f"{request.path}?chat_session={session}")
        else:
            context["error"] = "Check the inputs panel: " + "; ".join(
                f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()
            )
        if request.htmx:
            return HttpResponse(f'<div class="bubble error">{escape(context["error"])}</div>', status=400)
    turns = list(TestRun.objects.filter(flow_version=flow_version, chat_session=session).order_by("created_at"))
    context.update(turns=turns, running=any(not turn.is_final for turn in turns))
    return render(request, "flows/chat.html", context)


def _turn_running(flow_version: FlowVersion, session: uuid.UUID) -> bool:
    """A chat holds one turn at a time: its history is built from the turns that finished."""
    return (
        TestRun.objects.filter(flow_version=flow_version, chat_session=session)
        .exclude(status__in=FINAL_RUN_STATES)
        .exists()
    )


def _chat_session(value: str | None) -> uuid.UUID:
    try:
        return uuid.UUID(value) if value else uuid.uuid4()
    except ValueError:
        return uuid.uuid4()


@login_required
@require_GET
def test_run(request, run_id):
    runs = TestRun.objects.select_related("flow_version__flow")
    run = projects.fetch(request, Action.VIEW, runs, "flow_version__flow__project", pk=run_id)
    if run.chat_session and request.htmx:
        return render(request, "flows/_chat_turn.html", {"run": run, "version": run.flow_version})
    template = _htmx_template(request, "flows/test_run.html", "run")
    response = render(request, template, {"run": run, "version": run.flow_version})
    return response


@login_required
@require_POST
def bulk_run_create(request, name: str, version: int):
    """Bulk runs use the flow's connections at scale: Contributor or Owner (Action.DEPLOY)."""
    flow_version = _version(request, name, version, Action.DEPLOY)
    form = BulkRunForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            if form.cleaned_data.get("data"):
                upload = form.cleaned_data["data"]
                run = services.start_bulk_run(flow_version, services.stored_upload(upload), upload.name, request.user)
            else:
                run = services.start_bulk_run_from_flow_data(flow_version, request.user)
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            return redirect(run.get_absolute_url())
    return render(request, "flows/bulk_new.html", {"version": flow_version, "form": form}, status=400)


@login_required
@require_GET
def bulk_run_new(request, name: str, version: int):
    flow_version = _version(request, name, version, Action.DEPLOY)
    form = BulkRunForm(initial={"use_flow_data": flow_version.has_data_file()})
    return render(request, "flows/bulk_new.html", {"version": flow_version, "form": form})


BULK_RUNS_PER_PAGE = 50


@login_required
@require_GET
def bulk_run_list(request, name: str | None = None):
    """Bulk test runs, newest first: every flow's, or one flow's (all its versions); live while any runs."""
    flow = _flow(request, name) if name is not None else None
    runs = BulkRun.objects.select_related("flow_version__flow", "created_by").order_by("-created_at", "-pk")
    runs = access.visible(request.user, runs, "flow_version__flow__project")
    if flow is not None:
        runs = runs.filter(flow_version__flow=flow)
    page = Paginator(runs, BULK_RUNS_PER_PAGE).get_page(request.GET.get("page"))
    context = {"flow": flow, "page": page, "runs": page.object_list, "live": any(not run.is_final for run in page)}
    return render(request, _htmx_template(request, "flows/bulk_runs.html", "rows"), context)


@login_required
@require_GET
def bulk_run(request, pk: int):
    runs = BulkRun.objects.select_related("flow_version__flow")
    run = projects.fetch(request, Action.VIEW, runs, "flow_version__flow__project", pk=pk)
    template = _htmx_template(request, "flows/bulk_run.html", "progress")
    output_names = list(run.flow_version.outputs)
    input_names = list(run.flow_version.inputs)
    context = {
        "run": run,
        "lines": run.lines.all(),
        "output_names": output_names,
        "input_names": input_names,
        "can_deploy": access.can(request.user, Action.DEPLOY, run),
    }
    return render(request, template, context)


@login_required
@require_GET
def bulk_run_download(request, pk: int):
    run = projects.fetch(request, Action.VIEW, BulkRun.objects.all(), "flow_version__flow__project", pk=pk)
    rows = services.bulk_results(run)
    if request.GET.get("format") == "csv":
        buffer = io.StringIO()
        inputs = list(run.flow_version.inputs)
        outputs = list(run.flow_version.outputs)
        writer = csv.writer(buffer)
        writer.writerow(["line_number", "status", *[f"inputs.{n}" for n in inputs], *outputs, "error"])
        for row in rows:
            writer.writerow(
                [
                    row["line_number"],
                    row["status"],
                    *[_cell(row["inputs"].get(n)) for n in inputs],
                    *[_cell(row["outputs"].get(n)) for n in outputs],
                    row["error"] or "",
                ]
            )
        response = HttpResponse(buffer.getvalue(), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="bulk-run-{run.pk}.csv"'
        return response
    body = "".join(json.dumps(row) + "\n" for row in rows)
    response = HttpResponse(body, content_type="application/jsonl")
    response["Content-Disposition"] = f'attachment; filename="bulk-run-{run.pk}.jsonl"'
    return response


def _cell(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)
