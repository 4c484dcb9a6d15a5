"""What every API view shares: token (or session) authentication, JSON bodies and errors as JSON.

Errors are `{"error": {"code": ..., "message": ..., "field": ...}}` with the right status. Views raise
ApiError (or the ValidationError, ConnectionSpecError and FlowImportError the services raise) and
`api_view` turns them into that shape; nothing a user can cause becomes a 500.

Who may do what is workspace/access.py's one rule: `find` looks an object up among the user's projects
(404 when it is not there, the same answer whether it exists elsewhere or not at all) and checks the
action; AccessDenied becomes 403 with its message, which names the role that is missing.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from api.models import PersonalAccessToken
from endpoints.providers import ProviderError
from flows.importing import FlowImportError
from workspace import access
from workspace.access import AccessDenied, Action
from workspace.connections import ConnectionSpecError

logger = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
JSON_TYPES = ("application/json", "")
KIND_NAMES = {str: "a string", int: "a number", bool: "true or false", dict: "an object", list: "a list"}
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.extra = extra


def not_found(message: str) -> ApiError:
    return ApiError(404, "NotFound", message)


def conflict(message: str, field: str | None = None) -> ApiError:
    return ApiError(409, "Conflict", message, field)


def bad_request(message: str, field: str | None = None, code: str = "ValidationError") -> ApiError:
    return ApiError(400, code, message, field)


def error_response(status: int, code: str, message: str, field: str | None = None, **extra: Any) -> JsonResponse:
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    error.update({k: v for k, v in extra.items() if v is not None})
    response = JsonResponse({"error": error}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="flowdeploy"'
    return response


def ok(data: Any, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, safe=False)


def _validation_details(exc: ValidationError, rename: dict[str, str]) -> list[dict[str, str]]:
    if hasattr(exc, "error_dict"):
        return [
            {"field": rename.get(field, field), "message": message}
            for field, messages in exc.message_dict.items()
            for message in messages
        ]
    return [{"field": "", "message": message} for message in exc.messages]


def validation_error(exc: ValidationError, rename: dict[str, str] | None = None) -> ApiError:
    """A service's ValidationError as a 400 naming the (API's name of the) field."""
    details = _validation_details(exc, rename or {})
    first = details[0] if details else {"field": "", "message": "Invalid request."}
    return ApiError(
        400,
        "ValidationError",
        first["message"],
        first["field"] or None,
        details=details if len(details) > 1 else None,
    )


def _spec_error(exc: ConnectionSpecError) -> ApiError:
    details = [{"field": field, "message": m} for field, messages in exc.errors.items() for m in messages]
    first = details[0]
    return ApiError(
        400, "ValidationError", first["message"], first["field"], details=details if len(details) > 1 else None
    )


def _import_error(exc: FlowImportError) -> ApiError:
    return ApiError(
        400,
        exc.code,
        str(exc),
        "file" if exc.code in ("InvalidZip", "UnsafeZip", "TooLarge") else None,
        node=exc.node,
        line=exc.line,
        file=exc.file,
    )


def _bearer(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise ApiError(401, "Unauthorized", "Use 'Authorization: Bearer fdp_...' with a personal access token.")
    return credentials.strip()


def authenticate(request: HttpRequest) -> None:
    """Token first; otherwise the session (the studio's own pages), which must pass the CSRF check."""
    token = _bearer(request)
    if token is not None:
        row = PersonalAccessToken.authenticate(token)
        if row is None:
            raise ApiError(401, "Unauthorized", "The access token is not valid (unknown, expired or revoked).")
        request.user = row.user
        request.api_token = row
        return
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        raise ApiError(401, "Unauthorized", "Authentication required: send 'Authorization: Bearer fdp_...'.")
    if request.method not in SAFE_METHODS:
        check = CsrfViewMiddleware(lambda r: None)
        check.process_request(request)
        refused = check.process_view(request, None, (), {})
        if refused is not None:
            raise ApiError(403, "CsrfFailed", "CSRF check failed for a session-authenticated request.")
    request.api_token = None


def find(request: HttpRequest, action: Action, queryset: QuerySet, missing: str, **lookup: Any) -> Model:
    """The object for `lookup` if the user may do `action` on it.

    Not in one of the user's projects (or not at all): 404 with `missing`, so other projects' names do not
    leak. In one of them but the role is too low: AccessDenied (403, saying which role is needed).
    """
    try:
        return access.fetch(request.user, action, queryset, **lookup)
    except queryset.model.DoesNotExist:
        raise not_found(missing) from None


def forbidden(exc: AccessDenied) -> JsonResponse:
    """AccessDenied as the API answers it: 403 with its message, or 404 when the user is not a member."""
    if not exc.visible:
        return error_response(404, "NotFound", "Not found.")
    return error_response(403, "Forbidden", exc.message)


def parse_json(request: HttpRequest) -> dict:
    if not request.body:
        return {}
    content_type = request.content_type or ""
    if content_type in FORM_TYPES and not request.POST and not request.FILES:
        return {}  # an empty form is an empty body (what some clients send for a POST without data)
    if content_type not in JSON_TYPES and not content_type.endswith("+json"):
        raise ApiError(415, "UnsupportedMediaType", f"Send JSON (Content-Type: application/json), not {content_type}.")
    try:
        data = json.loads(request.body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "InvalidJson", f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "InvalidJson", "The request body must be a JSON object.")
    return data


def api_view(*methods: str, public: bool = False, multipart: bool = False) -> Callable:
    """Allow `methods`, authenticate, parse the JSON body into `request.data`, map errors to JSON.

    `multipart=True` lets a write method take multipart/form-data too (request.data is then {}).
    """

    def decorator(view: Callable) -> Callable:
        @csrf_exempt  # token requests need no CSRF token; session requests are checked in authenticate()
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = error_response(405, "MethodNotAllowed", f"{request.method} is not allowed here.")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                if not public:
                    authenticate(request)
                request.data = {}
                has_body = request.method not in SAFE_METHODS and request.method != "DELETE"
                if has_body and not (multipart and request.content_type == "multipart/form-data"):
                    request.data = parse_json(request)
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error_response(exc.status, exc.code, exc.message, exc.field, **exc.extra)
            except ValidationError as exc:
                error = validation_error(exc)
                return error_response(400, error.code, error.message, error.field, **error.extra)
            except ConnectionSpecError as exc:
                error = _spec_error(exc)
                return error_response(400, error.code, error.message, error.field, **error.extra)
            except FlowImportError as exc:
                error = _import_error(exc)
                return error_response(400, error.code, error.message, error.field, **error.extra)
            except AccessDenied as exc:
                return forbidden(exc)
            except ProviderError as exc:
                return error_response(502, "ProviderError", str(exc))
            except (Http404, ObjectDoesNotExist) as exc:
                return error_response(404, "NotFound", str(exc) or "Not found.")
            except PermissionDenied as exc:
                return error_response(403, "Forbidden", str(exc) or "You may not do this.")
            except Exception:
                logger.exception("API request %s %s failed", request.method, request.path)
                return error_response(500, "InternalError", "The studio failed to handle the request; see its log.")

        wrapper.api_methods = methods
        return wrapper

    return decorator


@csrf_exempt
def unknown_route(request: HttpRequest, rest: str = "") -> JsonResponse:
    return error_response(404, "NotFound", f"No API route {request.path}; see /api/v1/openapi.json.")


def field(data: dict, name: str, kind: type | tuple[type, ...], required: bool = False, default: Any = None) -> Any:
    """One value of a JSON body, of the given type; errors name the field."""
    if name not in data or data[name] is None:
        if required:
            raise bad_request(f"{name}: this field is required.", name)
        return default
    value = data[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if bool not in kinds and isinstance(value, bool) and int in kinds:
        raise bad_request(f"{name}: expected {kinds[0].__name__}, not a boolean.", name)
    if not isinstance(value, kinds):
        names = " or ".join(KIND_NAMES.get(k, k.__name__) for k in kinds)
        raise bad_request(f"{name}: expected {names}.", name)
    return value


def reject_unknown(data: dict, allowed: set[str] | tuple[str, ...], what: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise bad_request(
            f"{unknown[0]}: not a field of {what} (fields: {', '.join(sorted(allowed))}).", unknown[0], "UnknownField"
        )
