"""Sign-in with Microsoft Entra ID: OpenID Connect's authorization code flow with PKCE, through msal.

msal makes the flow (state, nonce, PKCE) and checks state and nonce when the browser comes back; this module
then checks the ID token itself (signature against the provider's keys, issuer, audience, expiry; msal no longer
does) and finds or creates the local user by the token's object id (`oid`), through EntraAccount.
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from dataclasses import dataclass
from typing import Any

import jwt
import msal
import requests

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from workspace import audit
from workspace.access import RANK
from workspace.models import EntraAccount, Membership, Project, ProjectRole

logger = logging.getLogger(__name__)

DEFAULT_AUTHORITY = "https://login.microsoftonline.com/{tenant}/v2.0"
HTTP_TIMEOUT = 15
CLOCK_SKEW = 120  # seconds, as msal allows
USERNAME_MAX = 150


class SignInError(Exception):
    """The sign-in cannot finish; the message is for the person signing in."""


@dataclass(frozen=True)
class EntraSettings:
    tenant_id: str
    client_id: str
    client_secret: str
    authority: str
    ca_bundle: str


def current() -> EntraSettings | None:
    """The configured Entra ID application, or None when tenant, client id or secret is missing."""
    tenant = getattr(settings, "FLOWDEPLOY_ENTRA_TENANT_ID", "")
    client_id = getattr(settings, "FLOWDEPLOY_ENTRA_CLIENT_ID", "")
    secret = getattr(settings, "FLOWDEPLOY_ENTRA_CLIENT_SECRET", "")
    if not (tenant and client_id and secret):
        return None
    authority = getattr(settings, "FLOWDEPLOY_ENTRA_AUTHORITY", "") or DEFAULT_AUTHORITY.format(tenant=tenant)
    ca_bundle = getattr(settings, "FLOWDEPLOY_ENTRA_CA_BUNDLE", "")
    return EntraSettings(tenant, client_id, secret, authority.rstrip("/"), ca_bundle)


def configured() -> bool:
    return current() is not None


def _http_client(config: EntraSettings) -> requests.Session:
    """A session that trusts the configured CA file. `verify` is bound to every request, so a
    REQUESTS_CA_BUNDLE in the environment cannot replace it (requests prefers that over session.verify)."""
    session = requests.Session()
    session.request = functools.partial(  # type: ignore[method-assign]
        session.request, timeout=HTTP_TIMEOUT, verify=config.ca_bundle or True
    )
    return session


def _application(config: EntraSettings) -> tuple[msal.ConfidentialClientApplication, requests.Session]:
    http = _http_client(config)
    try:
        app = msal.ConfidentialClientApplication(
            config.client_id,
            client_credential=config.client_secret,
            oidc_authority=config.authority,
            instance_discovery=False,
            http_client=http,
        )
    except (ValueError, requests.RequestException) as exc:
        raise SignInError(f"Microsoft Entra ID cannot be reached at {config.authority}: {exc}") from exc
    return app, http


def begin(redirect_uri: str) -> dict[str, Any]:
    """Start a sign-in: the flow to keep in the session; send the browser to flow["auth_uri"]."""
    config = current()
    if config is None:
        raise SignInError("Sign-in with Microsoft is not configured.")
    app, _ = _application(config)
    # The answer comes back in the query string, not as a form post: the browser would not send the session
    # cookie (SameSite=Lax) on the provider's cross-site POST, and the session holds the flow. The code in
    # the URL is single-use and useless without the PKCE verifier, which never leaves the server.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended")
        return app.initiate_auth_code_flow(scopes=[], redirect_uri=redirect_uri, response_mode="query")


def finish(flow: dict[str, Any], auth_response: dict[str, str]) -> dict[str, Any]:
    """Finish a sign-in with what the provider sent back: the verified ID token's claims.

    Raises SignInError for a forged or replayed answer (state), a wrong nonce, an error from the provider
    or an ID token that does not check out."""
    config = current()
    if config is None:
        raise SignInError("Sign-in with Microsoft is not configured.")
    if "error" in auth_response:
        description = auth_response.get("error_description") or auth_response["error"]
        raise SignInError(f"Microsoft Entra ID refused the sign-in: {description}")
    app, http = _application(config)
    try:
        result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    except ValueError as exc:  # state missing or different: not the answer to our request
        raise SignInError("The sign-in answer does not match this browser's sign-in (state). Try again.") from exc
    except RuntimeError as exc:  # the ID token's nonce is not ours: a replayed token
        raise SignInError("The ID token was not issued for this sign-in (nonce). Try again.") from exc
    except requests.RequestException as exc:
        raise SignInError(f"Microsoft Entra ID cannot be reached: {exc}") from exc
    if "error" in result:
        description = result.get("error_description") or result["error"]
        raise SignInError(f"Microsoft Entra ID refused the sign-in: {description}")
    id_token = result.get("id_token")
    if not id_token:
        raise SignInError("Microsoft Entra ID sent no ID token.")
    return _verified_claims(config, http, id_token)


def _verified_claims(config: EntraSettings, http: requests.Session, id_token: str) -> dict[str, Any]:
    try:
        discovery = http.get(f"{config.authority}/.well-known/openid-configuration").json()
        keys = jwt.PyJWKSet.from_dict(http.get(discovery["jwks_uri"]).json())
        header = jwt.get_unverified_header(id_token)
        key = next((k for k in keys.keys if k.key_id == header.get("kid")), None)
        if key is None and len(keys.keys) == 1 and not header.get("kid"):
            key = keys.keys[0]
        if key is None:
            raise SignInError("The ID token is signed with a key Microsoft Entra ID does not publish.")
        unverified = jwt.decode(id_token, options={"verify_signature": False})
        # Multi-tenant authorities publish "https://login.microsoftonline.com/{tenantid}/v2.0" as the issuer.
        issuer = discovery["issuer"].replace("{tenantid}", str(unverified.get("tid", "")))
        claims = jwt.decode(
            id_token,
            key=key,
            algorithms=["RS256", "RS384", "RS512", "PS256"],
            audience=config.client_id,
            issuer=issuer,
            leeway=CLOCK_SKEW,
            options={"require": ["exp", "iat", "iss", "aud"]},
        )
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise SignInError(f"Microsoft Entra ID's signing keys cannot be read: {exc}") from exc
    except jwt.PyJWTError as exc:
        raise SignInError(f"The ID token does not check out: {exc}") from exc
    if not claims.get("oid"):
        raise SignInError("The ID token has no object id (oid): sign in with a work or school account.")
    return claims


def _unique_username(wanted: str) -> str:
    User = get_user_model()
    base = re.sub(r"[^\w.@+-]", "", wanted)[: USERNAME_MAX - 4] or "entra-user"
    name, n = base, 1
    while User.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def user_for(claims: dict[str, Any]) -> Any:
    """The local user for a verified ID token: matched by object id; created on the first sign-in, with no
    project membership (an Owner adds them). Raises SignInError for a deactivated user."""
    object_id, tenant_id = str(claims["oid"]), str(claims.get("tid", ""))
    try:
        with transaction.atomic():
            account = EntraAccount.objects.select_related("user").filter(object_id=object_id).first()
            if account is None:
                wanted = claims.get("preferred_username") or claims.get("email") or object_id
                user = get_user_model().objects.create_user(
                    _unique_username(str(wanted)),
                    email=str(claims.get("email") or ""),
                    first_name=str(claims.get("given_name") or "")[:150],
                    last_name=str(claims.get("family_name") or "")[:150],
                )
                user.set_unusable_password()
                user.save(update_fields=["password"])
                account = EntraAccount.objects.create(user=user, object_id=object_id, tenant_id=tenant_id)
                user.entra_first_sign_in = True
    except IntegrityError:  # the same person's first sign-in finished in another request just now
        account = EntraAccount.objects.select_related("user").get(object_id=object_id)
    if not account.user.is_active:
        raise SignInError("This account is deactivated. Ask the site administrator.")
    EntraAccount.objects.filter(pk=account.pk).update(last_sign_in=timezone.now(), tenant_id=tenant_id)
    grant_claimed_roles(account.user, claims)
    return account.user


def role_map(text: str | None = None) -> dict[str, tuple[str, str]]:
    """FLOWDEPLOY_ENTRA_ROLE_MAP as {claim value: (project, role)}; ValueError naming the entry that is wrong."""
    text = settings.FLOWDEPLOY_ENTRA_ROLE_MAP if text is None else text
    mapping = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        value, _, target = entry.partition("=")
        project, _, role = target.strip().partition(":")
        if not value.strip() or not project or role not in ProjectRole.values:
            raise ValueError(
                f"FLOWDEPLOY_ENTRA_ROLE_MAP: {entry!r} is not <app role or group id>=<project>:<role>, with role one "
                f"of {', '.join(ProjectRole.values)}."
            )
        mapping[value.strip()] = (project, role)
    return mapping


def grant_claimed_roles(user: Any, claims: dict[str, Any]) -> list[str]:
    """Give `user` the project roles its token's app roles (`roles`) and groups (`groups`) map to: at least that
    role, never less than an Owner gave. Returns what changed, as "project: role"; each change is audited."""
    mapping = role_map()
    claimed = [str(v) for key in ("roles", "groups") for v in (claims.get(key) or []) if str(v) in mapping]
    wanted: dict[str, str] = {}
    for value in claimed:
        project, role = mapping[value]
        if RANK[role] > RANK.get(wanted.get(project, ""), 0):
            wanted[project] = role
    changed = []
    for name, role in sorted(wanted.items()):
        project = Project.objects.filter(name=name).first()
        if project is None:
            logger.warning("FLOWDEPLOY_ENTRA_ROLE_MAP names project %r, which does not exist", name)
            continue
        membership = Membership.objects.filter(user=user, project=project).first()
        if membership is not None and RANK[membership.role] >= RANK[role]:
            continue
        Membership.objects.update_or_create(user=user, project=project, defaults={"role": role})
        audit.record(user, "member.from_entra", user.username, project=project, role=role)
        changed.append(f"{name}: {role}")
    user.__dict__.pop("_project_roles", None)
    return changed
