"""The deployment wizard (one URL per step, each a full page) and the minimal deployment pages."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.datastructures import MultiValueDict
from django.views.decorators.http import require_http_methods, require_POST

from endpoints import services, sizes
from endpoints.models import Deployment, DeploymentState, Endpoint
from flows.models import FlowVersion
from wizard.forms import BasicForm, DeploymentForm, EndpointForm, OutputsForm, capacity_line, endpoint_name_problem
from wizard.models import STEP_TITLES, STEPS, DeploymentDraft
from workspace import notifications

FORMS = {"basic": BasicForm, "endpoint": EndpointForm, "deployment": DeploymentForm, "outputs": OutputsForm}
PERMISSION = "endpoints.add_deployment"
# Which step fixes a field the services refuse.
FIELD_STEPS = {
    "name": "basic",
    "endpoint": "basic",
    "vm_size": "basic",
    "instance_count": "basic",
    "data_collection": "basic",
    "auth_type": "endpoint",
    "identity_type": "endpoint",
    "user_assigned_identity": "endpoint",
    "tags": "deployment",
    "request_timeout_ms": "deployment",
    "max_concurrent_requests_per_instance": "deployment",
    "app_insights_enabled": "deployment",
    "environment_variables": "deployment",
    "selected_outputs": "outputs",
    "connection_overrides": "outputs",
}


def can_deploy(user) -> bool:
    return user.is_authenticated and user.has_perm(PERMISSION)


def _require_deploy(request) -> None:
    if not can_deploy(request.user):
        raise PermissionDenied("You are not allowed to deploy in this workspace.")


def _draft(request, draft_id) -> DeploymentDraft:
    _require_deploy(request)
    drafts = DeploymentDraft.objects.active().select_related("flow_version__flow", "deployment__endpoint")
    return get_object_or_404(drafts, pk=draft_id, owner=request.user)


def deployment_url(deployment: Deployment) -> str:
    return deployment.get_absolute_url()


def _raw(request) -> dict[str, list[str]]:
    return {k: request.POST.getlist(k) for k in request.POST if k not in ("csrfmiddlewaretoken", "go")}


def _stored_form(step: str, draft: DeploymentDraft):
    """The step's form bound to what the user saved (or to its defaults if skipped), validated."""
    form_class = FORMS[step]
    raw = draft.raw(step)
    data = MultiValueDict(raw) if raw is not None else form_class(draft=draft).initial_data()
    form = form_class(data, draft=draft)
    form.is_valid()
    return form


def _new_endpoint(draft: DeploymentDraft) -> bool:
    return (draft.raw("basic") or {}).get("endpoint_mode", ["new"]) == ["new"]


def _steps_nav(draft: DeploymentDraft, current: str) -> list[dict]:
    return [
        {"key": s, "title": STEP_TITLES[s], "url": draft.step_url(s), "current": s == current, "open": True}
        for s in STEPS
    ]


def _used(request, draft: DeploymentDraft):
    messages.info(request, f"This draft was already deployed as {draft.deployment}.")
    return redirect(deployment_url(draft.deployment))


@login_required
@require_POST
def start(request):
    """Deploy, from a flow page or a bulk run: a new draft for that exact flow version."""
    _require_deploy(request)
    pk = request.POST.get("flow_version", "")
    flow_version = get_object_or_404(FlowVersion, pk=int(pk) if pk.isdigit() else 0)
    draft = DeploymentDraft.start(request.user, flow_version)
    return redirect(draft.step_url("basic"))


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
        if step == "endpoint" and not _new_endpoint(draft):
            form = None  # an existing endpoint's settings are shown read-only
        if form is None or form.is_valid():
            if form is not None:
                draft.save_step(step, _raw(request))
            target = "review" if request.POST.get("go") == "review" else STEPS[STEPS.index(step) + 1]
            return redirect(draft.step_url(target))
        status = 400
    elif draft.raw(step) is not None:
        form = _stored_form(step, draft)  # shows what went stale since, if anything
    else:
        form = FORMS[step](draft=draft)
    context = {
        "draft": draft,
        "form": form,
        "step": step,
        "steps": _steps_nav(draft, step),
        **_extra(step, draft, form),
    }
    return render(request, f"wizard/{step}.html", context, status=status)


