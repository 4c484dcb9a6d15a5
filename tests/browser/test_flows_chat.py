"""The flow chat holds one turn at a time: the message box and Send are disabled until the answer comes."""

import pytest
from playwright.sync_api import expect

from flows.models import TestRun

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_double_clicking_send_sends_one_turn(signed_in, live_server, celery_worker, import_flow):
    version = import_flow("chat-stream-slow")
    page = signed_in
    page.goto(f"{live_server.url}/flows/{version.flow.name}/versions/{version.version}/test/")
    box = page.get_by_placeholder("Type a message")
    send = page.get_by_role("button", name="Send")

    box.fill("Hello once")
    send.dblclick()
    expect(box).to_be_disabled()
    expect(send).to_be_disabled()
    box.press("Enter")  # a disabled box sends nothing either
    answers = page.locator("[data-answer]")
    expect(answers).to_have_text(["Turn 1: you said 'Hello once'."], timeout=60_000)
    expect(box).to_be_enabled()
    expect(send).to_be_enabled()
    expect(page.locator(".turn")).to_have_count(1)
    assert TestRun.objects.filter(flow_version=version).count() == 1

    box.fill("And twice")
    send.click()
    expect(send).to_be_disabled()
    expect(answers.nth(1)).to_have_text("Turn 2: you said 'And twice'.", timeout=60_000)
    expect(send).to_be_enabled()
    assert TestRun.objects.filter(flow_version=version).count() == 2


def test_it_enables_send_again_when_a_turn_fails(signed_in, live_server, celery_worker, import_flow, settings):
    """chat-basic without its connection: the turn fails, and the user can write again."""
    version = import_flow("chat-basic")
    page = signed_in
    page.goto(f"{live_server.url}/flows/{version.flow.name}/versions/{version.version}/test/")
    box = page.get_by_placeholder("Type a message")
    send = page.get_by_role("button", name="Send")
    box.fill("Anyone there?")
    send.click()
    expect(send).to_be_disabled()
    expect(page.locator(".turn[data-status=Failed] .bubble.error")).to_be_visible(timeout=60_000)
    expect(box).to_be_enabled()
    expect(send).to_be_enabled()
