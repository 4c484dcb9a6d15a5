"""Access control (IAM) of a project: its role assignments (and the "Add role assignment" steps), its members,
and its user-assigned managed identities.

Any member sees these pages; only an Owner (Action.MANAGE_ACCESS) adds or removes role assignments and members.
Contributors create user-assigned identities (Action.DEPLOY) and delete unused ones (Action.DELETE); Owners set
their ids in Azure when the project is connected to an Azure ML workspace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from endpoints.models import Endpoint
from workspace import access, azure, identities, members, projects
from workspace.access import Action
from workspace.forms import (
    IdentityAzureForm,
    ManagedIdentityForm,
    MemberAddForm,
    MemberRoleForm,
    RoleAssignmentForm,
)
from workspace.models import BuiltInRole, ManagedIdentity, Membership, Project, RoleAssignment


def _project(request: HttpRequest, name: str, action: Action = Action.VIEW) -> Project:
    """The project, if the user may do `action` there: 404 for a non-member, 403 naming the missing role."""
    return projects.fetch(request, action, Project.objects.all(), "pk", name=name)


def _errors(exc: ValidationError) -> list[str]:
    return [message for messages_ in exc.message_dict.values() for message in messages_]


def _attempt(request: HttpRequest, change: Callable[[], Any], success: Callable[[Any], str]) -> None:
    """Make a change through its service: its refusals (ValidationError, naming what is wrong) become error
    messages, its result a success message."""
    try:
        result = change()
    except ValidationError as exc:
        for message in _errors(exc):
            messages.error(request, message)
    else:
        messages.success(request, success(result))


# --- role assignments and members ---------------------------------------------------------------


def _endpoint_needs(project: Project) -> list[dict]:
    """For each endpoint of the project: its identity, the roles it needs and whether it holds them now."""
    rows = []
    endpoints = (
        Endpoint.objects.filter(project=project, deleting=False)
        .select_related("project", "user_assigned_identity")
        .prefetch_related("deployments__flow_version")
        .order_by("name")
    )
    for endpoint in endpoints:
        versions = [d.flow_version for d in endpoint.deployments.all()]
        version = next((v for v in versions if v.connections), versions[0] if versions else None)
        principal = identities.principal_of(endpoint)
        missing = set(identities.missing_roles(endpoint, version))
        needs = [
            {
                "role": BuiltInRole(role).label,
                "scope": identities.scope_path(project, scope),
                "held": (role, scope) not in missing,
                "command": identities.az_command(project, principal.principal_id, role, scope),
            }
            for role, scope in identities.required_roles(endpoint, version)
        ]
        rows.append({"endpoint": endpoint, "principal": principal, "needs": needs})
    return rows


@login_required
@require_GET
def access_page(request: HttpRequest, project: str) -> HttpResponse:
    """Access control (IAM): role assignments, what each endpoint's identity needs, and members."""
    project_obj = _project(request, project)
    assignments = list(project_obj.role_assignments.select_related("created_by", "project"))
    for assignment in assignments:
        assignment.command = identities.assignment_command(assignment)
        assignment.scope_path = identities.scope_path(project_obj, assignment.scope)
    memberships = list(project_obj.memberships.select_related("user").order_by("user__username"))
    for membership in memberships:
        membership.form = MemberRoleForm(initial={"role": membership.role}, prefix=f"m{membership.pk}")
    return render(
        request,
        "workspace/access/access.html",
        {
            "project": project_obj,
            "assignments": assignments,
            "endpoint_needs": _endpoint_needs(project_obj),
            "memberships": memberships,
            "member_form": MemberAddForm(),
            "can_manage": access.allows(request.user, Action.MANAGE_ACCESS, project_obj),
        },
    )


def _step_url(project: Project, step: str, form: RoleAssignmentForm | None = None) -> str:
    query = {"step": step}
    if form is not None:
        query.update({name: value for name, value in form.cleaned_data.items() if name in form.fields})
    return f"{reverse('workspace:role_assignment_add', args=[project.name])}?{urlencode(query)}"


def _step_form(request: HttpRequest, project: Project, step: str) -> RoleAssignmentForm:
    """The form of the step asked for, when the earlier steps' fields (in the query) are valid; else the
    earlier step's form, bound, with its errors."""
    if step == "role":
        return RoleAssignmentForm(initial=request.GET.dict(), project=project, step="role")
    if step == "members":
        chosen = RoleAssignmentForm(request.GET, project=project, step="role")
        if not chosen.is_valid():
            return chosen
        initial = {"scope": identities.DEFAULT_SCOPE[BuiltInRole(chosen.cleaned_data["role"])], **request.GET.dict()}
        return RoleAssignmentForm(initial=initial, project=project, step="members")
    review = RoleAssignmentForm(request.GET, project=project, step="review")
    if not review.is_valid():
        return RoleAssignmentForm(request.GET, project=project, step="members")
    return review


