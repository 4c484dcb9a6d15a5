"""A user tests a deployment from its Test tab in the browser: the form and the JSON editor return the
flow's answer through the gateway, and a chat flow holds a conversation whose answers stream in."""

import json
import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ANSWER = {"category": "Movie", "evidence": "host www.youtube.com matches youtube.com", "location": "LA"}

# Records, for each assistant bubble, the length of its text each time it changed.
RECORD_GROWTH = """() => {
  window.growth = [];
  const chat = document.getElementById("chat-window");
  new MutationObserver(() => {
    chat.querySelectorAll(".bubble.assistant").forEach((bubble, turn) => {
      const lengths = (window.growth[turn] ||= []);
      const length = bubble.textContent.length;
      if (lengths[lengths.length - 1] !== length) lengths.push(length);
    });
  }).observe(chat, { childList: true, subtree: true, characterData: true });
}"""


def _open_test_tab(page, live_server, deployment):
    page.goto(f"{live_server.url}/deployments/{deployment.endpoint.name}/{deployment.name}/")
    page.get_by_role("navigation", name="Deployment").get_by_role("link", name="Test").click()
    expect(page).to_have_url(f"{live_server.url}/deployments/{deployment.endpoint.name}/{deployment.name}/test/")


def _response_json(page) -> dict:
    return json.loads(page.locator("#result-body").text_content())


def test_it_returns_the_flows_answer_from_the_form_editor(signed_in, live_server, deploy):
    page = signed_in
    blue = deploy("web-classification-offline", endpoint="ep-test", name="blue")
    _open_test_tab(page, live_server, blue)
    expect(page.get_by_label("location")).to_have_value("LA")
    expect(page.get_by_label("url")).to_have_value("https://www.youtube.com/watch?v=o5ZQyXaAv1g")
    page.get_by_label("location").fill("Paris")
    page.get_by_role("button", name="Test").click()

    expect(page.locator("#result-status")).to_have_text("200 OK")
    expect(page.locator("#result-deployment")).to_have_text("blue")
    expect(page.locator("#result-latency")).to_have_text(re.compile(r"^[1-9]\d* ms$"))
    assert _response_json(page) == {**ANSWER, "location": "Paris"}

    page.get_by_label("url").fill("not a url")
    page.get_by_role("button", name="Test").click()
    expect(page.locator("#result-status")).to_have_text("424 Failed Dependency")
    expect(page.locator("#result-error")).to_contain_text("not an absolute URL: 'not a url'")


def test_it_returns_the_flows_answer_from_the_json_editor(signed_in, live_server, deploy):
    page = signed_in
    blue = deploy("web-classification-offline", endpoint="ep-test", name="blue")
    _open_test_tab(page, live_server, blue)
    page.get_by_label("location").fill("Rome")
    page.get_by_role("tab", name="JSON").click()

    editor = page.get_by_label("Request body (JSON)")
    expect(editor).to_be_visible()
    expect(page.get_by_label("location")).to_be_hidden()
    body = json.loads(editor.input_value())
    assert body == {"location": "Rome", "url": "https://www.youtube.com/watch?v=o5ZQyXaAv1g"}  # the form's values
    editor.fill(json.dumps({**body, "location": "Tokyo"}, indent=2))
    page.get_by_role("button", name="Test").click()

    expect(page.locator("#result-status")).to_have_text("200 OK")
    expect(page.locator("#result-deployment")).to_have_text("blue")
    assert _response_json(page) == {**ANSWER, "location": "Tokyo"}

    page.get_by_role("tab", name="Form").click()  # the JSON's values go back to the form
    expect(page.get_by_label("location")).to_have_value("Tokyo")

    page.get_by_role("tab", name="JSON").click()
    editor.fill('{"location": "Lima",\n  "url": }')
    page.get_by_role("button", name="Test").click()
    expect(page.locator("#result-errors")).to_contain_text("Expecting value at line 2, column 10.")
    page.get_by_role("tab", name="Form").click()
    expect(page.locator("#editor-notice")).to_contain_text("The JSON does not parse")
    expect(page.get_by_label("location")).to_have_value("Tokyo")


