"""System checks of the workspace's settings: a bad FLOWDEPLOY_ENTRA_ROLE_MAP stops the studio at start, naming
the entry, instead of failing the first sign-in."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register


@register()
def entra_role_map(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    from workspace import entra

    try:
        entra.role_map()
    except ValueError as exc:
        return [Error(str(exc), id="workspace.E001")]
    return []
