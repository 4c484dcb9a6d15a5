"""Sign in with Microsoft: send the browser to Entra ID, and take it back (workspace/entra.py does the checks)."""

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME, login
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET

from workspace import audit, entra
from workspace.models import Membership

logger = logging.getLogger(__name__)

FLOW_KEY = "entra_flow"
NEXT_KEY = "entra_next"
NO_PROJECT = (
    "You are signed in, but you are not a member of any project yet. "
    "Ask an Owner of a project to add you; until then there is nothing to see here."
)


def _safe_next(request: HttpRequest, value: str) -> str:
    if value and url_has_allowed_host_and_scheme(value, {request.get_host()}, request.is_secure()):
        return value
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def _refuse(request: HttpRequest, reason: str) -> HttpResponse:
    audit.record(None, audit.SIGN_IN_FAILED, "", request=request, method="entra", reason=reason)
    messages.error(request, reason)
    return redirect("login")


def sign_in(request: HttpRequest) -> HttpResponse:
    """Django's sign-in page (local accounts), with "Sign in with Microsoft" when Entra ID is configured."""
    return LoginView.as_view(extra_context={"entra_enabled": entra.configured()})(request)


@require_GET
def entra_start(request: HttpRequest) -> HttpResponse:
    """Begin "Sign in with Microsoft": remember the flow (state, nonce, PKCE verifier) in the session."""
    if not entra.configured():
        raise Http404("Sign-in with Microsoft is not configured.")
    redirect_uri = request.build_absolute_uri(reverse("workspace:entra_callback"))
    try:
        flow = entra.begin(redirect_uri)
    except entra.SignInError as exc:
        logger.warning("Entra sign-in cannot start: %s", exc)
        messages.error(request, str(exc))
        return redirect("login")
    request.session[FLOW_KEY] = flow
    request.session[NEXT_KEY] = _safe_next(request, request.GET.get(REDIRECT_FIELD_NAME, ""))
    return redirect(flow["auth_uri"])


@require_GET
def entra_callback(request: HttpRequest) -> HttpResponse:
    """Where Entra ID sends the browser back: check the answer, find or create the user, sign them in."""
    if not entra.configured():
        raise Http404("Sign-in with Microsoft is not configured.")
    flow = request.session.pop(FLOW_KEY, None)
    next_url = request.session.pop(NEXT_KEY, "")
    if not flow:
        return _refuse(request, "This sign-in expired or was already used. Sign in again.")
    try:
        claims = entra.finish(flow, request.GET.dict())
        user = entra.user_for(claims)
    except entra.SignInError as exc:
        return _refuse(request, str(exc))
    user.sign_in_method = "entra"  # for the audit event that login() sends
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    if not user.is_superuser and not Membership.objects.filter(user=user).exists():
        messages.info(request, NO_PROJECT)
    return redirect(_safe_next(request, next_url))