def _extra(step: str, draft: DeploymentDraft, form) -> dict:
    if step == "basic":
        vm_size = form["vm_size"].value() or sizes.DEFAULT_SIZE
        count = _int(form["instance_count"].value(), 1)
        if vm_size not in sizes.SIZES:
            vm_size = sizes.DEFAULT_SIZE
        return {"capacity": capacity_line(vm_size, count, excluding=getattr(form, "overwrite", None))}
    if step == "endpoint":
        existing = None
        if not _new_endpoint(draft):
            name = (draft.raw("basic") or {}).get("existing_endpoint", [""])[0]
            existing = Endpoint.objects.filter(name=name).first()
        return {"existing_endpoint": existing, "new_endpoint": _new_endpoint(draft)}
    if step == "deployment":
        return {"flow_version": draft.flow_version}
    return {}


def _int(value, default: int) -> int:
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return default


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
        context = {"capacity": capacity_line(vm_size, _int(request.GET.get("instance_count"), 1), excluding)}
        return render(request, "wizard/basic.html#capacity", context)
    return None


class Stale(Exception):
    def __init__(self, step: str, message: str):
        super().__init__(message)
        self.step = step
        self.message = message


def _all_forms(draft: DeploymentDraft) -> dict:
    forms = {"basic": _stored_form("basic", draft)}
    if _new_endpoint(draft):
        forms["endpoint"] = _stored_form("endpoint", draft)
    forms["deployment"] = _stored_form("deployment", draft)
    forms["outputs"] = _stored_form("outputs", draft)
    return forms


def _first_error(form) -> str:
    for field, errors in form.errors.items():
        label = form.fields[field].label if field in form.fields else ""
        return f"{label}: {errors[0]}" if label else errors[0]
    return "Check this step."


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
    outputs = forms["outputs"]
    warnings += [str(e) for e in outputs.non_field_errors()]
    return warnings


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
    forms = _all_forms(draft)
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
        with transaction.atomic():
            locked = DeploymentDraft.objects.select_for_update().select_related("deployment__endpoint").get(pk=draft.pk)
            if locked.deployment_id:  # a second Create (double click, resubmitted form)
                return redirect(deployment_url(locked.deployment))
            deployment = _create_rows(request, locked)
            claimed = DeploymentDraft.objects.filter(pk=locked.pk, deployment=None).update(deployment=deployment)
            if claimed != 1:
                raise Stale("review", "This draft was deployed by another request.")
            link = deployment_url(deployment)
            verb = "Creating" if deployment.state == DeploymentState.CREATING else "Updating"
            notifications.notify(
                request.user, "Prompt flow deployment", f"{verb} {deployment}: provisioning started.", link=link
            )
    except Stale as exc:
        if exc.step == "review":
            draft.refresh_from_db()
            if draft.deployment_id:
                return redirect(deployment_url(draft.deployment))
        messages.error(request, f"{exc.message} Nothing was created; fix it here, then Review + Create again.")
        return redirect(draft.step_url(exc.step))
    except ValidationError as exc:
        draft.refresh_from_db()
        if draft.deployment_id:  # a concurrent Create of this draft won the race
            return redirect(deployment_url(draft.deployment))
        field = next(iter(exc.message_dict))
        step = FIELD_STEPS.get(field, "basic")
        message = " ".join(exc.message_dict[field])
        messages.error(request, f"{message} Nothing was created; fix it here, then Review + Create again.")
        return redirect(draft.step_url(step))
    messages.success(request, f"Deployment {deployment} is being created.")
    return redirect(link)


def _create_rows(request, draft: DeploymentDraft) -> Deployment:
    """Validate every step again, then create the endpoint (if new) and the deployment, or raise."""
    forms = _all_forms(draft)
    for step_name, form in forms.items():
        if not form.is_valid():
            raise Stale(step_name, _first_error(form))
    basic = forms["basic"].cleaned_data
    if "endpoint" in forms:
        endpoint = services.create_endpoint(
            basic["endpoint_name"], user=request.user, **forms["endpoint"].endpoint_kwargs()
        )
    else:
        endpoint = Endpoint.objects.select_for_update().get(pk=forms["basic"].endpoint.pk)
    deployment_settings = forms["deployment"].cleaned_data
    outputs = forms["outputs"]
    return services.create_or_update_deployment(
        endpoint,
        basic["deployment_name"],
        draft.flow_version,
        user=request.user,
        vm_size=basic["vm_size"],
        instance_count=basic["instance_count"],
        data_collection=basic["data_collection"],
        tags=deployment_settings["tags"],
        request_timeout_ms=deployment_settings["request_timeout_ms"],
        max_concurrent_requests_per_instance=deployment_settings["max_concurrent_requests_per_instance"],
        app_insights_enabled=deployment_settings["app_insights_enabled"],
        selected_outputs=outputs.cleaned_data["selected_outputs"],
        connection_overrides=outputs.overrides(),
    )
