"""A deployment's Test tab: a form or JSON editor for a standard flow, a chat window for a chat flow.

Requests go through the real scoring gateway (Azure's scoring URI for an endpoint on Azure ML), pinned to
this deployment, with the endpoint's credential added here on the server (endpoints/scoring.py): the page's
JavaScript never sees a key.
The chat streams: the view passes the gateway's chunks on as server-sent events of its own
(`delta` with a piece of the answer, then `done`, or `error` with the gateway's message).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from http import HTTPStatus

from asgiref.sync import sync_to_async

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, JsonResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_POST

from endpoints import scoring
from endpoints.models import Deployment
from endpoints.views.common import get_deployment, page_context
from flows.forms import FlowInputsForm
from flows.models import FlowVersion
from flows.services import coerce_inputs
from workspace import access
from workspace.access import AccessDenied, Action

EDITORS = ("form", "json")
# Form names of the page's own controls; a hyphen is never in a flow input's name, so they cannot clash.
EDITOR_FIELD = "fd-editor"
JSON_FIELD = "fd-json"
HISTORY_FIELD = "fd-chat-history"


@login_required
@require_http_methods(["GET", "POST"])
def test(request, endpoint: str, name: str):
    deployment = get_deployment(request, endpoint, name, Action.TEST if request.method == "POST" else Action.VIEW)
    flow_version = deployment.flow_version
    context = page_context(request, deployment, "test")
    context["can_test"] = access.can(request.user, Action.TEST, deployment)
    if flow_version.is_chat and request.method == "GET":
        context.update(_chat_context(flow_version))
        return render(request, "endpoints/deployment_test.html", context)

    editor = request.POST.get(EDITOR_FIELD) or request.GET.get("editor")
    editor = editor if editor in EDITORS else "form"
    context.update(editor=editor, editor_field=EDITOR_FIELD, json_field=JSON_FIELD)
    context["input_types"] = {field: spec.get("type", "string") for field, spec in flow_version.form_inputs().items()}
    if request.method == "POST":
        context.update(_tested(request.POST, deployment, editor))
    else:
        form = FlowInputsForm(flow_version)
        context["fields"] = [(form[field], "") for field in form.fields]
        context["json_text"] = _pretty(_default_body(flow_version))
    template = "endpoints/deployment_test.html"
    if request.htmx and request.method == "POST":
        template += "#result"
    return render(request, template, context)


@login_required
@require_POST
def chat(request, endpoint: str, name: str):
    """One chat turn, streamed back as server-sent events; input errors answer JSON like the gateway's."""
    deployment = get_deployment(request, endpoint, name)
    flow_version = deployment.flow_version
    try:
        access.require_on(request.user, Action.TEST, deployment)
    except AccessDenied as exc:
        return _json_error(403, "Forbidden", exc.message)
    if not flow_version.is_chat:
        return _json_error(400, "NotAChatFlow", f"Flow {flow_version} is not a chat flow; use the Test form.")
    try:
        body = _chat_body(flow_version, request.POST)
    except ValidationError as exc:
        return _json_error(400, "BadInput", " ".join(_messages(exc).values()))
    answer = scoring.stream(deployment.endpoint, body, deployment.name)
    return _event_stream(request, _chat_events(answer, deployment, body))


# --- standard flows ------------------------------------------------------------------------------


def _tested(data: QueryDict, deployment: Deployment, editor: str) -> dict:
    """Check the request from the editor in use; send it only when it is valid. The editors keep what
    was typed, for a page rendered again without JavaScript."""
    flow_version = deployment.flow_version
    form = FlowInputsForm(flow_version, data if editor == "form" else None)
    json_text = data.get(JSON_FIELD, "") if editor == "json" else _pretty(_default_body(flow_version))
    if editor == "json":
        body, errors = _body_from_json(flow_version, json_text)
    else:
        body, errors = _body_from_form(flow_version, data)
    context = {
        "fields": [(form[field], errors.get(field, "")) for field in form.fields],
        "json_text": json_text,
        "json_error": errors.get(JSON_FIELD, ""),
        "errors": list(errors.values()),
        "request_text": _pretty(body) if body is not None else "",
    }
    if body is not None:
        context["result"] = result = scoring.score(deployment.endpoint, body, deployment.name)
        context.update(_result_context(result))
    return context


def _default_body(flow_version: FlowVersion) -> dict:
    """The JSON editor's first content: every input with its default (an empty string when it has none)."""
    body = {}
    for field, spec in flow_version.form_inputs().items():
        default = spec.get("default")
        body[field] = default if default is not None else ("" if spec.get("type", "string") == "string" else None)
    return body


def _raw_values(flow_version: FlowVersion, data: QueryDict, exclude: tuple[str, ...] = ()) -> dict:
    """The form's values as typed; an unticked checkbox is sent as nothing, which means false."""
    values = {}
    for field, spec in flow_version.form_inputs().items():
        if field in exclude:
            continue
        if spec.get("type") == "bool":
            values[field] = "true" if data.get(field) not in (None, "", "false") else "false"
        else:
            values[field] = data.get(field)
    return values