@login_required
@require_http_methods(["GET", "POST"])
def role_assignment_add(request: HttpRequest, project: str) -> HttpResponse:
    """Add role assignment: Role -> Members -> Review + assign, each step a page (GET), then assign (POST).
    A step whose fields do not validate is shown again with its errors."""
    project_obj = _project(request, project, Action.MANAGE_ACCESS)
    if request.method == "POST":
        form = RoleAssignmentForm(request.POST, project=project_obj, step="review")
        if form.is_valid():
            data = form.cleaned_data
            assignment, created = identities.grant(
                project_obj, form.principal, data["role"], data["scope"], user=request.user
            )
            if created:
                messages.success(request, f"Added: {assignment}.")
            else:
                messages.info(request, f"{form.principal} already holds this role at this scope.")
            return redirect("workspace:access", project_obj.name)
        step = "members"
    else:
        step = request.GET.get("step", "role")
        step = step if step in RoleAssignmentForm.STEPS else "role"
        form = _step_form(request, project_obj, step)
        step = form.step
    context = {"project": project_obj, "form": form, "step": step, "steps": RoleAssignmentForm.STEPS}
    if step == "review":
        data = form.cleaned_data
        context.update(
            role_label=BuiltInRole(data["role"]).label,
            role_purpose=identities.ROLE_PURPOSE[BuiltInRole(data["role"])],
            scope_path=identities.scope_path(project_obj, data["scope"]),
            principal=form.principal,
            command=identities.az_command(project_obj, form.principal.principal_id, data["role"], data["scope"]),
            back_url=_step_url(project_obj, "members", form),
        )
    elif step == "members":
        role = form["role"].value()
        context.update(
            role_label=BuiltInRole(role).label if role in BuiltInRole.values else "",
            back_url=f"{_step_url(project_obj, 'role')}&{urlencode({'role': role or ''})}",
        )
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "workspace/access/role_assignment_add.html", context, status=status)


@login_required
@require_POST
def role_assignment_remove(request: HttpRequest, project: str, pk: int) -> HttpResponse:
    project_obj = _project(request, project, Action.MANAGE_ACCESS)
    assignment = get_object_or_404(RoleAssignment.objects.select_related("project"), pk=pk, project=project_obj)
    identities.revoke(assignment, user=request.user)
    messages.success(request, f"Removed: {assignment}. Instances that start from now on are refused what it gave.")
    return redirect("workspace:access", project_obj.name)


@login_required
@require_POST
def member_add(request: HttpRequest, project: str) -> HttpResponse:
    project_obj = _project(request, project, Action.MANAGE_ACCESS)
    form = MemberAddForm(request.POST)
    if form.is_valid():
        _attempt(
            request,
            lambda: members.add_member(
                project_obj, form.cleaned_data["username"], form.cleaned_data["role"], user=request.user
            ),
            lambda membership: f"Added {membership.user} as {membership.get_role_display()}.",
        )
    else:
        for field, errors in form.errors.items():
            messages.error(request, f"{form.fields[field].label}: {errors[0]}")
    return redirect("workspace:access", project_obj.name)


def _membership(project: Project, pk: int) -> Membership:
    return get_object_or_404(Membership.objects.select_related("user", "project"), pk=pk, project=project)


@login_required
@require_POST
def member_role(request: HttpRequest, project: str, pk: int) -> HttpResponse:
    project_obj = _project(request, project, Action.MANAGE_ACCESS)
    membership = _membership(project_obj, pk)
    form = MemberRoleForm(request.POST, prefix=f"m{membership.pk}")
    if not form.is_valid():
        messages.error(request, "Choose Owner, Contributor or Reader.")
        return redirect("workspace:access", project_obj.name)
    _attempt(
        request,
        lambda: members.change_role(membership, form.cleaned_data["role"], user=request.user),
        lambda changed: f"{changed.user} is now {changed.get_role_display()}.",
    )
    return redirect("workspace:access", project_obj.name)