def test_it_holds_a_three_turn_chat_and_shows_each_answer_growing(signed_in, live_server, deploy, settings):
    page = signed_in
    blue = deploy("chat-stream-offline", endpoint="ep-test", name="blue")
    _open_test_tab(page, live_server, blue)
    expect(page.get_by_role("complementary", name="Inputs")).to_contain_text("no inputs besides the chat input")
    page.evaluate(RECORD_GROWTH)
    chat_input = page.get_by_placeholder("Type user input here")
    answers = page.locator("#chat-window .bubble.assistant")

    for turn, question in enumerate(["hello there", "what is a deployment", "thanks a lot"], start=1):
        chat_input.fill(question)
        page.get_by_role("button", name="Send").click()
        expect(answers.nth(turn - 1)).to_have_text(f"Turn {turn}: you said '{question}'.")
        expect(page.locator("#chat-window .turn-meta").nth(turn - 1)).to_contain_text("Deployment blue · status 200")
        expect(page.get_by_role("button", name="Send")).to_be_enabled()

    growth = page.evaluate("window.growth")
    assert len(growth) == 3
    for lengths in growth:
        assert len(lengths) > 2, f"the answer was not seen growing: {lengths}"
        assert lengths == sorted(lengths)
    assert growth[2][-1] == len("Turn 3: you said 'thanks a lot'.")

    page.get_by_role("button", name="Clear chat").click()
    expect(answers).to_have_count(0)
    chat_input.fill("again")
    page.get_by_role("button", name="Send").click()
    expect(answers.first).to_have_text("Turn 1: you said 'again'.")  # the history was cleared too

    settings.FLOWDEPLOY_GATEWAY_URL = "http://127.0.0.1:9"  # the studio can no longer reach the gateway
    chat_input.fill("still there?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#chat-window .bubble.error")).to_contain_text(
        "The scoring gateway at http://127.0.0.1:9 is not reachable"
    )
    expect(page.locator("#chat-window .turn-meta").last).to_contain_text("status 502")


def test_it_sends_the_inputs_panel_with_each_chat_turn(signed_in, live_server, deploy):
    page = signed_in
    blue = deploy("chat-persona-offline", endpoint="ep-test", name="blue")
    _open_test_tab(page, live_server, blue)
    panel = page.get_by_role("complementary", name="Inputs")
    expect(panel.get_by_label("persona")).to_have_value("pirate")
    expect(panel.get_by_label("max_words")).to_have_value("20")
    chat_input = page.get_by_placeholder("Type user input here")
    answers = page.locator("#chat-window .bubble.assistant")

    chat_input.fill("ahoy")
    page.get_by_role("button", name="Send").click()
    expect(answers.nth(0)).to_have_text("As a pirate, turn 1: you said 'ahoy'.")

    panel.get_by_label("persona").fill("librarian")
    chat_input.fill("quiet please")
    page.get_by_role("button", name="Send").click()
    expect(answers.nth(1)).to_have_text("As a librarian, turn 2: you said 'quiet please'.")

    panel.get_by_label("max_words").fill("3")  # an int input reaches the flow as an int
    chat_input.fill("more")
    page.get_by_role("button", name="Send").click()
    expect(answers.nth(2)).to_have_text("As a librarian,")


def test_it_keeps_the_chat_across_a_tab_switch_until_cleared(signed_in, live_server, deploy):
    page = signed_in
    blue = deploy("chat-stream-offline", endpoint="ep-test", name="blue")
    _open_test_tab(page, live_server, blue)
    chat_input = page.get_by_placeholder("Type user input here")
    answers = page.locator("#chat-window .bubble.assistant")
    chat_input.fill("hello there")
    page.get_by_role("button", name="Send").click()
    expect(answers.nth(0)).to_have_text("Turn 1: you said 'hello there'.")

    page.get_by_role("navigation", name="Deployment").get_by_role("link", name="Details").click()
    expect(page.locator("#status")).to_be_visible()
    page.get_by_role("navigation", name="Deployment").get_by_role("link", name="Test").click()
    expect(page.locator("#chat-window .bubble.user")).to_have_text(["hello there"])
    expect(answers).to_have_text(["Turn 1: you said 'hello there'."])
    expect(page.locator("#chat-window .turn-meta").first).to_contain_text("Deployment blue · status 200")

    chat_input.fill("still here?")
    page.get_by_role("button", name="Send").click()
    expect(answers.nth(1)).to_have_text("Turn 2: you said 'still here?'.")  # the history came back too

    page.get_by_role("button", name="Clear chat").click()
    expect(answers).to_have_count(0)
    page.reload()
    expect(page.locator("#chat-empty")).to_be_visible()
    expect(answers).to_have_count(0)
