"""A deployment's Logs tab: an instance's log (choose the instance and the number of lines, follow it live)
and the deployment's events."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from endpoints import logs as instance_logs
from endpoints.models import Deployment, Instance
from endpoints.views.common import get_polled_deployment, page_context
from workspace.access import Action

FOLLOW_EVERY = "2s"


@login_required
@require_GET
def logs(request, endpoint: str, name: str):
    deployment = get_polled_deployment(request, endpoint, name, Action.READ_DATA)  # a log can hold inputs
    if isinstance(deployment, HttpResponse):
        return deployment
    instances = instance_logs.readable_instances(deployment)
    chosen = _chosen_instance(request, deployment, instances)
    error = None
    try:
        lines = instance_logs.parse_lines(request.GET.get("lines"))
    except ValueError as exc:
        lines, error = instance_logs.DEFAULT_LINES, str(exc)
    follow = request.GET.get("follow") == "on"
    url = reverse("endpoints:logs", args=[deployment.endpoint.name, deployment.name])
    context = page_context(request, deployment, "logs")
    context.update(
        {
            "logs_url": url,
            "instances": [(instance, _label(instance)) for instance in instances],
            "chosen": chosen,
            "chosen_label": _label(chosen) if chosen else "",
            "lines": lines,
            "lines_value": request.GET.get("lines", lines) if error else lines,
            "line_choices": instance_logs.LINE_CHOICES,
            "max_lines": instance_logs.MAX_LINES,
            "follow": follow,
            "error": error,
            # Following polls the fragment with the same choices; without an instance yet, it polls for
            # the first one to start.
            "poll_url": f"{url}?{_query(chosen, lines)}" if follow and not error else "",
            "every": FOLLOW_EVERY,
            "log": None if error or chosen is None else instance_logs.tail(chosen.log_path, lines),
            "events": deployment.events.all(),
        }
    )
    template = "endpoints/deployment_logs.html"
    if request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request:
        template += "#log"
    return render(request, template, context)


def _chosen_instance(request, deployment: Deployment, instances: list[Instance]) -> Instance | None:
    """The instance named by ?instance= (404 when it is not one of this deployment's readable ones), or
    the default one."""
    raw = request.GET.get("instance", "").strip()
    if not raw:
        return instance_logs.default_instance(deployment, instances)
    try:
        wanted = uuid.UUID(raw)
    except ValueError:
        raise Http404(f"Deployment {deployment} has no instance {raw!r}.") from None
    for instance in instances:
        if instance.id == wanted:
            return instance
    raise Http404(f"Deployment {deployment} has no instance {raw!r} with a log.")


def _label(instance: Instance) -> str:
    return f"Instance {instance.ordinal} · generation {instance.generation} · {instance.state}"


def _query(chosen: Instance | None, lines: int) -> str:
    params = {"instance": str(chosen.id)} if chosen else {}
    return urlencode({**params, "lines": lines, "follow": "on"})