@login_required
@require_POST
def member_remove(request: HttpRequest, project: str, pk: int) -> HttpResponse:
    project_obj = _project(request, project, Action.MANAGE_ACCESS)
    membership = _membership(project_obj, pk)
    _attempt(
        request,
        lambda: members.remove_member(membership, user=request.user),
        lambda _: f"Removed {membership.user} from project {project_obj.name}.",
    )
    return redirect("workspace:access", project_obj.name)


# --- user-assigned managed identities ----------------------------------------------------------


def _azure_form(identity: ManagedIdentity, data: Any = None) -> IdentityAzureForm:
    initial = {name: getattr(identity, name) for name in identities.AZURE_ID_FIELDS}
    return IdentityAzureForm(data, initial=initial, prefix=f"azure-{identity.pk}")


def _identities_response(
    request: HttpRequest,
    project: Project,
    form: ManagedIdentityForm | None = None,
    azure_forms: dict[int, IdentityAzureForm] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The Managed identities page, with the forms given (bound, with their errors) or blank ones."""
    rows = list(ManagedIdentity.objects.filter(project=project).prefetch_related("endpoints").order_by("name"))
    held: dict = {}
    for assignment in project.role_assignments.all():
        held.setdefault(assignment.principal_id, []).append(assignment)
    for row in rows:
        row.assignments = held.get(row.principal_id, [])
        row.used_by = [e.name for e in row.endpoints.all()]
        row.azure_form = (azure_forms or {}).get(row.pk) or _azure_form(row)
    return render(
        request,
        "workspace/access/identities.html",
        {
            "project": project,
            "identities": rows,
            "form": form or ManagedIdentityForm(),
            "can_create": access.allows(request.user, Action.DEPLOY, project),
            "can_delete": access.allows(request.user, Action.DELETE, project),
            "can_manage": access.allows(request.user, Action.MANAGE_ACCESS, project),
            "azure_workspace": azure.project_workspace(project),
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def identities_page(request: HttpRequest, project: str) -> HttpResponse:
    """The project's user-assigned managed identities; a Contributor or Owner creates one here."""
    project_obj = _project(request, project)
    if request.method == "GET":
        return _identities_response(request, project_obj)
    projects.require(request, Action.DEPLOY, project_obj)
    form = ManagedIdentityForm(request.POST)
    if form.is_valid():
        try:
            identity = identities.create_identity(project_obj, form.cleaned_data["name"], user=request.user)
        except ValidationError as exc:
            form.add_error("name", _errors(exc))
        else:
            messages.success(
                request,
                f"Created user-assigned identity {identity.name}. An Owner gives it its roles under Access "
                "control before an endpoint can run as it.",
            )
            return redirect("workspace:identities", project_obj.name)
    return _identities_response(request, project_obj, form=form, status=400)


@login_required
@require_POST
def identity_azure(request: HttpRequest, project: str, name: str) -> HttpResponse:
    """An Owner saves the identity's ids in Azure (resource, client and principal id) for a project connected to
    an Azure ML workspace; a bad value shows the page again with the field's error."""
    project_obj = _project(request, project, Action.MANAGE_ACCESS)
    identity = get_object_or_404(ManagedIdentity.objects.select_related("project"), project=project_obj, name=name)
    if azure.project_workspace(project_obj) is None:
        messages.error(
            request,
            f"Azure resource ID: project {project_obj.name} is not connected to an Azure Machine Learning "
            "workspace; an Owner connects it on the Azure Machine Learning page first.",
        )
        return redirect("workspace:identities", project_obj.name)
    form = _azure_form(identity, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            changed = identities.set_azure_ids(
                identity,
                resource_id=data["azure_resource_id"],
                client_id=data["azure_client_id"],
                principal_id=data["azure_principal_id"],
                user=request.user,
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field, errors)
        else:
            labels = ", ".join(str(form.fields[field].label) for field in changed) or "nothing changed"
            messages.success(request, f"Saved the Azure ids of identity {identity.name}: {labels}.")
            return redirect("workspace:identities", project_obj.name)
    return _identities_response(request, project_obj, azure_forms={identity.pk: form}, status=400)


@login_required
@require_POST
def identity_delete(request: HttpRequest, project: str, name: str) -> HttpResponse:
    project_obj = _project(request, project, Action.DELETE)
    identity = get_object_or_404(ManagedIdentity, project=project_obj, name=name)
    _attempt(
        request,
        lambda: identities.delete_identity(identity, user=request.user),
        lambda _: f"Deleted user-assigned identity {name} and its role assignments.",
    )
    return redirect("workspace:identities", project_obj.name)
