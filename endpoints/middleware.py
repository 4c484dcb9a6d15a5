"""A provider's refusal (Azure said no, or could not be reached) met while a page was handled: the user gets the
provider's message, not a server error page."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme

from endpoints.providers import ProviderError


class ProviderErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, ProviderError):
            return None
        if getattr(request, "htmx", False) or request.headers.get("Accept", "").startswith("text/plain"):
            return HttpResponse(str(exception), status=502, content_type="text/plain; charset=utf-8")
        messages.error(request, str(exception))
        back = request.headers.get("Referer", "")
        if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
            back = "/"
        return redirect(back)
