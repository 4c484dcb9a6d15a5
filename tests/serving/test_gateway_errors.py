"""How the gateway maps an instance's error answer (promptflow's serving app) onto its own."""

import json

from serving.gateway_errors import error_body, upstream_error


def _promptflow(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def test_it_maps_a_failing_node_to_424_with_promptflows_message():
    """Execution failures become 424 FlowExecutionFailed, promptflow's code kept as innerError."""
    message = "Execution failure in 'fetch_url_parts': (ValueError) not an absolute URL: 'bad'"
    status, body = upstream_error(400, _promptflow("UserError", message))
    assert status == 424
    assert json.loads(body) == {
        "error": {"code": "FlowExecutionFailed", "message": message, "innerError": {"code": "UserError"}}
    }


def test_it_maps_system_errors_and_tool_errors_to_424():
    """A SystemError (500) and a built-in tool's error without the node prefix are flow failures too."""
    assert upstream_error(500, _promptflow("SystemError", "boom"))[0] == 424
    llm = "OpenAI API hits APIConnectionError: Connection error."
    assert upstream_error(400, _promptflow("UserError", llm))[0] == 424


def test_it_keeps_input_errors_as_promptflow_wrote_them():
    """Promptflow's input checks are the client's mistake: the 400 and its body pass through."""
    messages = [
        "The input for flow is incorrect. The value for flow input 'url' is not provided in input data.",
        "Failed to parse the flow input. The value for flow input 'chat_history' was interpreted as JSON string.",
        "Required input fields ['url'] are missing in request data {}",
        "Promptflow executor received non json data, but there's more than 1 input fields.",
    ]
    for message in messages:
        body = _promptflow("UserError", message)
        assert upstream_error(400, body) == (400, body)


def test_it_passes_406_on():
    """A flow that cannot answer in the requested media type says so with 406."""
    body = _promptflow("UserError", "Media type text/event-stream in Accept header is not acceptable.")
    assert upstream_error(406, body) == (406, body)


def test_it_describes_answers_that_are_not_promptflows_json():
    """An HTML error page or an empty body still becomes a 424 with what the instance said."""
    status, body = upstream_error(502, b"<html>Bad Gateway</html>")
    assert status == 424
    assert json.loads(body)["error"]["message"] == "The flow instance answered HTTP 502: <html>Bad Gateway</html>"
    assert json.loads(upstream_error(500, b"")[1])["error"]["message"] == "The flow instance answered HTTP 500."


def test_it_writes_errors_in_the_contracts_shape():
    """{"error": {"code", "message"}}, nothing else unless there is an inner code."""
    assert json.loads(error_body("Unauthorized", "no key")) == {"error": {"code": "Unauthorized", "message": "no key"}}
