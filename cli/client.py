"""A thin httpx client for /api/v1/: JSON in, JSON out, API errors raised with their message as is."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from cli.config import API_PREFIX
from cli.errors import ApiFailure, CliError

DEFAULT_TIMEOUT = 60.0


def segment(value: str) -> str:
    return quote(str(value), safe="")


def failure(response: httpx.Response) -> ApiFailure:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    message = error.get("message") if isinstance(error, dict) else None
    if not message:
        text = response.text.strip()[:500]
        message = f"HTTP {response.status_code} from {response.request.url}" + (f": {text}" if text else "")
    return ApiFailure(message, response.status_code, error.get("code", ""), error.get("field"))


class Api:
    def __init__(self, url: str, token: str | None = None, project: str | None = None) -> None:
        self.url = url
        self.token = token
        self.project = project  # where new flows, connections and endpoints go (None: the studio decides)

    def _send(self, method: str, path: str, timeout: float, accept: str, **kwargs: Any) -> httpx.Response:
        headers = {"Accept": accept}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = httpx.request(method, self.url + API_PREFIX + path, headers=headers, timeout=timeout, **kwargs)
        except httpx.TimeoutException:
            raise CliError(f"The studio at {self.url} did not answer within {timeout:.0f} s.") from None
        except httpx.HTTPError as exc:
            raise CliError(f"Cannot reach the studio at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise failure(response)
        return response

    def download(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """A file the API answers (a zip), as bytes."""
        return self._send("GET", path, timeout, "application/zip, application/json").content

    def request(self, method: str, path: str, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> Any:
        response = self._send(method, path, timeout, "application/json", **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(f"The studio answered {method} {path} with something that is not JSON.") from None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)
