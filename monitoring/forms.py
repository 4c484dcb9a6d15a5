from django import forms

from monitoring.models import MAX_RETENTION_DAYS, MIN_SAMPLING_PERCENT

DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]


class RecordFilterForm(forms.Form):
    """The records browser's filters; times are UTC, like the folders."""

    start = forms.DateTimeField(
        label="From (UTC)",
        required=False,
        input_formats=DATETIME_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    end = forms.DateTimeField(
        label="To (UTC)",
        required=False,
        input_formats=DATETIME_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    request_id = forms.CharField(label="Request ID", required=False, max_length=200, strip=True)

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            self.add_error("end", "To must be after From.")
        return data


class PolicyForm(forms.Form):
    """A deployment's sampling rate and retention; the rules are monitoring.services.clean_policy's."""

    sampling_percent = forms.FloatField(
        label="Sampling rate (%)",
        widget=forms.NumberInput(attrs={"min": MIN_SAMPLING_PERCENT, "max": 100, "step": "any"}),
        help_text="The share of scored requests whose inputs and outputs are collected.",
    )
    retention_days = forms.IntegerField(
        label="Retention (days)",
        widget=forms.NumberInput(attrs={"min": 1, "max": MAX_RETENTION_DAYS, "step": 1}),
        help_text="Collected hours older than this are removed.",
    )
