"""How an instance gets its connections: promptflow's HTTP connection provider, pointed at the studio.

The URL carries a signed token naming the deployment; the studio answers only for the connections
that deployment's flow uses, after its overrides.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing

from flows.models import FlowVersion
from workspace.connections import connection_type_names

SALT = "flowdeploy.connection-provider"


def provider_url(deployment) -> str:
    token = signing.dumps({"d": deployment.pk, "g": deployment.generation}, salt=SALT)
    return f"{settings.FLOWDEPLOY_STUDIO_URL}/internal/connection-provider/{token}"


def deployment_id_from(token: str) -> int | None:
    try:
        return int(signing.loads(token, salt=SALT)["d"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None


def resolve(flow_version: FlowVersion, overrides: dict[str, str], name: str) -> str | None:
    """The workspace connection that answers for `name` in this flow, or None if the flow does not use it."""
    if name not in flow_version.connection_names():
        return None
    return overrides.get(name) or name


def connection_problems(flow_version: FlowVersion, overrides: dict[str, str]) -> list[str]:
    existing = connection_type_names()
    problems = []
    for entry in flow_version.connections:
        target = overrides.get(entry["name"]) or entry["name"]
        nodes = ", ".join(f"'{n}'" for n in entry.get("nodes", []))
        if target not in existing:
            problems.append(
                f"Connection '{target}' (used by node {nodes}) does not exist. "
                "Create it on the Connections page, or override it with another connection."
            )
        elif entry.get("types") and existing[target] not in entry["types"]:
            problems.append(
                f"Connection '{target}' is a {existing[target]}, but node {nodes} needs one of "
                f"{', '.join(entry['types'])}."
            )
    return problems
