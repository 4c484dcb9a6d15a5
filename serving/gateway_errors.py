"""The gateway's error answers, and how an instance's failure maps onto them.

Every error is `{"error": {"code": ..., "message": ...}}` (DESIGN.md, Contracts).

How promptflow's serving app reports problems (promptflow-core 1.18, `promptflow.core._serving`):
a failed flow run and an exception in the app both come back as `{"error": {"code": "UserError" |
"SystemError", "message": ...}}` with HTTP 400 for a UserError and 500 for a SystemError, plus 406
when the flow cannot answer in the media type of the Accept header. The inner error codes are not
in the answer, so the message is all there is to go by. The rule:

- 400 whose message is one of promptflow's input checks (the client sent wrong inputs) stays a
  400 and is passed on as promptflow wrote it. Those messages start with:
  "The input for flow is incorrect." (InputNotFound, InputTypeError), "Failed to parse the flow
  input." (InputParseError), "Required input fields" (MissingRequiredFlowInput) and "Promptflow
  executor received non json data" (JsonPayloadRequiredForMultipleInputFields).
- 406 is passed on as it is (the client asked for a media type the flow does not produce).
- Anything else with a status >= 400 is the flow failing: a node raising ("Execution failure in
  '<node>': (<Type>) <message>"), a built-in tool error (an LLM call failing), a SystemError, or an
  answer that is not promptflow's JSON at all. That becomes a 424 "FlowExecutionFailed" with
  promptflow's message, and promptflow's own code under "innerError".
"""

from __future__ import annotations

import json

JSON_HEADER = (b"content-type", b"application/json")

INPUT_ERROR_PREFIXES = (
    "The input for flow is incorrect.",
    "Failed to parse the flow input.",
    "Required input fields",
    "Promptflow executor received non json data",
)


def error_body(code: str, message: str, inner_code: str | None = None) -> bytes:
    error: dict = {"code": code, "message": message}
    if inner_code:
        error["innerError"] = {"code": inner_code}
    return json.dumps({"error": error}).encode()


def upstream_error(status: int, body: bytes) -> tuple[int, bytes]:
    """The status and body to answer with when an instance answered `status` >= 400 with `body`."""
    code, message = _promptflow_error(body)
    if message is not None and (status == 406 or (status == 400 and message.startswith(INPUT_ERROR_PREFIXES))):
        return status, body
    if message is None:
        text = body[:500].decode(errors="replace").strip()
        message = f"The flow instance answered HTTP {status}" + (f": {text}" if text else ".")
    return 424, error_body("FlowExecutionFailed", message, code)


def _promptflow_error(body: bytes) -> tuple[str | None, str | None]:
    try:
        error = json.loads(body)["error"]
        message = error["message"]
    except (ValueError, KeyError, TypeError):
        return None, None
    if not isinstance(message, str):
        return None, None
    code = error.get("code")
    return (code if isinstance(code, str) else None), message
