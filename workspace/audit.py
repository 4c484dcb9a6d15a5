"""The audit log: who did what to which object, from where. Never pass secrets in `detail`.

Sign-in, failed sign-in and sign-out are recorded here too, from Django's auth signals (connected when this
module is imported; workspace/admin.py imports it, so it always is once Django has started).
"""

import ipaddress
import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.core.serializers.json import DjangoJSONEncoder
from django.dispatch import receiver
from django.http import HttpRequest

from workspace.models import AuditEvent, Project

logger = logging.getLogger(__name__)

# A belt-and-braces guard: detail keys with these names are masked, whatever their value.
_SECRET_NAMES = {"api_key", "key", "password", "secret", "token", "access_token", "value", "values"}

SIGN_IN = "user.sign_in"
SIGN_IN_FAILED = "user.sign_in_failed"
SIGN_OUT = "user.sign_out"
SIGN_IN_ACTIONS = (SIGN_IN, SIGN_IN_FAILED, SIGN_OUT)

# The address of the request being handled (SourceAddressMiddleware), so that services deep below a view or an
# API call record where a change came from without being handed the request.
_source: ContextVar[str | None] = ContextVar("audit_source", default=None)


def _plain(detail: dict[str, Any]) -> dict[str, Any]:
    masked = {k: ("***" if k.lower() in _SECRET_NAMES else v) for k, v in detail.items()}
    return json.loads(json.dumps(masked, cls=DjangoJSONEncoder, default=str))


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    networks = getattr(settings, "FLOWDEPLOY_TRUSTED_PROXIES", [])
    return any(address in ipaddress.ip_network(network, strict=False) for network in networks)


def source_address(request: HttpRequest) -> str | None:
    """The caller's address: the connection's peer (REMOTE_ADDR). X-Forwarded-For is believed only from
    peers listed in FLOWDEPLOY_TRUSTED_PROXIES, read from the right, skipping further trusted proxies."""
    peer = _address(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return None
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if not forwarded or not _trusted(peer):
        return str(peer)
    for hop in reversed(forwarded.split(",")):
        address = _address(hop)
        if address is None:
            break  # a hop we cannot read: stop at the last address we can vouch for
        peer = address
        if not _trusted(address):
            break
    return str(peer)


def record(
    actor: Any,
    action: str,
    target: str,
    *,
    request: HttpRequest | None = None,
    project: Project | int | None = None,
    **detail: Any,
) -> None:
    """Write one audit event. `actor` may be a user, AnonymousUser or None (the system); `request` gives the
    caller's address (by default the address of the request being handled, if any); `project` (a Project or
    its id) lets the project's Owners see the event."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    project_id = project.pk if isinstance(project, Project) else project
    AuditEvent.objects.create(
        actor=user,
        action=action,
        target=str(target)[:300],
        detail=_plain(detail),
        project_id=project_id,
        source=source_address(request) if request is not None else _source.get(),
    )
    logger.debug("audit %s %s by %s", action, target, user.get_username() if user else "system")


@receiver(user_logged_in, dispatch_uid="workspace.audit.signed_in")
def _signed_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    method = getattr(user, "sign_in_method", "password")
    record(user, SIGN_IN, user.get_username(), request=request, method=method)


@receiver(user_login_failed, dispatch_uid="workspace.audit.sign_in_failed")
def _sign_in_failed(sender: Any, credentials: dict, request: HttpRequest | None = None, **kwargs: Any) -> None:
    username = str(credentials.get("username", ""))[:150]
    record(None, SIGN_IN_FAILED, username, request=request, method="password")


@receiver(user_logged_out, dispatch_uid="workspace.audit.signed_out")
def _signed_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record(user, SIGN_OUT, user.get_username(), request=request)


class SourceAddressMiddleware:
    """Keeps the caller's address for record() while a request is handled (pages and the API alike)."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        token = _source.set(source_address(request))
        try:
            return self.get_response(request)
        finally:
            _source.reset(token)
