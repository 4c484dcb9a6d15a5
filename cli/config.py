"""Where the studio is, the token to use and the project new things go to: ~/.config/flowdeploy/config.json
(mode 600), or the FLOWDEPLOY_URL, FLOWDEPLOY_TOKEN and FLOWDEPLOY_PROJECT environment variables, which win
over the file (and --project wins over both)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cli.errors import CliError

API_PREFIX = "/api/v1"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "flowdeploy" / "config.json"


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    if not url.startswith(("http://", "https://")):
        raise CliError(f"--url: give the studio's address, like http://127.0.0.1:8000, not {url!r}.")
    return url


@dataclass
class Settings:
    url: str
    token: str
    project: str | None = None


def read_file() -> dict:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"Cannot read {path}: {exc}. Run `flowdeploy login` again.") from None
    return data if isinstance(data, dict) else {}


def load(project: str | None = None) -> Settings:
    """The studio and token; `project` is --project's value, which wins over the environment and the file."""
    stored = read_file()
    url = os.environ.get("FLOWDEPLOY_URL") or stored.get("url") or ""
    token = os.environ.get("FLOWDEPLOY_TOKEN") or stored.get("token") or ""
    if not url or not token:
        raise CliError(
            "Not logged in: run `flowdeploy login --url URL --username NAME --password PASSWORD` "
            "(or set FLOWDEPLOY_URL and FLOWDEPLOY_TOKEN)."
        )
    project = project or os.environ.get("FLOWDEPLOY_PROJECT") or stored.get("project") or None
    return Settings(normalize_url(url), token, project)


def save(url: str, token: str, username: str = "", project: str | None = None) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"url": url, "token": token, "username": username, **({"project": project} if project else {})}
    text = json.dumps(data, indent=2) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    path.chmod(0o600)  # also when the file existed with wider permissions
    return path
