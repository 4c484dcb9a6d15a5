"""The deployment wizard (one URL per step, each a full page) and the minimal deployment pages."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from endpoints import sizes
from endpoints.models import Deployment, Endpoint
from flows.models import Flow, FlowVersion
from wizard import services as wizard_services
from wizard.forms import (
    FORMS,
    all_forms,
    blank_form,
    capacity_line,
    endpoint_name_problem,
    identity_warnings,
    stored_form,
)
from wizard.forms import uses_new_endpoint as _new_endpoint
from wizard.models import STEP_TITLES, STEPS, DeploymentDraft
from workspace import access, projects
from workspace.access import AccessDenied, Action

# Access (workspace/access.py): deploying needs Contributor or Owner; a new endpoint is created in the current
# project, an existing one must be in a project where the user may deploy, and the flow must be visible to the
# user. wizard/services.create_from_draft checks all of it again at Create.


def _require_deploy(request) -> None:
    """The wizard is for people who may deploy somewhere: Contributor or Owner of at least one project."""
    if not any(access.allows(request.user, Action.DEPLOY, p) for p in access.visible_projects(request.user)):
        projects.require_in_current(request, Action.DEPLOY)  # raises with the rule's message


def _draft(request, draft_id) -> DeploymentDraft:
    _require_deploy(request)
    drafts = DeploymentDraft.objects.active().select_related("flow_version__flow", "deployment__endpoint")
    return get_object_or_404(drafts, pk=draft_id, owner=request.user)


def deployable_endpoints(user) -> list[Endpoint]:
    """The endpoints the user may deploy to: the wizard's Existing endpoint choices."""
    endpoints = access.visible(user, Endpoint.objects.filter(deleting=False).order_by("name"))
    return [endpoint for endpoint in endpoints if access.can(user, Action.DEPLOY, endpoint)]


def _only_deployable(form, user) -> None:
    """Narrow the Existing endpoint choices to the endpoints the user may deploy to (before validation, so
    another one is refused as not a valid choice)."""
    if form is None or "existing_endpoint" not in form.fields:
        return
    allowed = {endpoint.name for endpoint in deployable_endpoints(user)}
    field = form.fields["existing_endpoint"]
    field.choices = [(value, label) for value, label in field.choices if not value or value in allowed]


def deployment_url(deployment: Deployment) -> str:
    return deployment.get_absolute_url()


def _raw(request) -> dict[str, list[str]]:
    return {k: request.POST.getlist(k) for k in request.POST if k not in ("csrfmiddlewaretoken", "go")}


def _steps_nav(draft: DeploymentDraft, current: str) -> list[dict]:
    return [{"key": s, "title": STEP_TITLES[s], "url": draft.step_url(s), "current": s == current} for s in STEPS]


def _used(request, draft: DeploymentDraft):
    messages.info(request, f"This draft was already deployed as {draft.deployment}.")
    return redirect(deployment_url(draft.deployment))


@login_required
@require_http_methods(["GET", "POST"])
def start(request):
    """Deploy, from a flow page or a bulk run (POST): a new draft for that exact flow version. With `endpoint`,
    the draft deploys to that existing endpoint. GET lists the flows to choose from (from an endpoint's page)."""
    _require_deploy(request)
    endpoint = _deployable_endpoint(request, request.POST.get("endpoint") or request.GET.get("endpoint") or "")
    if request.method == "GET":
        flows = [(flow, flow.latest_version()) for flow in access.visible(request.user, Flow.objects.order_by("name"))]
        context = {"flows": [(flow, version) for flow, version in flows if version], "endpoint": endpoint}
        return render(request, "wizard/choose_flow.html", context)
    pk = request.POST.get("flow_version", "")
    versions = FlowVersion.objects.select_related("flow")
    flow_version = projects.fetch(request, Action.VIEW, versions, "flow__project", pk=int(pk) if pk.isdigit() else 0)
    preset = {"basic": {"endpoint_mode": "existing", "existing_endpoint": endpoint.name}} if endpoint else None
    draft = DeploymentDraft.start(request.user, flow_version, preset=preset)
    return redirect(draft.step_url("basic"))


def _deployable_endpoint(request, name: str) -> Endpoint | None:
    if not name:
        return None
    return projects.fetch(request, Action.DEPLOY, Endpoint.objects.filter(deleting=False), name=name)


