"""The wizard's use case: Create a deployment from a draft, through the same endpoint services as the API and
the CLI, in one transaction that also records the deployment on the draft (so a second Create finds it)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from endpoints import services
from endpoints.models import Deployment, Endpoint
from monitoring import services as collection
from wizard.forms import StepForm, all_forms
from wizard.models import DeploymentDraft
from workspace import access
from workspace.access import Action

# Which step fixes a field the services refuse.
FIELD_STEPS = {
    "name": "basic",
    "endpoint": "basic",
    "vm_size": "basic",
    "provider": "basic",
    "instance_count": "basic",
    "data_collection": "basic",
    "sampling_percent": "basic",
    "retention_days": "basic",
    "auth_type": "endpoint",
    "identity_type": "endpoint",
    "user_assigned_identity": "endpoint",
    "tags": "deployment",
    "request_timeout_ms": "deployment",
    "app_insights_enabled": "deployment",
    "max_concurrent_requests_per_instance": "deployment",
    "environment_variables": "deployment",
    "environment": "deployment",
    "selected_outputs": "outputs",
    "connection_overrides": "outputs",
}


class DraftProblem(Exception):
    """The draft cannot be deployed as it is: nothing was created. `step` is the wizard step that fixes it."""

    def __init__(self, step: str, message: str):
        super().__init__(message)
        self.step = step
        self.message = message


def first_error(form: StepForm) -> str:
    for field, errors in form.errors.items():
        label = form.fields[field].label if field in form.fields else ""
        return f"{label}: {errors[0]}" if label else errors[0]
    return "Check this step."


def create_from_draft(draft: DeploymentDraft, user) -> tuple[Deployment, bool]:
    """Validate every step of the draft again, then create the endpoint (if new) and the deployment, or update
    the deployment it overwrites (the endpoint services notify the user). Returns the deployment and whether this
    call created it (False: the draft was deployed before, by an earlier or a concurrent Create). Raises DraftProblem.

    Access (workspace/access.py), checked here for every caller: the flow must be visible to the user; a new
    endpoint is created in the flow's project (a deployment serves a flow of its endpoint's project) and needs
    Contributor there; creating or overwriting a deployment on an existing endpoint needs Contributor in the
    endpoint's project. Raises AccessDenied (nothing created) otherwise."""
    try:
        with transaction.atomic():
            locked = DeploymentDraft.objects.select_for_update().select_related("deployment__endpoint").get(pk=draft.pk)
            if locked.deployment_id:  # a second Create (double click, resubmitted form)
                return locked.deployment, False
            deployment = _create_rows(locked, user)
            claimed = DeploymentDraft.objects.filter(pk=locked.pk, deployment=None).update(deployment=deployment)
            if claimed != 1:
                raise DraftProblem("review", "This draft was deployed by another request.")
    except (DraftProblem, ValidationError) as exc:
        draft.refresh_from_db()
        if draft.deployment_id:  # a concurrent Create of this draft won the race
            return draft.deployment, False
        if isinstance(exc, DraftProblem):
            raise
        field = next(iter(exc.message_dict))
        raise DraftProblem(FIELD_STEPS.get(field, "basic"), " ".join(exc.message_dict[field])) from None
    return deployment, True


def _create_rows(draft: DeploymentDraft, user) -> Deployment:
    access.require_on(user, Action.VIEW, draft.flow_version)
    forms = all_forms(draft)
    for step, form in forms.items():
        if not form.is_valid():
            raise DraftProblem(step, first_error(form))
    basic = forms["basic"].cleaned_data
    if "endpoint" in forms:
        kwargs = forms["endpoint"].endpoint_kwargs() | {"provider": basic["provider"]}
        access.require(user, Action.DEPLOY, kwargs["project"])
        endpoint = services.create_endpoint(basic["endpoint_name"], user=user, **kwargs)
    else:
        endpoint = Endpoint.objects.select_for_update().get(pk=forms["basic"].endpoint.pk)
        access.require_on(user, Action.DEPLOY, endpoint)
    deployment_settings = forms["deployment"].cleaned_data
    outputs = forms["outputs"]
    deployment = services.create_or_update_deployment(
        endpoint,
        basic["deployment_name"],
        draft.flow_version,
        user=user,
        vm_size=basic["vm_size"],
        instance_count=basic["instance_count"],
        data_collection=basic["data_collection"],
        tags=deployment_settings["tags"],
        request_timeout_ms=deployment_settings["request_timeout_ms"],
        max_concurrent_requests_per_instance=deployment_settings["max_concurrent_requests_per_instance"],
        app_insights_enabled=deployment_settings["app_insights_enabled"],
        environment=deployment_settings.get("environment", ""),
        selected_outputs=outputs.cleaned_data["selected_outputs"],
        connection_overrides=outputs.overrides(),
    )
    if basic["data_collection"]:
        collection.set_policy(
            endpoint.name, deployment.name, basic["sampling_percent"], basic["retention_days"], user=user
        )
    return deployment
