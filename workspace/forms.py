"""The connection form: parses the page's fields into a ConnectionSpec. Validation is in connections.py."""

import re
from collections.abc import Mapping
from typing import Any

from django import forms

from workspace.connection_types import NAME_MAX_LENGTH, NAME_RULE, ConnectionType, field_specs
from workspace.connections import CUSTOM_FIELD, ConnectionSpec, ConnectionSpecError
from workspace.identities import Principal, member_choices, principal_for_member
from workspace.models import SECRET_MASK, BuiltInRole, Connection, Project, ProjectRole, RoleScope

BLANK_ROWS = 5
MAX_ROWS = 50
KEEP_HELP = "Leave blank to keep the saved key."
_ROW_RE = re.compile(r"^pair-(\d+)-(key|value|secret)$")


def connection_type_from(value: str | None) -> str:
    return value if value in ConnectionType.values else ConnectionType.OPEN_AI


def posted_rows(data: Mapping[str, Any]) -> int:
    """How many custom rows a submitted form had."""
    indexes = [int(m.group(1)) for key in data if (m := _ROW_RE.match(key))]
    return min(max(indexes, default=-1) + 1, MAX_ROWS)


class PairRow:
    def __init__(self, form: "ConnectionForm", index: int) -> None:
        self.index = index
        self.key = form[f"pair-{index}-key"]
        self.value = form[f"pair-{index}-value"]
        self.secret = form[f"pair-{index}-secret"]
        self.saved_secret = index in form.saved_secret_rows


class ConnectionForm(forms.Form):
    """Fields for one connection type. With `instance`, name and type are fixed (edit)."""

    name = forms.CharField(
        label="Connection name",
        required=False,
        help_text=NAME_RULE,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "maxlength": NAME_MAX_LENGTH}),
    )
    type = forms.ChoiceField(label="Connection type", choices=ConnectionType.choices)

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        connection_type: str,
        instance: Connection | None = None,
        rows: int = 0,
        initial: dict | None = None,
    ) -> None:
        self.instance = instance
        self.connection_type = instance.type if instance else connection_type
        self.saved_secret_rows: set[int] = set()
        initial = dict(initial or {})
        initial["type"] = self.connection_type
        if instance is not None:
            initial.update(name=instance.name)
            initial.update(instance.configs)
        super().__init__(data, initial=initial)
        if instance is not None:
            del self.fields["name"]
            del self.fields["type"]
        saved = set(instance.secret_keys) if instance else set()
        for spec in field_specs(self.connection_type):
            attrs = {"autocomplete": "off", "spellcheck": "false"}
            if spec.secret:
                keep = spec.name in saved
                if keep:
                    attrs["placeholder"] = f"{SECRET_MASK} (saved)"
                widget = forms.PasswordInput(attrs={**attrs, "autocomplete": "new-password"}, render_value=False)
                help_text = KEEP_HELP if keep else spec.help
                required = spec.required and not keep
            else:
                if spec.default:
                    attrs["placeholder"] = spec.default
                widget = forms.URLInput(attrs=attrs) if spec.url else forms.TextInput(attrs=attrs)
                help_text = spec.help
                required = spec.required and not spec.default
            if required:
                widget.attrs["required"] = True
            self.fields[spec.name] = forms.CharField(
                label=spec.label,
                required=False,
                help_text=help_text,
                widget=widget,
                initial=spec.default or None,
            )
        if self.connection_type == ConnectionType.CUSTOM:
            self._add_pair_fields(instance, rows)

    def _add_pair_fields(self, instance: Connection | None, rows: int) -> None:
        saved_pairs: list[tuple[str, bool]] = []
        if instance is not None:
            saved_pairs = [(key, False) for key in sorted(instance.configs)]
            saved_pairs += [(key, True) for key in instance.secret_keys]
        count = max(rows, len(saved_pairs) + (2 if saved_pairs else BLANK_ROWS))
        count = min(count, MAX_ROWS)
        posted_secret = {
            i for i in range(count) if self.is_bound and self.data.get(f"pair-{i}-secret") in ("on", "true", "1")
        }
        for i in range(count):
            key, is_secret = saved_pairs[i] if i < len(saved_pairs) else ("", False)
            if is_secret and instance is not None:
                self.saved_secret_rows.add(i)
            value_attrs = {"autocomplete": "off", "spellcheck": "false", "aria-label": f"Value {i + 1}"}
            if i in self.saved_secret_rows:
                value_attrs["placeholder"] = f"{SECRET_MASK} (saved)"
            # A secret is never sent back to the browser: saved ones and posted ones render empty.
            if i in self.saved_secret_rows or i in posted_secret or (is_secret and not self.is_bound):
                value_widget = forms.PasswordInput(attrs={**value_attrs, "autocomplete": "new-password"})
            else:
                value_widget = forms.TextInput(attrs=value_attrs)
            self.fields[f"pair-{i}-key"] = forms.CharField(
                required=False,
                initial=key,
                widget=forms.TextInput(attrs={"aria-label": f"Key {i + 1}", "spellcheck": "false"}),
            )
            self.fields[f"pair-{i}-value"] = forms.CharField(
                required=False,
                strip=False,
                initial=instance.configs.get(key, "") if instance is not None and not is_secret else "",
                widget=value_widget,
            )
            self.fields[f"pair-{i}-secret"] = forms.BooleanField(
                required=False,
                initial=is_secret,
                widget=forms.CheckboxInput(attrs={"aria-label": f"Secret {i + 1}"}),
            )

    @property
    def strong_fields(self) -> list:
        return [self[spec.name] for spec in field_specs(self.connection_type)]

    @property
    def pair_rows(self) -> list[PairRow]:
        count = sum(1 for name in self.fields if name.endswith("-key") and name.startswith("pair-"))
        return [PairRow(self, i) for i in range(count)]

    @property
    def is_custom(self) -> bool:
        return self.connection_type == ConnectionType.CUSTOM

    def to_spec(self) -> ConnectionSpec:
        """The submitted values as a ConnectionSpec (call after is_valid())."""
        data = self.cleaned_data
        name = self.instance.name if self.instance else (data.get("name") or "").strip()
        spec = ConnectionSpec(name=name, type=self.connection_type)
        if self.is_custom:
            for row in self.pair_rows:
                key = (data.get(f"pair-{row.index}-key") or "").strip()
                value = data.get(f"pair-{row.index}-value") or ""
                if not key:
                    if value.strip():
                        self.add_error(None, f"Key-value pairs: row {row.index + 1} has a value but no key.")
                    continue
                is_secret = bool(data.get(f"pair-{row.index}-secret"))
                target = spec.secrets if is_secret else spec.configs
                if key in spec.secrets or key in spec.configs:
                    self.add_error(None, f"Key-value pairs: key {key!r} appears twice.")
                    continue
                target[key] = value.strip() if not is_secret else value
            return spec
        for field_spec in field_specs(self.connection_type):
            value = data.get(field_spec.name) or ""
            (spec.secrets if field_spec.secret else spec.configs)[field_spec.name] = value
        return spec

    def add_spec_errors(self, error: ConnectionSpecError) -> None:
        for name, messages in error.errors.items():
            for message in messages:
                if name in self.fields and name != CUSTOM_FIELD:
                    self.add_error(name, message)
                else:
                    self.add_error(None, message)


