"""How an instance gets its connections: promptflow's HTTP connection provider, pointed at the studio.

promptflow (promptflow-core's `HttpConnectionProvider`) fetches them once, while the serving app loads
in gunicorn's master (`--preload`), before the instance answers its readiness probe; workers are forked
with them. So each start of an instance gets its own token, minted for that start, which expires soon
after (FLOWDEPLOY_PROVIDER_TOKEN_LIFETIME, by default the probe timeout plus a minute). It names the
instance, its deployment, generation and restart count; the studio answers only while that instance
exists, belongs to them, has not crashed since and is not stopped or draining, and only to direct calls
from FLOWDEPLOY_PROVIDER_ALLOWED_NETWORKS.

The provider sends no header of its own, but httpx turns the URL's user info into an `Authorization:
Basic` header, so the token travels in a header, never in the path that the studio's request log and
uvicorn's access log write. When a fetch fails, promptflow's traceback in the instance's own log does
show the URL with the token; by then the start has failed, and the token dies with it (the instance
is stopped, or its crash is recorded) or expires.

On top of that, the endpoint's identity (its system-assigned one, or its user-assigned one) must hold
Connection Secrets Reader on the endpoint's project at the moment of the fetch (workspace/identities.py);
else the studio answers 403 naming the identity, the role and where an Owner grants it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
import time
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core import signing

from endpoints.models import LIVE_INSTANCE_STATES, DeploymentState, Instance
from flows.models import FlowVersion
from workspace import identities
from workspace.connections import connection_type_names
from workspace.models import BuiltInRole, RoleScope

SALT = "flowdeploy.connection-provider.v2"
USERNAME = "instance"
# Headers a proxy adds: the provider is for instances calling directly, never through a reverse proxy.
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def mint_token(instance: Instance, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "i": str(instance.pk),
        "d": instance.deployment_id,
        "g": instance.generation,
        "r": instance.restarts,  # a crash recorded since this start makes its token worthless
        "exp": issued + settings.FLOWDEPLOY_PROVIDER_TOKEN_LIFETIME,
        "n": secrets.token_urlsafe(6),  # every start's token differs, even within one second
    }
    return signing.Signer(salt=SALT, sep=".").sign_object(claims)


def provider_url(instance: Instance) -> str:
    """The endpoint promptflow calls, for this start of this instance: the token is the URL's password."""
    studio = urlsplit(settings.FLOWDEPLOY_STUDIO_URL)
    host = studio.netloc.rpartition("@")[2]
    netloc = f"{USERNAME}:{mint_token(instance)}@{host}"
    return urlunsplit((studio.scheme, netloc, f"{studio.path}/internal/connection-provider", "", ""))


def token_from(authorization: str) -> str:
    """The token in an `Authorization: Basic` header, or ""."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


def instance_for(token: str, now: float | None = None) -> Instance | None:
    """The instance a token was minted for, if the token is good and that instance may still fetch connections.

    None unless: the signature is the studio's, it has not expired, the instance exists, belongs to the
    deployment and generation named, has not crashed since (its restart count is the token's), is not
    stopped or draining, and its generation is the deployment's current or live one (a retired
    generation's instances fail even before they are marked stopped).
    """
    try:
        claims = signing.Signer(salt=SALT, sep=".").unsign_object(token)
        instance_id, deployment_id, generation, expires = claims["i"], claims["d"], claims["g"], claims["exp"]
        restarts = claims["r"]
    except (signing.BadSignature, ValueError, TypeError, KeyError):
        return None
    if not isinstance(expires, int) or expires <= (now if now is not None else time.time()):
        return None
    instance = (
        Instance.objects.select_related(
            "deployment__flow_version", "deployment__endpoint__project", "deployment__endpoint__user_assigned_identity"
        )
        .filter(pk=instance_id, deployment_id=deployment_id, generation=generation, restarts=restarts)
        .filter(state__in=LIVE_INSTANCE_STATES)
        .exclude(deployment__state=DeploymentState.DELETING)
        .first()
    )
    if instance is None:
        return None
    if generation not in (instance.deployment.generation, instance.deployment.live_generation):
        return None
    return instance


def secrets_refusal(instance: Instance) -> str:
    """Why the instance's endpoint identity may not read connection secrets now, or "": it must hold Connection
    Secrets Reader on the endpoint's project at the moment of the fetch, so a revoked role stops the next start."""
    endpoint = instance.deployment.endpoint
    principal = identities.principal_of(endpoint)
    role = BuiltInRole.CONNECTION_SECRETS_READER
    if identities.holds(endpoint.project_id, principal.principal_id, role, RoleScope.PROJECT):
        return ""
    return identities.missing_role_message(endpoint, role, RoleScope.PROJECT)


def allowed_caller(meta: dict) -> bool:
    """A direct call (no proxy's headers) from an address in FLOWDEPLOY_PROVIDER_ALLOWED_NETWORKS."""
    if any(meta.get(header) for header in PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(meta.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    networks = settings.FLOWDEPLOY_PROVIDER_ALLOWED_NETWORKS
    return any(address in ipaddress.ip_network(network, strict=False) for network in networks)


def resolve(flow_version: FlowVersion, overrides: dict[str, str], name: str) -> str | None:
    """The workspace connection that answers for `name` in this flow, or None if the flow does not use it."""
    if name not in flow_version.connection_names():
        return None
    return overrides.get(name) or name


def connection_problems(
    flow_version: FlowVersion,
    overrides: dict[str, str],
    existing: dict[str, str] | None = None,
    where: str = "",
    advice: str = "Create it on the Connections page, or override it with another connection.",
) -> list[str]:
    """What stops the flow from getting its connections: each must exist where it runs (`existing`, name ->
    promptflow type; by default the flow's project), of a type its nodes accept ("" when unknown)."""
    if existing is None:
        existing = connection_type_names(flow_version.flow.project_id)
    where = where or f"project '{flow_version.flow.project}'"
    problems = []
    for entry in flow_version.connections:
        target = overrides.get(entry["name"]) or entry["name"]
        nodes = ", ".join(f"'{n}'" for n in entry.get("nodes", []))
        if target not in existing:
            problems.append(f"Connection '{target}' (used by node {nodes}) does not exist in {where}. {advice}")
        elif entry.get("types") and existing[target] and existing[target] not in entry["types"]:
            problems.append(
                f"Connection '{target}' is a {existing[target]}, but node {nodes} needs one of "
                f"{', '.join(entry['types'])}."
            )
    return problems
