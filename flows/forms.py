import json

from django import forms
from django.conf import settings

from flows.models import FlowVersion


class ZipImportForm(forms.Form):
    file = forms.FileField(label="Flow zip file", help_text="A zip of a folder with flow.dag.yaml at its top.")
    name = forms.CharField(
        label="Flow name", required=False, max_length=64, help_text="Leave blank to use the zip file's name."
    )


class SampleImportForm(forms.Form):
    sample = forms.ChoiceField(label="Sample flow")
    name = forms.CharField(
        label="Flow name", required=False, max_length=64, help_text="Leave blank to use the sample's name."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["sample"].choices = [(name, name) for name in sample_names()]


class FolderImportForm(forms.Form):
    path = forms.CharField(label="Folder on the server", help_text="An absolute path to a folder with flow.dag.yaml.")
    name = forms.CharField(label="Flow name", required=False, max_length=64)


class BulkRunForm(forms.Form):
    data = forms.FileField(label="Data file (JSONL)", required=False, help_text="One JSON object per line.")
    use_flow_data = forms.BooleanField(label="Use the flow's data.jsonl", required=False)

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("data") and not cleaned.get("use_flow_data"):
            self.add_error("data", "Choose a JSONL data file, or use the flow's data.jsonl.")
        return cleaned


def sample_names() -> list[str]:
    root = settings.FLOWDEPLOY_SAMPLES_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "flow.dag.yaml").is_file())


def _field_for(name: str, spec: dict) -> forms.Field:
    kind = spec.get("type", "string")
    default = spec.get("default")
    required = default is None
    help_text = spec.get("description") or f"Type: {kind}"
    common = {"label": name, "required": required, "help_text": help_text}
    if kind == "int":
        return forms.IntegerField(initial=default, **common)
    if kind == "double":
        return forms.FloatField(initial=default, **common)
    if kind == "bool":
        return forms.BooleanField(initial=bool(default), **{**common, "required": False})
    if kind in {"list", "object"}:
        initial = json.dumps(default, indent=2) if default is not None else ""
        return forms.CharField(initial=initial, widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}), **common)
    initial = "" if default is None else str(default)
    widget = forms.Textarea(attrs={"rows": 3}) if len(initial) > 80 else forms.TextInput()
    return forms.CharField(initial=initial, widget=widget, strip=False, **{**common, "required": False})


class FlowInputsForm(forms.Form):
    """A form built from a flow's inputs; the types are checked again by the service."""

    def __init__(self, flow_version: FlowVersion, *args, exclude: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        for name, spec in flow_version.form_inputs().items():
            if name not in exclude:
                self.fields[name] = _field_for(name, spec)
