"""Where the studio's secret key comes from, the same way for every process that needs it.

1. `DJANGO_SECRET_KEY` from the environment;
2. else the file `FLOWDEPLOY_SECRET_KEY_FILE`, by default `<FLOWDEPLOY_DATA_DIR or ./var>/secret-key`.

`make run` (scripts/run.py) creates that file with a random key on its first start (`ensure_file`), so
the studio, the worker, beat and the gateway all find the same key, whoever starts them. There is no
built-in default: a key everyone can read lets anyone forge what the studio signs.

Plain Python, no Django: the gateway imports it. (It lives here rather than in `config/` because
importing the `config` package starts Celery and Django.)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Keys that were published with the project: never accepted.
PUBLIC_KEYS = frozenset({"flowdeploy-insecure-development-key-change-me", "change-me-to-a-long-random-string"})
HOW_TO_SET = (
    "Set DJANGO_SECRET_KEY to a long random string, e.g. the output of "
    "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`, or write one into {path} "
    "(mode 600; FLOWDEPLOY_SECRET_KEY_FILE names another file). `make run` creates that file on its first start."
)


class SecretKeyError(Exception):
    """No usable key; the message says how to set one."""


def key_file(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    explicit = env.get("FLOWDEPLOY_SECRET_KEY_FILE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    data_dir = env.get("FLOWDEPLOY_DATA_DIR")
    return (Path(data_dir).expanduser().resolve() if data_dir else ROOT / "var") / "secret-key"


def find(environ: Mapping[str, str] | None = None) -> str:
    """The secret key; SecretKeyError when there is none, or it is one of the published ones."""
    env = os.environ if environ is None else environ
    path = key_file(env)
    key, source = env.get("DJANGO_SECRET_KEY", "").strip(), "DJANGO_SECRET_KEY"
    if not key:
        source = str(path)
        try:
            key = path.read_text().strip()
        except FileNotFoundError:
            raise SecretKeyError(
                f"No secret key: DJANGO_SECRET_KEY is not set and {path} does not exist. "
                + HOW_TO_SET.format(path=path)
            ) from None
        except OSError as exc:
            raise SecretKeyError(
                f"The secret key file {path} cannot be read ({exc.strerror}). " + HOW_TO_SET.format(path=path)
            ) from None
        if not key:
            raise SecretKeyError(f"The secret key file {path} is empty. " + HOW_TO_SET.format(path=path))
    refuse_public(key, source, path)
    return key


def refuse_public(key: str, source: str, path: Path | None = None) -> None:
    if key in PUBLIC_KEYS:
        raise SecretKeyError(
            f"{source} holds a published example key, which anyone can use to forge tokens. "
            + HOW_TO_SET.format(path=path or key_file())
        )


def ensure_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """Unless DJANGO_SECRET_KEY is set or the key file exists, create it with a new random key.

    Returns the file when this call created it. The key is written to a private (0600) file created
    exclusively, then linked into place, so a reader never sees a half-written key and two starts at
    once never replace each other's key.
    """
    env = os.environ if environ is None else environ
    if env.get("DJANGO_SECRET_KEY", "").strip():
        return None
    path = key_file(env)
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(50) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(partial, path)
        except FileExistsError:
            return None  # another start created it first: keep that one
        except OSError:  # a file system without hard links: create it exclusively in place
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
                handle.write(partial.read_text())
    finally:
        partial.unlink(missing_ok=True)
    return path
