"""One form per wizard step. Each validates its own fields on the server, with the services' rules."""

from __future__ import annotations

import re
import secrets

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.datastructures import MultiValueDict

from endpoints import services, sizes
from endpoints.models import AuthType, Deployment, Endpoint, IdentityType, Provider, check_name
from endpoints.providers import provider_named
from endpoints.providers.local import capacity
from flows.models import FlowVersion
from monitoring.services import clean_policy as collection_policy
from workspace import azure, identities
from workspace.models import ManagedIdentity

HIGH_AVAILABILITY = "For high availability, we recommend that you set the value to at least 3"


class TagsField(forms.CharField):
    """Key-value pairs, one `key=value` a line."""

    widget = forms.Textarea(attrs={"rows": 3, "placeholder": "team=search\ncost-center=42"})

    def prepare_value(self, value):
        if isinstance(value, dict):
            return "\n".join(f"{k}={v}" for k, v in value.items())
        return value

    def to_python(self, value):
        text = super().to_python(value) or ""
        tags = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            key, sep, val = line.partition("=")
            if not sep or not key.strip():
                raise ValidationError(f"Line {number}: write each tag as key=value.")
            tags[key.strip()] = val.strip()
        return tags


class InstanceCountField(forms.Field):
    """Instance count, checked by the services' one rule (services.clean_instance_count): a whole number from
    1 to FLOWDEPLOY_MAX_INSTANCES, one message for every other value, the empty one included."""

    widget = forms.NumberInput

    def __init__(self, **kwargs):
        super().__init__(required=False, **kwargs)

    def to_python(self, value):
        return services.clean_instance_count(value)

    def widget_attrs(self, widget):
        return {**super().widget_attrs(widget), "min": 1, "step": 1}


def _service_errors(form: forms.Form, exc: ValidationError, fields: dict[str, str] | None = None) -> None:
    """Put a service's ValidationError on the form fields it names (renamed through `fields`)."""
    fields = fields or {}
    for name, messages in exc.message_dict.items():
        target = fields.get(name, name)
        form.add_error(target if target in form.fields else None, messages)


def suggested_endpoint_name(flow_version: FlowVersion) -> str:
    base = re.sub(r"[^A-Za-z0-9-]+", "-", flow_version.flow.name).strip("-")
    if not base or not base[0].isalpha():
        base = f"ep-{base}".rstrip("-")
    return f"{base[:26].rstrip('-')}-{secrets.token_hex(2)}"


class StepForm(forms.Form):
    def __init__(self, *args, draft, **kwargs):
        self.draft = draft
        self.flow_version = draft.flow_version
        super().__init__(*args, **kwargs)

    def initial_data(self) -> MultiValueDict:
        """The form's defaults as submitted data, to validate a step the user skipped."""
        data = MultiValueDict()
        for name, field in self.fields.items():
            value = self.get_initial_for_field(field, name)
            if isinstance(field, forms.BooleanField):
                if value:
                    data[name] = "on"
            elif isinstance(value, list | tuple):
                data.setlist(name, [str(v) for v in value])
            elif value is not None:
                data[name] = str(field.prepare_value(value))
        return data


