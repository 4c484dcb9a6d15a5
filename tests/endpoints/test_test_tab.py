"""The deployment page's Test tab: a form and a JSON editor built from the flow's inputs for a standard
flow, a chat window for a chat flow; requests go through the real gateway with the endpoint's credential,
added on the server."""

import asyncio
import html as htmllib
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from roles import member

from django.test import AsyncRequestFactory
from django.urls import reverse

from endpoints import services
from endpoints.models import AuthType, Deployment, DeploymentState
from endpoints.views import testing
from flows.models import Flow, FlowSource, FlowVersion

UNREACHABLE = "http://127.0.0.1:9"
WORDS = ["Turn", " 1:", " one", " word", " at", " a", " time."]
GAP_S = 0.15
ANSWER = {"category": "Movie", "evidence": "host www.youtube.com matches youtube.com", "location": "LA"}
HX = {"HTTP_HX_REQUEST": "true"}


def _version(name: str, inputs: dict, outputs: dict, **chat) -> FlowVersion:
    flow, _ = Flow.objects.get_or_create(name=name)
    return FlowVersion.objects.create(
        flow=flow,
        version=flow.versions.count() + 1,
        content_hash=f"{name}-hash",
        source=FlowSource.FOLDER,
        inputs=inputs,
        outputs=outputs,
        **chat,
    )


@pytest.fixture
def typed(db, settings) -> Deployment:
    """A deployment row of a flow with one input of each type (nothing runs: the gateway is unreachable)."""
    settings.FLOWDEPLOY_GATEWAY_URL = UNREACHABLE
    version = _version(
        "typed",
        {
            "url": {"type": "string", "default": "https://example.com/a"},
            "count": {"type": "int", "default": 3},
            "ratio": {"type": "double"},
            "strict": {"type": "bool", "default": True},
            "tags": {"type": "list", "default": ["a", "b"]},
        },
        {"answer": {"type": "string"}},
    )
    endpoint = services.create_endpoint("ep-typed")
    return Deployment.objects.create(
        endpoint=endpoint, name="blue", flow_version=version, state=DeploymentState.SUCCEEDED
    )


@pytest.fixture
def chatty(db, settings) -> Deployment:
    settings.FLOWDEPLOY_GATEWAY_URL = UNREACHABLE
    version = _version(
        "chatty",
        {
            "chat_history": {"type": "list", "default": []},
            "question": {"type": "string", "is_chat_input": True},
            "style": {"type": "string", "default": "short"},
        },
        {"answer": {"type": "string", "is_chat_output": True}},
        chat_input="question",
        chat_output="answer",
        chat_history="chat_history",
    )
    endpoint = services.create_endpoint("ep-chatty")
    return Deployment.objects.create(
        endpoint=endpoint, name="blue", flow_version=version, state=DeploymentState.SUCCEEDED
    )


class SlowGateway:
    """Answers a streamed score with one word every GAP_S seconds. The fixture flows produce all their
    words at once, so this shows whether the studio passes each chunk on when it arrives."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                gateway.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("azureml-model-deployment", "blue")
                self.send_header("x-request-id", "req-slow")
                self.end_headers()
                for word in WORDS:
                    self.wfile.write(f"data: {json.dumps({'answer': word})}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(GAP_S)

            def log_message(self, *args):
                """Keep the test output quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def slow_gateway(settings):
    gateway = SlowGateway()
    settings.FLOWDEPLOY_GATEWAY_URL = gateway.url
    yield gateway
    gateway.server.shutdown()


def _assert_spread(arrivals: list[float]) -> None:
    """Each chunk arrived about when the gateway sent it, not all together at the end."""
    assert len(arrivals) == len(WORDS)
    assert arrivals[-1] - arrivals[0] >= GAP_S * (len(WORDS) - 1) * 0.6, arrivals


@pytest.fixture
def reader(client, django_user_model):
    """Signed in as a Reader of the default project: may look and test, nothing more."""
    user = member(django_user_model.objects.create_user("reader", password="pass-12345"), "reader")
    client.force_login(user)
    return client


def _test_url(deployment: Deployment) -> str:
    return reverse("endpoints:test", args=[deployment.endpoint.name, deployment.name])


def _chat_url(deployment: Deployment) -> str:
    return reverse("endpoints:chat", args=[deployment.endpoint.name, deployment.name])


def _shown(html: str, element_id: str) -> str:
    """The text of the element with this id in the result fragment."""
    match = re.search(rf'id="{element_id}">(.*?)</', html, re.S)
    assert match, f"no #{element_id} in the page"
    return htmllib.unescape(match.group(1))


def _events(chunks) -> list[tuple[str, dict]]:
    text = b"".join(chunks).decode()
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


