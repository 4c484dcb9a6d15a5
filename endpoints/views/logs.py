"""A deployment's Logs tab: an instance's log (choose the instance and the number of lines, follow it live)
and the deployment's events."""

from __future__ import annotations

import uuid
from typing import NamedTuple
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from endpoints import logs as instance_logs
from endpoints.models import Deployment, Instance, Provider
from endpoints.providers import ProviderError, provider_for
from endpoints.views.common import get_polled_deployment, page_context
from workspace.access import Action

FOLLOW_EVERY = "2s"


@login_required
@require_GET
def logs(request, endpoint: str, name: str):
    deployment = get_polled_deployment(request, endpoint, name, Action.READ_DATA)  # a log can hold inputs
    if isinstance(deployment, HttpResponse):
        return deployment
    error = None
    try:
        lines = instance_logs.parse_lines(request.GET.get("lines"))
    except ValueError as exc:
        lines, error = instance_logs.DEFAULT_LINES, str(exc)
    if deployment.endpoint.provider == Provider.AZUREML:
        instances = list(AZURE_CONTAINERS)
        chosen = _chosen_container(request)
        log, error = _azure_log(deployment, chosen, lines, error)
    else:
        instances = instance_logs.readable_instances(deployment)
        chosen = _chosen_instance(request, deployment, instances)
        log = None if error or chosen is None else instance_logs.tail(chosen.log_path, lines)
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
            "log": log,
            "events": deployment.events.all(),
        }
    )
    template = "endpoints/deployment_logs.html"
    if request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request:
        template += "#log"
    return render(request, template, context)


class Container(NamedTuple):
    """An Azure ML deployment's container whose log `az ml online-deployment get-logs` reads."""

    id: str
    label: str


AZURE_CONTAINERS = (
    Container("inference-server", "Inference server (Azure ML)"),
    Container("storage-initializer", "Storage initializer (Azure ML)"),
)


def _chosen_container(request) -> Container:
    wanted = request.GET.get("instance", "").strip() or AZURE_CONTAINERS[0].id
    for container in AZURE_CONTAINERS:
        if container.id == wanted:
            return container
    raise Http404(f"Azure ML deployments have no container {wanted!r}.")


def _azure_log(deployment: Deployment, container: Container, lines: int, error: str | None):
    """The container's log from Azure, or Azure's error in place of it."""
    if error:
        return None, error
    try:
        return provider_for(deployment.endpoint).logs(deployment, lines, container.id), None
    except ProviderError as exc:
        return None, str(exc)


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


def _label(instance: Instance | Container) -> str:
    if isinstance(instance, Container):
        return instance.label
    return f"Instance {instance.ordinal} · generation {instance.generation} · {instance.state}"


def _query(chosen: Instance | Container | None, lines: int) -> str:
    params = {"instance": str(chosen.id)} if chosen else {}
    return urlencode({**params, "lines": lines, "follow": "on"})
