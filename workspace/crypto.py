"""Symmetric encryption of small JSON documents (connection secrets) at rest.

The Fernet key is derived with HKDF-SHA256 from settings.FLOWDEPLOY_SECRET_KEY, or from
settings.SECRET_KEY when that is not set. Changing the key makes saved secrets unreadable:
decrypt_json then raises SecretsUnreadable, which callers turn into a message.
"""

import base64
import functools
import json

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

_SALT = b"flowdeploy.workspace.crypto"
_INFO = b"connection-secrets/fernet/v1"


class SecretsUnreadable(Exception):
    """Saved secrets cannot be decrypted with the current key (the key changed or the data is damaged)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "The saved secrets cannot be decrypted with the current FLOWDEPLOY_SECRET_KEY "
            "(or SECRET_KEY). Restore the previous key or enter the secrets again."
        )


def _key_material() -> str:
    return getattr(settings, "FLOWDEPLOY_SECRET_KEY", "") or settings.SECRET_KEY


@functools.lru_cache(maxsize=4)
def _fernet_for(material: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(material.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


@sensitive_variables("data", "plain")
def encrypt_json(data: dict) -> str:
    """Encrypt a JSON-serialisable dict; returns a Fernet token (ASCII text)."""
    plain = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return _fernet_for(_key_material()).encrypt(plain).decode("ascii")


@sensitive_variables("plain")
def decrypt_json(token: str) -> dict:
    """Decrypt a token made by encrypt_json. An empty token is an empty dict.

    Raises SecretsUnreadable when the token was made with another key or is damaged; the
    message never contains the token or any secret.
    """
    if not token:
        return {}
    try:
        plain = _fernet_for(_key_material()).decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError, ValueError):
        raise SecretsUnreadable() from None
    try:
        value = json.loads(plain)
    except ValueError:
        raise SecretsUnreadable("The saved secrets are damaged (not JSON).") from None
    if not isinstance(value, dict):
        raise SecretsUnreadable("The saved secrets are damaged (not a JSON object).")
    return value