@login_required
@require_http_methods(["GET", "POST"])
def step(request, draft_id, step: str):
    draft = _draft(request, draft_id)
    if draft.deployment_id:
        return _used(request, draft)
    if step != "basic" and draft.raw("basic") is None:
        messages.info(request, "Start with the basic settings.")
        return redirect(draft.step_url("basic"))
    if step == "basic" and request.method == "GET" and request.htmx:
        live = _basic_live(request, draft)
        if live is not None:
            return live
    status = 200
    if request.method == "POST":
        form = FORMS[step](request.POST, draft=draft)
        _only_deployable(form, request.user)
        if step == "endpoint" and not _new_endpoint(draft):
            form = None  # an existing endpoint's settings are shown read-only
        leaving_for = _leaving_for(request.POST.get("go", ""), step)
        if leaving_for:  # Back or the step list: keep what was typed, valid or not; it is checked on the way on
            if form is not None:
                draft.save_step(step, _raw(request))
            return redirect(draft.step_url(leaving_for))
        if form is None or form.is_valid():
            if form is not None:
                draft.save_step(step, _raw(request))
            target = "review" if request.POST.get("go") == "review" else STEPS[STEPS.index(step) + 1]
            return redirect(draft.step_url(target))
        status = 400
    elif draft.raw(step) is not None:
        form = stored_form(step, draft)  # shows what went stale since, if anything
    else:
        form = blank_form(step, draft)
    _only_deployable(form, request.user)
    context = {
        "draft": draft,
        "form": form,
        "step": step,
        "steps": _steps_nav(draft, step),
        **_extra(step, draft, form, request.user),
    }
    return render(request, f"wizard/{step}.html", context, status=status)


def _leaving_for(go: str, step: str) -> str:
    """The step that Back (`back`) or a step-list entry (`step:<name>`) goes to, or "" for Next and Review."""
    if go == "back":
        return STEPS[max(0, STEPS.index(step) - 1)]
    name = go.removeprefix("step:")
    return name if go.startswith("step:") and name in STEPS else ""


def _extra(step: str, draft: DeploymentDraft, form, user) -> dict:
    if step == "basic":
        vm_size = form["vm_size"].value() or sizes.DEFAULT_SIZE
        if vm_size not in sizes.SIZES:
            vm_size = sizes.DEFAULT_SIZE
        count = form["instance_count"].value()
        return {"capacity": capacity_line(vm_size, count, excluding=getattr(form, "overwrite", None))}
    if step == "endpoint":
        existing = None
        if not _new_endpoint(draft):
            name = (draft.raw("basic") or {}).get("existing_endpoint", [""])[0]
            existing = access.visible(user, Endpoint.objects.filter(name=name)).first()
        return {"existing_endpoint": existing, "new_endpoint": _new_endpoint(draft)}
    if step == "deployment":
        return {"flow_version": draft.flow_version}
    return {}


def _basic_live(request, draft: DeploymentDraft) -> HttpResponse | None:
    """The live bits of Basic settings: the endpoint name check and the capacity line."""
    trigger = request.htmx.trigger_name
    if trigger == "endpoint_name":
        name = request.GET.get("endpoint_name", "").strip()
        context = {"name": name, "name_problem": endpoint_name_problem(name), "checked": True}
        return render(request, "wizard/basic.html#name_check", context)
    if trigger in ("vm_size", "instance_count"):
        vm_size = request.GET.get("vm_size")
        if vm_size not in sizes.SIZES:
            vm_size = sizes.DEFAULT_SIZE
        excluding = None
        if request.GET.get("endpoint_mode") == "existing":
            excluding = Deployment.objects.filter(
                endpoint__name=request.GET.get("existing_endpoint", ""), name=request.GET.get("deployment_name", "")
            ).first()
        context = {"capacity": capacity_line(vm_size, request.GET.get("instance_count", ""), excluding)}
        return render(request, "wizard/basic.html#capacity", context)
    return None


def _warnings(forms: dict, draft: DeploymentDraft) -> list[str]:
    warnings = []
    basic = forms["basic"]
    if basic.overwrite is not None:
        warnings.append(
            f"Deployment {basic.overwrite.name} on endpoint {basic.overwrite.endpoint.name} will be overwritten "
            "with this configuration."
        )
    count = basic.cleaned_data.get("instance_count") if basic.is_valid() else None
    if count is not None and count < 3:
        warnings.append("For high availability, we recommend that you set the value to at least 3")
    warnings += [str(e) for e in forms["outputs"].connection_errors()]
    return warnings + identity_warnings(forms, draft)


@login_required
@require_http_methods(["GET", "POST"])
def review(request, draft_id):
    draft = _draft(request, draft_id)
    if draft.deployment_id:
        return _used(request, draft)
    if draft.raw("basic") is None:
        return redirect(draft.step_url("basic"))
    if request.method == "POST":
        return _create(request, draft)
    forms = all_forms(draft)
    context = {
        "draft": draft,
        "step": "review",
        "steps": _steps_nav(draft, "review"),
        "forms": forms,
        "valid": all(f.is_valid() for f in forms.values()),
        "warnings": _warnings(forms, draft),
        "new_endpoint": _new_endpoint(draft),
        "sizes": sizes.SIZES,
    }
    return render(request, "wizard/review.html", context)


def _create(request, draft: DeploymentDraft):
    try:
        deployment, created = wizard_services.create_from_draft(draft, request.user)
    except AccessDenied as exc:
        if not exc.visible:
            raise Http404(exc.message) from None
        raise
    except wizard_services.DraftProblem as exc:
        messages.error(request, f"{exc.message} Nothing was created; fix it here, then Review + Create again.")
        return redirect(draft.step_url(exc.step))
    if created:
        messages.success(request, f"Deployment {deployment} is being created.")
    return redirect(deployment_url(deployment))
