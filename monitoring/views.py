"""Data assets: the list of deployments' collected data, a records browser per deployment, downloads, the policy."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from endpoints.models import Endpoint
from monitoring import collected, services
from monitoring.forms import PolicyForm, RecordFilterForm
from workspace import access, projects
from workspace.access import Action

PAGE_SIZE = 50
DEFAULT_RANGE = timedelta(hours=24)
MINUTE = timedelta(minutes=1)


# Access: workspace/access.py, on the project of the asset's endpoint. Members see that a data asset exists, its
# size and policy (Reader); its records and files are what requests carried (Contributor, Action.READ_DATA);
# changing how a deployment collects is a change to the deployment (Contributor). Data left by an endpoint that
# is gone belongs to no project any more: only superusers see it.


def _project(asset: services.DataAsset):
    if asset.row is not None:
        return asset.row.endpoint.project_id
    return Endpoint.objects.filter(name=asset.endpoint).values_list("project_id", flat=True).first()


def _can(user, action: Action, asset: services.DataAsset) -> bool:
    project = _project(asset)
    if project is None:
        return getattr(user, "is_superuser", False)
    return access.allows(user, action, project)


def _get_asset(request: HttpRequest, endpoint: str, deployment: str, action: Action = Action.VIEW):
    asset = services.get_asset(endpoint, deployment)
    if asset is None:
        raise Http404(f"No data asset for deployment {endpoint}/{deployment}.")
    project = _project(asset)
    if project is None:
        if not request.user.is_superuser:
            raise Http404(f"No data asset for deployment {endpoint}/{deployment}.")
    else:
        projects.require(request, action, project)
    return asset


# Pages


@login_required
@require_GET
def asset_list(request):
    rows = []
    for asset in services.list_assets():
        if _can(request.user, Action.VIEW, asset):
            size, files = asset.usage()
            rows.append({"asset": asset, "size": size, "files": files, "newest": asset.newest_hour()})
    return render(request, "monitoring/data_assets.html", {"rows": rows})


@login_required
@require_GET
def asset_detail(request, endpoint: str, deployment: str):
    asset = _get_asset(request, endpoint, deployment)
    policy = asset.policy
    form = PolicyForm(initial={"sampling_percent": policy.sampling_percent, "retention_days": policy.retention_days})
    return _render_detail(request, asset, form)


def _render_detail(request, asset: services.DataAsset, policy_form: PolicyForm, status: int = 200):
    filters = RecordFilterForm(request.GET)
    context = {
        "asset": asset,
        "filters": filters,
        "policy_form": policy_form,
        "can_change_policy": _can(request.user, Action.DEPLOY, asset),
        "can_read_data": _can(request.user, Action.READ_DATA, asset),
        "losses": services.losses(asset.endpoint, asset.deployment),
        "page_url": reverse("monitoring:asset", args=[asset.endpoint, asset.deployment]),
    }
    size, files = asset.usage()
    context.update({"size": size, "file_count": files})
    if filters.is_valid() and context["can_read_data"]:
        start, end, request_id = _range(filters)
        before = _before(request.GET.get("before", ""))
        page = collected.records(asset.folder, start, min(end, before) if before else end, request_id, PAGE_SIZE)
        hours = collected.hours(asset.folder, start, end)
        query = {k: v for k, v in request.GET.items() if k in ("start", "end", "request_id") and v}
        older = None
        if page.more and page.records:
            older = "?" + urlencode({**query, "before": page.records[-1].time.isoformat()})
        context.update(
            {
                "start": start,
                "end": end,
                "request_id": request_id,
                "page": page,
                "older_query": older,
                "hours": hours,
                "range_size": sum(hour.size for hour in hours),
                "range_query": urlencode({"start": _minute(start), "end": _minute(end - MINUTE)}),
            }
        )
    template = "monitoring/data_asset.html"
    if request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request:
        template += "#results"
    return render(request, template, context, status=status)


def _range(filters: RecordFilterForm) -> tuple[datetime, datetime, str]:
    """[start, end) in UTC: `To` includes its whole minute; empty fields mean the last 24 hours up to now."""
    data = filters.cleaned_data
    end = data.get("end")
    end = end + MINUTE if end else timezone.now() + MINUTE
    start = data.get("start") or end - MINUTE - DEFAULT_RANGE
    return start, end, data.get("request_id") or ""


def _before(raw: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return value if value.tzinfo else timezone.make_aware(value)


def _minute(value: datetime) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%dT%H:%M")


@login_required
@require_POST
def policy(request, endpoint: str, deployment: str):
    asset = _get_asset(request, endpoint, deployment, Action.DEPLOY)
    form = PolicyForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.set_policy(
                asset.endpoint, asset.deployment, data["sampling_percent"], data["retention_days"], request.user
            )
        except ValidationError as error:
            form.add_error(None, error)
    if form.errors:
        return _render_detail(request, asset, form, status=422)
    messages.success(
        request,
        f"Saved: {data['sampling_percent']:g}% of requests collected, kept {data['retention_days']} days. "
        "The gateway applies the sampling rate within a few seconds.",
    )
    return redirect("monitoring:asset", asset.endpoint, asset.deployment)


# Downloads


@login_required
@require_GET
def download(request, endpoint: str, deployment: str):
    """A zip of one hour (?hour=2026-12-01T10) or of the hours of a range (?start=...&end=..., as the filters)."""
    asset = _get_asset(request, endpoint, deployment, Action.READ_DATA)
    hour = request.GET.get("hour", "").strip()
    if hour:
        try:
            start = timezone.make_aware(datetime.strptime(hour, "%Y-%m-%dT%H"))
        except ValueError:
            raise Http404(f"{hour!r} is not an hour such as 2026-12-01T10.") from None
        end, label = start + collected.HOUR, start.strftime("%Y%m%d%H")
    else:
        filters = RecordFilterForm(request.GET)
        if not filters.is_valid():
            problems = "; ".join(error for errors in filters.errors.values() for error in errors)
            raise Http404(f"The range is not valid: {problems}")
        start, end, _ = _range(filters)
        label = f"{start:%Y%m%d%H%M}-{end - MINUTE:%Y%m%d%H%M}"
    hours = collected.hours(asset.folder, start, end)
    if not hours:
        raise Http404("No data was collected in this range.")
    name = f"{asset.endpoint}-{asset.deployment}-{label}"
    archive = tempfile.TemporaryFile()  # noqa: SIM115 (FileResponse closes it once sent)
    collected.write_zip(asset.folder, hours, archive, name)
    archive.seek(0)
    return FileResponse(archive, as_attachment=True, filename=f"{name}.zip", content_type="application/zip")


@login_required
@require_GET
def download_file(request, endpoint: str, deployment: str, relative: str):
    """One JSONL file, named by its path in the deployment's folder (model_inputs/YYYY/MM/DD/HH/<gateway>.jsonl)."""
    asset = _get_asset(request, endpoint, deployment, Action.READ_DATA)
    path = collected.file_path(asset.folder, relative)
    if path is None:
        raise Http404(f"No collected file {relative!r}.")
    kind, year, month, day, hour, gateway = relative.split("/")
    filename = f"{asset.endpoint}-{asset.deployment}-{kind}-{year}{month}{day}{hour}-{gateway}"
    return FileResponse(path.open("rb"), as_attachment=True, filename=filename, content_type="application/x-ndjson")
