"""Azure Machine Learning of a project: connect it to a workspace, change how the studio signs in, Test connection,
Disconnect. Owners only (Action.MANAGE_ACCESS), for looking too: the page shows who the studio signs in as.

The rules and the changes are in workspace/azure.py; this module only parses the page and shows the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from workspace import azure, projects
from workspace.access import Action
from workspace.azure import LABELS, WorkspaceSettings
from workspace.models import SECRET_MASK, AzureCredentialType, AzureWorkspace, Project

SECRET_FIELDS = ("client_secret", "certificate", "certificate_password")
# The credential types each field is shown for (the page hides the others; the server ignores them).
SHOWN_FOR = {
    "tenant_id": "client_secret certificate",
    "client_id": "managed_identity client_secret certificate",
    "client_secret": "client_secret",
    "certificate": "certificate",
    "certificate_password": "certificate",
}
HELP = {
    "subscription_id": "On the workspace's Overview page in the Azure portal.",
    "resource_group": "The resource group that holds the workspace.",
    "workspace_name": "The Azure Machine Learning workspace (not the Azure AI Foundry project) to deploy to.",
    "tenant_id": "The Microsoft Entra tenant of the service principal: a GUID or a domain.",
    "client_id": "The application (client) ID of the service principal; for a managed identity, the client ID of "
    "a user-assigned identity, or blank for the system-assigned one.",
    "client_secret": "Encrypted at rest and never shown again.",
    "certificate": "The certificate and its RSA private key in one PEM. Encrypted at rest and never shown again.",
    "certificate_password": "Only when the private key is encrypted.",
}
KEEP_HELP = "Leave blank to keep the saved one."


class BlankTextarea(forms.Textarea):
    """A textarea that never sends its value back to the browser (a pasted certificate and private key)."""

    def format_value(self, value: Any) -> None:
        return None


class AzureWorkspaceForm(forms.Form):
    """Parses the page's fields into WorkspaceSettings; the rules are azure.validate's."""

    subscription_id = forms.CharField(required=False)
    resource_group = forms.CharField(required=False)
    workspace_name = forms.CharField(required=False)
    credential_type = forms.ChoiceField(
        required=False,
        choices=AzureCredentialType.choices,
        widget=forms.RadioSelect,
        error_messages={"invalid_choice": "Authentication: choose how the studio signs in to Azure."},
    )
    tenant_id = forms.CharField(required=False)
    client_id = forms.CharField(required=False)
    client_secret = forms.CharField(required=False, strip=False, widget=forms.PasswordInput(render_value=False))
    certificate = forms.CharField(required=False, widget=BlankTextarea(attrs={"rows": 6}))
    certificate_password = forms.CharField(required=False, strip=False, widget=forms.PasswordInput(render_value=False))

    def __init__(self, data: Mapping[str, Any] | None = None, *, instance: AzureWorkspace | None = None) -> None:
        initial = {"credential_type": AzureCredentialType.CLIENT_SECRET}
        if instance is not None:
            initial.update({name: getattr(instance, name) for name in azure.LABELS if name not in SECRET_FIELDS})
        super().__init__(data, initial=initial)
        self.instance = instance
        saved = set(instance.secret_keys) if instance is not None else set()
        for name, form_field in self.fields.items():
            form_field.label = LABELS[name]
            form_field.help_text = HELP.get(name, "")
            attrs = form_field.widget.attrs
            attrs.update(autocomplete="off", spellcheck="false")
            if name in SECRET_FIELDS:
                attrs["autocomplete"] = "new-password"
                if name in saved:
                    attrs["placeholder"] = f"{SECRET_MASK} (saved)"
                    form_field.help_text = f"{form_field.help_text} {KEEP_HELP}".strip()

    def shown_for(self) -> list[tuple[forms.BoundField, str]]:
        """The authentication fields with the credential types they are shown for."""
        return [(self[name], types) for name, types in SHOWN_FOR.items()]

    def to_settings(self) -> WorkspaceSettings:
        return WorkspaceSettings.from_data(self.cleaned_data)

    def add_validation_errors(self, exc: ValidationError) -> None:
        for name, errors in exc.message_dict.items():
            self.add_error(name if name in self.fields else None, errors)


def _project(request: HttpRequest, name: str) -> Project:
    """The project, for an Owner of it: 404 for a non-member, 403 naming the missing role."""
    return projects.fetch(request, Action.MANAGE_ACCESS, Project.objects.all(), "pk", name=name)


@sensitive_post_parameters(*SECRET_FIELDS)
@login_required
@require_http_methods(["GET", "POST"])
def azure_page(request: HttpRequest, project: str) -> HttpResponse:
    """The connected workspace (if any) and the form that connects the project or changes the connection."""
    project_obj = _project(request, project)
    workspace = azure.project_workspace(project_obj)
    form = AzureWorkspaceForm(instance=workspace)
    status = 200
    if request.method == "POST":
        form = AzureWorkspaceForm(request.POST, instance=workspace)
        if form.is_valid():
            try:
                saved, created = azure.connect(project_obj, form.to_settings(), user=request.user)
            except ValidationError as exc:
                form.add_validation_errors(exc)
            else:
                verb = "connected to" if created else "now connects to"
                messages.success(
                    request,
                    f"Project {project_obj.name} {verb} Azure Machine Learning workspace {saved.workspace_name}. "
                    "Use Test connection to check that the studio can sign in and reach it.",
                )
                return redirect("workspace:azure", project_obj.name)
        status = 400
    elif workspace is not None and not workspace.secrets_readable():
        messages.warning(
            request,
            "The saved secret cannot be decrypted with the current FLOWDEPLOY_SECRET_KEY (or SECRET_KEY). "
            "Enter it again and save.",
        )
    context = {
        "project": project_obj,
        "workspace": workspace,
        "form": form,
        "endpoints_on_azure": azure.endpoints_on_azure(project_obj) if workspace else [],
    }
    return render(request, "workspace/azure.html", context, status=status)


@login_required
@require_POST
def azure_test(request: HttpRequest, project: str) -> HttpResponse:
    """Test connection: sign in and get the workspace; the outcome (Azure's own error) comes back as a message."""
    project_obj = _project(request, project)
    workspace = azure.project_workspace(project_obj)
    if workspace is None:
        messages.error(request, f"Project {project_obj.name} is not connected to an Azure Machine Learning workspace.")
    elif problem := azure.check_connection(workspace, user=request.user):
        messages.error(request, problem)
    else:
        messages.success(
            request,
            f"Connected: the studio signed in and reached workspace {workspace.workspace_name} "
            f"in region {workspace.region or 'unknown'}.",
        )
    return redirect("workspace:azure", project_obj.name)


@login_required
@require_http_methods(["GET", "POST"])
def azure_disconnect(request: HttpRequest, project: str) -> HttpResponse:
    """Disconnect, after a confirmation; refused while an endpoint of the project runs on Azure Machine Learning."""
    project_obj = _project(request, project)
    workspace = azure.project_workspace(project_obj)
    if workspace is None:
        messages.info(request, f"Project {project_obj.name} is not connected to an Azure Machine Learning workspace.")
        return redirect("workspace:azure", project_obj.name)
    if request.method == "POST":
        try:
            azure.disconnect(workspace, user=request.user)
        except ValidationError as exc:
            for errors in exc.message_dict.values():
                for message in errors:
                    messages.error(request, message)
        else:
            messages.success(
                request,
                f"Project {project_obj.name} is disconnected from workspace {workspace.workspace_name}; "
                "its saved secret is deleted.",
            )
        return redirect("workspace:azure", project_obj.name)
    context = {
        "project": project_obj,
        "workspace": workspace,
        "endpoints_on_azure": azure.endpoints_on_azure(project_obj),
    }
    return render(request, "workspace/azure_disconnect.html", context)