# --- the page -------------------------------------------------------------------------------------


def test_it_requires_sign_in(client, typed):
    response = client.get(_test_url(typed))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_builds_the_form_from_the_flows_inputs_with_types_and_defaults(admin_client, typed):
    response = admin_client.get(_test_url(typed))
    assert response.status_code == 200
    assert "endpoints/deployment_test.html" in [t.name for t in response.templates]
    html = response.content.decode()
    assert 'type="number" name="count" value="3"' in html
    assert 'type="number" name="ratio"' in html and 'step="any"' in html
    assert 'type="checkbox" name="strict"' in html and "checked" in html
    assert 'name="url" value="https://example.com/a"' in html
    assert "[\n  &quot;a&quot;,\n  &quot;b&quot;\n]</textarea>" in html
    assert response.context["input_types"] == {
        "url": "string",
        "count": "int",
        "ratio": "double",
        "strict": "bool",
        "tags": "list",
    }
    assert '<fieldset id="form-editor" data-editor-panel="form" role="tabpanel" aria-labelledby="tab-form">' in html


def test_it_prefills_the_json_editor_with_the_defaults_pretty_printed(admin_client, typed):
    response = admin_client.get(_test_url(typed) + "?editor=json")
    assert json.loads(response.context["json_text"]) == {
        "url": "https://example.com/a",
        "count": 3,
        "ratio": None,
        "strict": True,
        "tags": ["a", "b"],
    }
    assert '  "count": 3,' in response.context["json_text"]
    html = response.content.decode()
    assert 'id="json-editor" data-editor-panel="json" role="tabpanel" aria-labelledby="tab-json">' in html
    assert 'aria-labelledby="tab-form" disabled hidden' in html