def _body_from_form(flow_version: FlowVersion, data: QueryDict) -> tuple[dict | None, dict[str, str]]:
    try:
        return coerce_inputs(flow_version, _raw_values(flow_version, data)), {}
    except ValidationError as exc:
        return None, _messages(exc)


def _body_from_json(flow_version: FlowVersion, text: str) -> tuple[dict | None, dict[str, str]]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, {JSON_FIELD: f"The JSON is not valid: {exc.msg} at line {exc.lineno}, column {exc.colno}."}
    if not isinstance(values, dict):
        return None, {JSON_FIELD: 'The JSON must be an object of the flow\'s inputs, like {"name": value}.'}
    try:
        return coerce_inputs(flow_version, values), {}
    except ValidationError as exc:
        return None, _messages(exc)


def _result_context(result: scoring.ScoreResult) -> dict:
    try:
        phrase = HTTPStatus(result.status).phrase
    except ValueError:
        phrase = ""
    body = result.body
    return {
        "status_phrase": phrase,
        "response_text": _pretty(body) if not isinstance(body, str) else body,
    }


# --- chat flows ----------------------------------------------------------------------------------


def _chat_context(flow_version: FlowVersion) -> dict:
    chat_input = flow_version.chat_input
    return {
        "chat_input": chat_input,
        "chat_output": _chat_output(flow_version),
        "chat_input_default": flow_version.inputs.get(chat_input, {}).get("default") or "",
        "panel": FlowInputsForm(flow_version, exclude=(chat_input,)),
        "history_field": HISTORY_FIELD,
    }


def _chat_output(flow_version: FlowVersion) -> str:
    return flow_version.chat_output or next(iter(flow_version.outputs), "")


def _chat_body(flow_version: FlowVersion, data: QueryDict) -> dict:
    """The Inputs panel, the question and the chat so far, checked against the flow's inputs."""
    chat_input = flow_version.chat_input
    question = data.get(chat_input, "")
    if not question.strip():
        raise ValidationError({chat_input: f"Type a message for '{chat_input}'."})
    try:
        history = json.loads(data.get(HISTORY_FIELD) or "[]")
    except json.JSONDecodeError:
        raise ValidationError({HISTORY_FIELD: "The chat history is not valid JSON."}) from None
    if not isinstance(history, list) or not all(
        isinstance(turn, dict) and isinstance(turn.get("inputs"), dict) and isinstance(turn.get("outputs"), dict)
        for turn in history
    ):
        raise ValidationError({HISTORY_FIELD: "The chat history must be a list of {inputs, outputs} turns."})
    values = _raw_values(flow_version, data, exclude=(chat_input,))
    values[chat_input] = question
    if flow_version.chat_history:
        values[flow_version.chat_history] = history
    return coerce_inputs(flow_version, values)


def _chat_events(answer: scoring.ScoreStream, deployment: Deployment, body: dict) -> Iterator[bytes]:
    """The gateway's chunks as `delta` events, then `done` with the turn to add to chat_history."""
    flow_version = deployment.flow_version
    chat_output = _chat_output(flow_version)
    pieces: list[str] = []
    outputs: dict = {}
    for data in answer:
        for output, value in (data if isinstance(data, dict) else {chat_output: data}).items():
            if output != chat_output:
                outputs[output] = value
                continue
            piece = value if isinstance(value, str) else json.dumps(value)
            pieces.append(piece)
            yield _event("delta", {"text": piece})
    result = answer.result
    if result is None:
        return
    about = {
        "status": result.status,
        "deployment": result.deployment,
        "request_id": result.request_id,
        "latency_ms": result.latency_ms,
    }
    if not result.ok:
        yield _event("error", {**about, "code": result.error_code, "message": result.error_message})
        return
    text = "".join(pieces)
    outputs[chat_output] = text
    turn_inputs = {name: value for name, value in body.items() if name != flow_version.chat_history}
    turn = {"inputs": turn_inputs, "outputs": outputs}
    yield _event("done", {**about, "chunks": result.chunks, "answer": text, "turn": turn})


def _event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _event_stream(request: HttpRequest, events: Iterator[bytes]) -> StreamingHttpResponse:
    """Django 5.2 buffers a sync iterator under ASGI (and an async one under WSGI): give each server
    the kind it streams, over the same sync iterator."""
    content = _pulled_in_a_thread(events) if isinstance(request, ASGIRequest) else events
    response = StreamingHttpResponse(content, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _pulled_in_a_thread(events: Iterator[bytes]) -> AsyncIterator[bytes]:
    pull = sync_to_async(next, thread_sensitive=False)
    try:
        while (chunk := await pull(events, None)) is not None:
            yield chunk
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            with contextlib.suppress(ValueError):  # still running in its thread: it ends when collected
                await sync_to_async(close, thread_sensitive=False)()


# --- both ----------------------------------------------------------------------------------------


def _messages(exc: ValidationError) -> dict[str, str]:
    return {field: " ".join(messages) for field, messages in exc.message_dict.items()}


def _json_error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
