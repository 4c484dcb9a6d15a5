"""Keys and tokens for scoring, shared by the studio (which issues them) and the gateway (which checks them).

Plain Python: the gateway imports this without Django.

- Keys are random (32 bytes, url-safe). The control plane publishes only their SHA-256 digests; the
  gateway hashes what it is given and compares digests in constant time.
- Tokens are `<payload>.<signature>`: url-safe base64 of JSON {"ep": endpoint, "iat": issued, "exp": expires,
  "rat": refresh-after} and an HMAC-SHA256 of it. They expire after an hour, like Azure ML tokens.
- Routing documents (serving/routing.py) carry an HMAC-SHA256 made with `routing_key()`, so a process
  that can write to Redis but does not know the secret cannot redirect an endpoint's traffic.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time

TOKEN_LIFETIME = 3600
TOKEN_REFRESH_AFTER = 1800


def signing_key(secret: str | None = None) -> bytes:
    """The token signing key, derived from FLOWDEPLOY_SECRET_KEY, else from the studio's secret key.

    The studio's key is found as the studio's settings find it (serving/secret_key.py: DJANGO_SECRET_KEY,
    else the key file), so a gateway started by hand or by compose signs like the studio. No key, or a
    published one, raises SecretKeyError: there is no built-in fallback.
    """
    from serving import secret_key

    base = (secret or os.environ.get("FLOWDEPLOY_SECRET_KEY", "")).strip()
    if base:
        secret_key.refuse_public(base, "FLOWDEPLOY_SECRET_KEY")
    else:
        base = secret_key.find()
    return hashlib.sha256(b"flowdeploy-scoring-token\0" + base.encode()).digest()


def routing_key(secret: str | None = None) -> bytes:
    """The key routing documents are signed with: from the same secret as `signing_key`, its own label.

    Derived from `signing_key`'s result, so it follows wherever that finds its secret; the HMAC is one-way,
    so a routing key tells nothing about the token key.
    """
    return hmac.new(signing_key(secret), b"flowdeploy-routing\0", hashlib.sha256).digest()


def new_key() -> str:
    return secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(presented: str, digests: list[str]) -> bool:
    """Constant time in the key; every published digest is compared, matching or not."""
    candidate = key_digest(presented)
    found = False
    for digest in digests:
        found |= hmac.compare_digest(candidate, digest)
    return found


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(endpoint: str, key: bytes, now: float | None = None) -> dict:
    """A token for one endpoint, with Azure's fields: accessToken, tokenType, expiryTimeUtc, refreshAfterTimeUtc."""
    issued = int(now if now is not None else time.time())
    claims = {"ep": endpoint, "iat": issued, "exp": issued + TOKEN_LIFETIME, "rat": issued + TOKEN_REFRESH_AFTER}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    return {
        "accessToken": f"{payload}.{signature}",
        "tokenType": "Bearer",
        "expiryTimeUtc": claims["exp"],
        "refreshAfterTimeUtc": claims["rat"],
    }


def token_endpoint(token: str, key: bytes, now: float | None = None) -> str | None:
    """The endpoint a valid, unexpired token was issued for; None for anything else."""
    try:
        payload, signature = token.split(".", 1)
        expected = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature):
            return None
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError):  # TypeError: compare_digest refuses non-ASCII text
        return None
    if not isinstance(claims, dict) or claims.get("exp", 0) <= (now if now is not None else time.time()):
        return None
    return claims.get("ep")
