"""The audit log: who did what to which object. Never pass secrets in `detail`."""

import json
import logging
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from workspace.models import AuditEvent

logger = logging.getLogger(__name__)

# A belt-and-braces guard: detail keys with these names are masked, whatever their value.
_SECRET_NAMES = {"api_key", "key", "password", "secret", "token", "access_token", "value", "values"}


def _plain(detail: dict[str, Any]) -> dict[str, Any]:
    masked = {k: ("***" if k.lower() in _SECRET_NAMES else v) for k, v in detail.items()}
    return json.loads(json.dumps(masked, cls=DjangoJSONEncoder, default=str))


def record(actor: Any, action: str, target: str, **detail: Any) -> None:
    """Write one audit event. `actor` may be a user, AnonymousUser or None (the system)."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    AuditEvent.objects.create(actor=user, action=action, target=str(target)[:300], detail=_plain(detail))
    logger.debug("audit %s %s by %s", action, target, user.get_username() if user else "system")