def test_it_names_the_input_with_a_type_error_without_calling_the_gateway(admin_client, typed):
    data = {"fd-editor": "form", "url": "x", "count": "three", "ratio": "0.5", "tags": "[]"}
    response = admin_client.post(_test_url(typed), data, **HX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.strip().startswith('<section class="card" id="test-result"')  # only the result fragment
    assert "The request was not sent" in html
    assert "Input &#x27;count&#x27; must be a whole number." in html
    assert "not reachable" not in html  # the gateway was not called


def test_it_names_the_line_and_column_of_bad_json(admin_client, typed):
    text = '{\n  "url": "x",\n  "count": 3\n  "ratio": 1\n}'
    response = admin_client.post(_test_url(typed), {"fd-editor": "json", "fd-json": text}, **HX)
    assert "The JSON is not valid: Expecting &#x27;,&#x27; delimiter at line 4, column 3." in response.content.decode()


def test_it_checks_the_json_against_the_flows_inputs(admin_client, typed):
    url = _test_url(typed)
    unknown = admin_client.post(url, {"fd-editor": "json", "fd-json": '{"color": "red"}'}, **HX)
    assert "The flow has no input named &#x27;color&#x27;." in unknown.content.decode()
    wrong_type = admin_client.post(url, {"fd-editor": "json", "fd-json": '{"tags": {"a": 1}}'}, **HX)
    assert "Input &#x27;tags&#x27; must be JSON list." in wrong_type.content.decode()
    not_an_object = admin_client.post(url, {"fd-editor": "json", "fd-json": "[1, 2]"}, **HX)
    assert "The JSON must be an object of the flow&#x27;s inputs" in not_an_object.content.decode()


def test_it_explains_an_unreachable_gateway(admin_client, typed):
    response = admin_client.post(_test_url(typed), {"fd-editor": "json", "fd-json": '{"ratio": 0.5}'}, **HX)
    html = response.content.decode()
    assert '<span class="badge bad" id="result-status">502 Bad Gateway</span>' in html
    assert f"The scoring gateway at {UNREACHABLE} is not reachable" in html
    sent = {"url": "https://example.com/a", "count": 3, "ratio": 0.5, "strict": True, "tags": ["a", "b"]}
    assert json.loads(_shown(html, "result-request")) == sent


def test_it_lets_a_reader_test_and_refuses_who_is_no_member(reader, client, django_user_model, typed, chatty):
    page = reader.get(_test_url(typed))
    assert page.status_code == 200
    assert 'id="test-permission"' not in page.content.decode()
    assert reader.post(_test_url(typed), {"fd-editor": "json", "fd-json": "[]"}).status_code == 200
    client.force_login(django_user_model.objects.create_user("stranger", password="pass-12345"))
    assert client.get(_test_url(typed)).status_code == 404
    assert client.post(_test_url(typed), {"fd-editor": "json", "fd-json": "{}"}).status_code == 404
    assert client.post(_chat_url(chatty), {"question": "hi"}).status_code == 404


def test_it_never_puts_the_endpoints_keys_in_the_page(admin_client, typed, chatty):
    pages = [
        admin_client.get(_test_url(typed)),
        admin_client.get(_test_url(typed) + "?editor=json"),
        admin_client.get(_test_url(chatty)),
        admin_client.post(_test_url(typed), {"fd-editor": "json", "fd-json": "{}"}, **HX),
        admin_client.post(_test_url(typed), {"fd-editor": "json", "fd-json": "{}"}),
    ]
    texts = [page.content.decode() for page in pages]
    for asset in ("endpoints/test.js", "endpoints/test.css"):
        texts.append(b"".join(admin_client.get(f"/static/{asset}").streaming_content).decode())
    for deployment in (typed, chatty):
        for key in deployment.endpoint.get_keys().values():
            assert all(key not in text for text in texts)
    assert all("Bearer" not in text for text in texts)


def test_it_shows_a_chat_window_with_the_other_inputs_in_a_side_panel(admin_client, chatty):
    response = admin_client.get(_test_url(chatty))
    html = response.content.decode()
    assert 'id="chat-form"' in html and 'id="test-form"' not in html
    assert 'name="question"' in html and "Clear chat" in html and ">Send</button>" in html
    assert list(response.context["panel"].fields) == ["style"]
    assert 'name="style" value="short"' in html
    assert 'name="chat_history"' not in html


def test_it_refuses_an_empty_chat_message_or_a_malformed_history(admin_client, chatty):
    empty = admin_client.post(_chat_url(chatty), {"question": "  "})
    assert empty.status_code == 400
    assert empty.json()["error"]["message"] == "Type a message for 'question'."
    malformed = admin_client.post(_chat_url(chatty), {"question": "hi", "fd-chat-history": '[{"inputs": 1}]'})
    assert malformed.status_code == 400
    assert "list of {inputs, outputs} turns" in malformed.json()["error"]["message"]


def test_it_answers_a_chat_turn_the_gateway_could_not_take_with_an_error_event(admin_client, chatty):
    response = admin_client.post(_chat_url(chatty), {"question": "hi", "style": "long"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache" and response["X-Accel-Buffering"] == "no"
    ((event, data),) = _events(response.streaming_content)
    assert event == "error"
    assert data["status"] == 502 and data["code"] == "GatewayUnavailable"
    assert f"The scoring gateway at {UNREACHABLE} is not reachable" in data["message"]


# --- through the real gateway ---------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_returns_the_answer_with_its_status_deployment_and_latency(admin_client, deploy):
    blue = deploy("web-classification-offline", endpoint="ep-test", name="blue")
    green = deploy("web-classification-offline", endpoint="ep-test", name="green")  # no traffic: pinned
    assert green.endpoint.traffic.get("green", 0) == 0
    data = {"fd-editor": "form", "location": "Paris", "url": "https://www.youtube.com/watch?v=1"}
    response = admin_client.post(_test_url(green), data, **HX)
    html = response.content.decode()
    assert _shown(html, "result-status") == "200 OK"
    assert _shown(html, "result-deployment") == "green"
    assert re.fullmatch(r"[1-9]\d* ms", _shown(html, "result-latency"))
    assert json.loads(_shown(html, "result-body")) == {**ANSWER, "location": "Paris"}

    by_json = admin_client.post(_test_url(blue), {"fd-editor": "json", "fd-json": '{"location": "Oslo"}'}, **HX)
    html = by_json.content.decode()
    assert json.loads(_shown(html, "result-body")) == {**ANSWER, "location": "Oslo"}
    assert _shown(html, "result-deployment") == "blue"
    assert blue.endpoint.get_keys()["primary"] not in html


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_works_without_javascript_and_shows_the_gateways_error(admin_client, deploy):
    blue = deploy("web-classification-offline", endpoint="ep-test", name="blue")
    response = admin_client.post(_test_url(blue), {"fd-editor": "form", "location": "LA", "url": "not a url"})
    assert response.status_code == 200
    assert response.templates[0].name == "endpoints/deployment_test.html"
    html = response.content.decode()
    assert 'name="url" value="not a url"' in html  # the form keeps what was sent
    assert '<span class="badge bad" id="result-status">424 Failed Dependency</span>' in html
    assert "not an absolute URL: &#x27;not a url&#x27;" in html
    assert response.context["result"].error_code == "FlowExecutionFailed"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_scores_a_token_endpoint_with_a_fresh_token(admin_client, deploy):
    blue = deploy("web-classification-offline", endpoint="ep-token", name="blue", auth_type=AuthType.TOKEN)
    response = admin_client.post(_test_url(blue), {"fd-editor": "json", "fd-json": "{}"})
    assert response.context["result"].status == 200
    assert response.context["result"].body == ANSWER


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_streams_a_chat_turn_as_delta_events_then_done(admin_client, deploy):
    blue = deploy("chat-stream-offline", endpoint="ep-test", name="blue")
    history = [{"inputs": {"question": "hello"}, "outputs": {"answer": "Turn 1: you said 'hello'."}}]
    data = {"question": "how are you", "fd-chat-history": json.dumps(history)}
    response = admin_client.post(_chat_url(blue), data)
    assert response.status_code == 200 and response.streaming
    events = _events(response.streaming_content)
    deltas = [data["text"] for event, data in events if event == "delta"]
    assert len(deltas) >= 5
    assert "".join(deltas) == "Turn 2: you said 'how are you'."
    event, done = events[-1]
    assert event == "done"
    assert done["status"] == 200 and done["deployment"] == "blue" and done["latency_ms"] > 0
    assert done["answer"] == "Turn 2: you said 'how are you'."
    assert done["turn"] == {
        "inputs": {"question": "how are you"},
        "outputs": {"answer": "Turn 2: you said 'how are you'."},
    }


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_streams_under_asgi_through_an_async_iterator(admin_user, deploy):
    blue = deploy("chat-stream-offline", endpoint="ep-test", name="blue")
    request = AsyncRequestFactory().post(_chat_url(blue), {"question": "async please"})
    request.user = admin_user
    response = testing.chat(request, "ep-test", "blue")
    assert response.is_async

    async def collect() -> list[bytes]:
        return [chunk async for chunk in response.streaming_content]

    # Its own thread: the browser tests' Playwright may have left an event loop running in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        events = _events(pool.submit(asyncio.run, collect()).result())
    assert len([event for event, _ in events if event == "delta"]) >= 5
    assert events[-1][1]["answer"] == "Turn 1: you said 'async please'."


# --- streaming as the gateway streams -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_passes_each_chunk_on_as_it_arrives_from_the_wsgi_server(
    live_server, chatty, slow_gateway, client, admin_user
):
    client.force_login(admin_user)
    studio = httpx.Client(base_url=live_server.url, cookies={"sessionid": client.cookies["sessionid"].value})
    studio.get(_test_url(chatty)).raise_for_status()
    token = studio.cookies["csrftoken"]
    arrivals, done = [], None
    started = time.monotonic()
    with studio.stream("POST", _chat_url(chatty), data={"question": "hi"}, headers={"X-CSRFToken": token}) as answer:
        assert answer.headers["content-type"] == "text/event-stream"
        for line in answer.iter_lines():
            if line == "event: delta":
                arrivals.append(time.monotonic() - started)
            elif line.startswith("data:") and '"turn"' in line:
                done = json.loads(line[5:])
    _assert_spread(arrivals)
    assert done["answer"] == "".join(WORDS) and done["deployment"] == "blue" and done["request_id"] == "req-slow"
    (sent,) = slow_gateway.requests
    assert sent["headers"]["Accept"] == "text/event-stream, application/json"
    assert sent["headers"]["azureml-model-deployment"] == "blue"
    assert sent["headers"]["Authorization"] == f"Bearer {chatty.endpoint.get_keys()['primary']}"
    assert sent["body"] == {"chat_history": [], "question": "hi", "style": "short"}


def test_it_passes_each_chunk_on_as_it_arrives_under_asgi(chatty, slow_gateway, admin_user):
    request = AsyncRequestFactory().post(_chat_url(chatty), {"question": "hi", "style": "long"})
    request.user = admin_user
    response = testing.chat(request, chatty.endpoint.name, chatty.name)
    assert response.is_async

    async def arrivals() -> list[float]:
        started, seen = time.monotonic(), []
        async for chunk in response.streaming_content:
            if chunk.startswith(b"event: delta"):
                seen.append(time.monotonic() - started)
        return seen

    _assert_spread(asyncio.run(arrivals()))
    assert slow_gateway.requests[0]["body"]["style"] == "long"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_it_streams_an_llm_chat_flow_with_its_history(admin_client, deploy, open_ai_connection):
    blue = deploy("chat-basic", endpoint="ep-test", name="blue")
    history = [{"inputs": {"question": "hi"}, "outputs": {"answer": "hello"}}]
    response = admin_client.post(_chat_url(blue), {"question": "Is it live?", "fd-chat-history": json.dumps(history)})
    events = _events(response.streaming_content)
    expected = "Local model, turn 2: you asked 'Is it live?'."
    assert len([event for event, _ in events if event == "delta"]) > 1
    assert "".join(data["text"] for event, data in events if event == "delta") == expected
    event, done = events[-1]
    assert event == "done" and done["turn"]["outputs"] == {"answer": expected}