class BasicForm(StepForm):
    endpoint_mode = forms.ChoiceField(
        label="Endpoint", choices=[("new", "New"), ("existing", "Existing")], widget=forms.RadioSelect, initial="new"
    )
    endpoint_name = forms.CharField(label="Endpoint name", required=False, max_length=64)
    existing_endpoint = forms.ChoiceField(label="Existing endpoint", required=False)
    provider = forms.ChoiceField(
        label="Runs on", choices=[(Provider.LOCAL, Provider.LOCAL.label)], initial=Provider.LOCAL, required=False
    )
    deployment_name = forms.CharField(label="Deployment name", max_length=64, initial="blue")
    confirm_overwrite = forms.BooleanField(label="Overwrite the existing deployment", required=False)
    vm_size = forms.ChoiceField(label="Virtual machine", initial=sizes.DEFAULT_SIZE)
    instance_count = InstanceCountField(label="Instance count", initial=1)
    data_collection = forms.BooleanField(label="Inference data collection", required=False)
    sampling_percent = forms.FloatField(label="Sampling rate (%)", initial=100, required=False)
    retention_days = forms.IntegerField(label="Retention (days)", initial=30, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.overwrite: Deployment | None = None
        self.endpoint: Endpoint | None = None
        self.fields["endpoint_name"].initial = suggested_endpoint_name(self.flow_version)
        # A deployment serves a flow of its endpoint's project (endpoints/services.py): the flow's endpoints.
        endpoints = self._project_endpoints().order_by("name")
        self.fields["existing_endpoint"].choices = [("", "Choose an endpoint")] + [(e.name, e.name) for e in endpoints]
        free = capacity.free_mib()
        self.fields["vm_size"].choices = [
            (name, f"{name}: {size.summary}; {_fitting(free, size)} instance(s) fit in what is left")
            for name, size in sizes.SIZES.items()
        ]
        self.fields["instance_count"].widget.attrs["max"] = settings.FLOWDEPLOY_MAX_INSTANCES
        self.azure_workspace = azure.project_workspace(self.flow_version.flow.project)
        if self.azure_workspace is not None:
            label = f"{Provider.AZUREML.label} (workspace {self.azure_workspace.workspace_name})"
            self.fields["provider"].choices += [(Provider.AZUREML, label)]
        live = {"hx-get": self.draft.step_url("basic"), "hx-swap": "outerHTML", "hx-sync": "this:replace"}
        self.fields["endpoint_name"].widget.attrs.update(
            live, **{"hx-trigger": "input changed delay:300ms", "hx-target": "#name-check", "autocomplete": "off"}
        )
        for name in ("vm_size", "instance_count"):
            self.fields[name].widget.attrs.update(
                live,
                **{"hx-trigger": "change, input changed delay:300ms", "hx-target": "#capacity"},
                **{"hx-include": "closest form"},
            )

    def _project_endpoints(self):
        return Endpoint.objects.filter(deleting=False, project_id=self.flow_version.flow.project_id)

    def clean(self):
        data = super().clean()
        mode = data.get("endpoint_mode")
        if mode == "new":
            self._check_new_endpoint(data.get("endpoint_name") or "")
        elif mode == "existing":
            name = data.get("existing_endpoint")
            self.endpoint = self._project_endpoints().filter(name=name).first() if name else None
            if self.endpoint is None:
                message = f"Endpoint {name} no longer exists." if name else "Choose an existing endpoint."
                self.add_error("existing_endpoint", message)
        deployment_name = data.get("deployment_name")
        if deployment_name:
            try:
                check_name(deployment_name, "Deployment")
            except ValidationError as exc:
                self.add_error("deployment_name", exc.messages)
                deployment_name = None
        if deployment_name and self.endpoint is not None:
            self._check_overwrite(deployment_name, data.get("confirm_overwrite"))
        data["provider"] = self._provider(data)
        if data.get("vm_size") and data.get("instance_count") and data["provider"] == Provider.LOCAL:
            self._check_capacity(data["vm_size"], data["instance_count"])
        if data.get("data_collection"):
            self._check_collection_policy(data)
        return data

    def _provider(self, data: dict) -> str:
        """Where the deployment runs: the existing endpoint's provider, or the choice for a new one."""
        if data.get("endpoint_mode") == "existing":
            return self.endpoint.provider if self.endpoint is not None else Provider.LOCAL
        return data.get("provider") or Provider.LOCAL

    def _check_collection_policy(self, data: dict) -> None:
        sampling, retention = data.get("sampling_percent"), data.get("retention_days")
        try:
            data["sampling_percent"], data["retention_days"] = collection_policy(
                100 if sampling is None else sampling, 30 if retention is None else retention
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                if field not in self.errors:
                    self.add_error(field, messages)

    def _check_new_endpoint(self, name: str) -> None:
        problem = endpoint_name_problem(name)
        if problem:
            self.add_error("endpoint_name", problem)

    def _check_overwrite(self, name: str, confirmed: bool) -> None:
        existing = self.endpoint.deployments.filter(name=name).first()
        if existing is None:
            return
        self.overwrite = existing
        if existing.is_busy:
            self.add_error("deployment_name", f"Deployment {name} is {existing.state.lower()}; wait until it finishes.")
        elif not confirmed:
            self.add_error(
                "confirm_overwrite",
                f"Endpoint {self.endpoint.name} already has a deployment named {name}: it will be overwritten "
                "with this configuration. Tick the box to confirm, or choose another deployment name.",
            )

    def _check_capacity(self, vm_size: str, count: int) -> None:
        shortfall = capacity.shortfall_for(vm_size, count, excluding=self.overwrite)
        if shortfall:
            self.add_error("instance_count", shortfall)


def _fitting(free_mib: int, size: sizes.VMSize) -> int:
    return int(free_mib // (size.reserved_mib * (1 + sizes.UPGRADE_RESERVE)))


def endpoint_name_problem(name: str) -> str:
    """Why `name` cannot be a new endpoint's name, or an empty string (the services' rule)."""
    return services.endpoint_name_problem(name)


def capacity_line(vm_size: str, count: object, excluding: Deployment | None = None) -> dict:
    """What the Instance count needs and what this machine has left, for the live capacity line; or, for a
    count the services refuse, their message."""
    try:
        count = services.clean_instance_count(count)
    except ValidationError as exc:
        return {"error": exc.messages[0]}
    needed = capacity.reserved_mib(vm_size, count)
    free = capacity.free_mib(excluding)
    return {
        "needed_gib": needed / 1024,
        "free_gib": free / 1024,
        "total_gib": capacity.total_mib() / 1024,
        "fits": needed <= free,
        "below_three": count < 3,
        "advice": HIGH_AVAILABILITY,
    }


class EndpointForm(StepForm):
    auth_type = forms.ChoiceField(
        label="Authentication type", choices=AuthType.choices, widget=forms.RadioSelect, initial=AuthType.KEY
    )
    identity_type = forms.ChoiceField(
        label="Identity type", choices=IdentityType.choices, widget=forms.RadioSelect, initial=IdentityType.SYSTEM
    )
    user_assigned_identity = forms.CharField(
        label="User-assigned identity", required=False, max_length=200, widget=forms.Select
    )
    enforce_access_to_connection_secrets = forms.BooleanField(
        label="Enforce access to connection secrets", required=False, initial=True
    )
    tags = TagsField(label="Tags", required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The endpoint goes to the flow's project: its user-assigned identities are the ones to choose from.
        self.project = self.flow_version.flow.project
        names = ManagedIdentity.objects.filter(project=self.project).order_by("name").values_list("name", flat=True)
        self.fields["user_assigned_identity"].widget.choices = [("", "Select an identity")] + [(n, n) for n in names]

    def clean(self):
        data = super().clean()
        if data.get("identity_type") == IdentityType.USER:
            name = data.get("user_assigned_identity", "").strip()
            if not name:
                self.add_error("user_assigned_identity", "Name the user-assigned identity.")
            elif not ManagedIdentity.objects.filter(project=self.project, name=name).exists():
                self.add_error(
                    "user_assigned_identity",
                    f"Project '{self.project.name}' has no user-assigned identity named '{name}'. Create it under "
                    "Access control (IAM) > Managed identities.",
                )
            data["enforce_access_to_connection_secrets"] = False
        else:
            data["user_assigned_identity"] = ""
        return data

    def endpoint_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "auth_type": data["auth_type"],
            "identity_type": data["identity_type"],
            "user_assigned_identity": data["user_assigned_identity"].strip(),
            "enforce_access_to_connection_secrets": data["enforce_access_to_connection_secrets"],
            "tags": data["tags"],
            "project": self.project,
        }


class DeploymentForm(StepForm):
    tags = TagsField(label="Tags", required=False)
    request_timeout_ms = forms.IntegerField(
        label="Request timeout (ms)", initial=services.DEPLOYMENT_DEFAULTS["request_timeout_ms"]
    )
    max_concurrent_requests_per_instance = forms.IntegerField(
        label="Max concurrent requests per instance",
        initial=services.DEPLOYMENT_DEFAULTS["max_concurrent_requests_per_instance"],
    )
    app_insights_enabled = forms.BooleanField(label="Application Insights diagnostics", required=False)
    environment = forms.CharField(label="Environment", required=False, max_length=300)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_azure = draft_provider(self.draft) == Provider.AZUREML
        self.fields["environment"].widget.attrs["placeholder"] = "azureml:<name>:<version>"

    def clean(self):
        data = super().clean()
        if data.get("environment") and not self.on_azure:
            self.add_error(
                "environment", "A custom environment is for Azure Machine Learning endpoints; this one runs here."
            )
        valid = {name: value for name, value in data.items() if name not in self.errors}
        try:
            services.clean_deployment_settings(self.flow_version, valid)
        except ValidationError as exc:
            _service_errors(self, exc)
        return data


def connection_field(name: str) -> str:
    return f"connection__{name}"


class OutputsForm(StepForm):
    selected_outputs = forms.MultipleChoiceField(
        label="Outputs",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Select at least one output."},
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        outputs = self.flow_version.outputs
        self.fields["selected_outputs"].choices = [
            (name, f"{name} ({spec.get('type', 'string')})") for name, spec in outputs.items()
        ]
        self.fields["selected_outputs"].initial = list(outputs)
        # Where the deployment runs decides which connections it can use: the project's here, the workspace's
        # on Azure ML.
        self.provider = provider_named(draft_provider(self.draft))
        self.existing = existing = self.provider.connection_types(self.flow_version.flow.project)
        self.connections = []
        for entry in self.flow_version.connections:
            name = entry["name"]
            compatible = sorted(c for c, t in existing.items() if not entry.get("types") or t in entry["types"])
            choices = [("", f"{name} (inherited from the flow)")]
            choices += [(c, f"{c} ({existing[c]})") for c in compatible if c != name]
            field = forms.ChoiceField(label=name, required=False, choices=choices)
            self.fields[connection_field(name)] = field
            self.connections.append({**entry, "field": connection_field(name), "exists": name in existing})

    def clean(self):
        data = super().clean()
        overrides = self.overrides(data)
        for problem in self.provider.connection_problems(
            self.flow_version, overrides, self.flow_version.flow.project, self.existing
        ):
            self.add_error(self._connection_field_of(problem, overrides), problem)
        return data

    def _connection_field_of(self, problem: str, overrides: dict[str, str]) -> str | None:
        """The field of the connection a problem is about (its message names the connection), beside which
        it shows; None if it names none."""
        for entry in self.flow_version.connections:
            target = overrides.get(entry["name"]) or entry["name"]
            if problem.startswith(f"Connection '{target}'") and connection_field(entry["name"]) in self.fields:
                return connection_field(entry["name"])
        return None

    def connection_errors(self) -> list[str]:
        """Every connection problem, wherever it shows."""
        errors = list(self.non_field_errors())
        for entry in self.connections:
            errors += list(self.errors.get(entry["field"], []))
        return errors

    def overrides(self, data: dict | None = None) -> dict[str, str]:
        data = self.cleaned_data if data is None else data
        result = {}
        for entry in self.flow_version.connections:
            value = data.get(connection_field(entry["name"]))
            if value:
                result[entry["name"]] = value
        return result

    def bound_connections(self):
        return [{**entry, "bound": self[entry["field"]]} for entry in self.connections]


FORMS = {"basic": BasicForm, "endpoint": EndpointForm, "deployment": DeploymentForm, "outputs": OutputsForm}


def identity_warnings(forms: dict[str, StepForm], draft) -> list[str]:
    """What the endpoint's identity will lack to run this flow here, said before Create rather than at Validating.
    On Azure ML the identity's rights are Azure RBAC's (the endpoint page lists them)."""
    if draft_provider(draft) != Provider.LOCAL or not forms["basic"].is_valid():
        return []
    endpoint = forms["basic"].endpoint
    if "endpoint" in forms:
        endpoint_form = forms["endpoint"]
        if not endpoint_form.is_valid():
            return []
        data = endpoint_form.cleaned_data
        if data["identity_type"] == IdentityType.SYSTEM and data["enforce_access_to_connection_secrets"]:
            return []  # granted at creation when the deploying user holds the role (the services say if not)
        identity = ManagedIdentity.objects.filter(project=endpoint_form.project, name=data["user_assigned_identity"])
        endpoint = Endpoint(
            name=forms["basic"].cleaned_data.get("endpoint_name") or "new",
            project=endpoint_form.project,
            identity_type=data["identity_type"],
            user_assigned_identity=identity.first(),
        )
    if endpoint is None:
        return []
    missing = identities.missing_roles(endpoint, draft.flow_version)
    return [identities.missing_role_message(endpoint, role, scope) for role, scope in missing]


def draft_provider(draft) -> str:
    """Where the draft's deployment runs: the new endpoint's choice, or the existing endpoint's provider."""
    basic = draft.raw("basic") or {}
    if uses_new_endpoint(draft):
        chosen = (basic.get("provider") or [""])[0]
        return chosen if chosen in Provider.values else Provider.LOCAL
    name = (basic.get("existing_endpoint") or [""])[0]
    endpoint = Endpoint.objects.filter(name=name).only("provider").first()
    return endpoint.provider if endpoint is not None else Provider.LOCAL


def uses_new_endpoint(draft) -> bool:
    return (draft.raw("basic") or {}).get("endpoint_mode", ["new"]) == ["new"]


def blank_form(step: str, draft) -> StepForm:
    """The step's form for a step not saved yet: its defaults, and what the draft was started with."""
    return FORMS[step](draft=draft, initial=draft.preset(step))


def stored_form(step: str, draft) -> StepForm:
    """The step's form bound to what the user saved (or to its defaults if skipped), validated."""
    raw = draft.raw(step)
    data = MultiValueDict(raw) if raw is not None else blank_form(step, draft).initial_data()
    form = FORMS[step](data, draft=draft)
    form.is_valid()
    return form


def all_forms(draft) -> dict[str, StepForm]:
    """Every step's stored form, validated again (the endpoint step only for a new endpoint)."""
    forms = {"basic": stored_form("basic", draft)}
    if uses_new_endpoint(draft):
        forms["endpoint"] = stored_form("endpoint", draft)
    forms["deployment"] = stored_form("deployment", draft)
    forms["outputs"] = stored_form("outputs", draft)
    return forms
