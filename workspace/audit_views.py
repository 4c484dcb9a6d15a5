"""The audit log page, for Owners: events of the projects they own and their own sign-ins (all for superusers)."""

import datetime
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from workspace import access, audit
from workspace.access import AccessDenied, Action
from workspace.models import AuditEvent, Project

PAGE_SIZE = 50


def owned_projects(user: Any) -> list[Project]:
    """The projects whose access the user manages (every project for a superuser)."""
    return [p for p in access.visible_projects(user).order_by("name") if access.allows(user, Action.MANAGE_ACCESS, p)]


def visible_events(user: Any, projects: list[Project]) -> QuerySet[AuditEvent]:
    """Superusers see every event; an Owner sees their projects' events and their own sign-ins and sign-outs
    (and failed sign-ins under their username)."""
    events = AuditEvent.objects.select_related("actor", "project")
    if user.is_superuser:
        return events
    own_sign_ins = Q(actor=user, action__in=audit.SIGN_IN_ACTIONS) | Q(
        action=audit.SIGN_IN_FAILED, target=user.get_username()
    )
    return events.filter(Q(project__in=projects) | own_sign_ins)


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(label="Action", required=False)
    actor = forms.CharField(label="Actor", required=False, max_length=150, help_text="Username")
    project = forms.ChoiceField(label="Project", required=False)
    date_from = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, actions: list[str], projects: list[Project], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [("", "All actions")] + [(a, a) for a in actions]
        self.fields["project"].choices = [("", "All projects")] + [(p.name, p.name) for p in projects]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", "To must be on or after From.")
        return data

    def apply(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        """Narrow the events by the filters that are valid; an invalid one is shown and left out."""
        data = self.cleaned_data if self.is_bound else {}
        if data.get("action"):
            events = events.filter(action=data["action"])
        if data.get("actor"):
            events = events.filter(actor__username__iexact=data["actor"].strip())
        if data.get("project"):
            events = events.filter(project__name=data["project"])
        tz = datetime.UTC
        if data.get("date_from"):
            events = events.filter(created_at__gte=datetime.datetime.combine(data["date_from"], datetime.time(), tz))
        if data.get("date_to"):
            end = datetime.datetime.combine(data["date_to"] + datetime.timedelta(days=1), datetime.time(), tz)
            events = events.filter(created_at__lt=end)
        return events


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    projects = owned_projects(request.user)
    if not projects and not request.user.is_superuser:
        raise AccessDenied("The audit log is for Owners of a project. Ask an Owner of your project for the role.")
    events = visible_events(request.user, projects)
    actions = sorted(set(events.order_by().values_list("action", flat=True).distinct()))
    form = AuditFilterForm(request.GET or None, actions=actions, projects=projects)
    if form.is_bound:
        form.is_valid()  # cleaned_data keeps the valid filters; the others are shown with their error
    page = Paginator(form.apply(events), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "workspace/audit.html",
        {"form": form, "page": page, "events": page.object_list, "query": query.urlencode()},
    )