# --- access control: managed identities, role assignments, members ------------------------------


class ManagedIdentityForm(forms.Form):
    name = forms.CharField(label="Name", max_length=64, help_text="3 to 64 letters, digits, '-' or '_'.")


class IdentityAzureForm(forms.Form):
    """A user-assigned identity's ids in Azure (identities.set_azure_ids checks them); blank: unknown."""

    azure_resource_id = forms.CharField(
        label="Azure resource ID",
        required=False,
        max_length=400,
        help_text="/subscriptions/…/resourceGroups/…/providers/Microsoft.ManagedIdentity/userAssignedIdentities/…",
    )
    azure_client_id = forms.CharField(label="Azure client ID", required=False, max_length=36)
    azure_principal_id = forms.CharField(
        label="Azure principal ID", required=False, max_length=36, help_text="Its object (principal) ID."
    )


class RoleAssignmentForm(forms.Form):
    """Azure's "Add role assignment", one step at a time: Role, then Members (assign access to a managed identity:
    an endpoint's system-assigned identity or a user-assigned one, and the scope), then Review + assign. A step's
    form holds the fields of that step and of the steps before it, carried along as hidden fields."""

    STEPS = ("role", "members", "review")
    STEP_FIELDS = {
        "role": ("role",),
        "members": ("role", "assign_access_to", "member", "scope"),
        "review": ("role", "assign_access_to", "member", "scope"),
    }

    role = forms.ChoiceField(label="Role", choices=BuiltInRole.choices, widget=forms.RadioSelect)
    assign_access_to = forms.ChoiceField(
        label="Assign access to",
        choices=[("managed_identity", "Managed identity")],
        initial="managed_identity",
        widget=forms.RadioSelect,
    )
    member = forms.ChoiceField(label="Members")
    scope = forms.ChoiceField(label="Scope", choices=RoleScope.choices)

    def __init__(self, *args: Any, project: Project, step: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        self.step = step
        self.principal: Principal | None = None
        self.fields["member"].choices = [("", "Select a managed identity"), *member_choices(project)]
        for name in list(self.fields):
            if name not in self.STEP_FIELDS[step]:
                del self.fields[name]

    def clean(self) -> dict:
        data = super().clean()
        if data.get("member"):
            self.principal = principal_for_member(self.project, data["member"])
            if self.principal is None:
                self.add_error("member", "That identity no longer exists in this project.")
        return data


class MemberAddForm(forms.Form):
    username = forms.CharField(label="User", max_length=150)
    role = forms.ChoiceField(label="Role", choices=ProjectRole.choices, initial=ProjectRole.READER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=ProjectRole.choices)
