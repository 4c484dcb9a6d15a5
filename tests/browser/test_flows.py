"""A user signs in, imports sample flows, and test-runs them in the browser."""

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _import_sample(page, live_server, sample: str) -> None:
    page.get_by_role("link", name="Import flow").first.click()
    page.get_by_role("link", name="From a sample").click()
    page.get_by_label("Sample flow").select_option(sample)
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", name=sample)).to_be_visible(timeout=60_000)
    expect(page.get_by_text(f"Imported {sample}, version 1.")).to_be_visible()


def test_it_imports_a_sample_and_test_runs_it(signed_in, live_server, celery_worker):
    page = signed_in
    expect(page.get_by_text("No flows yet.")).to_be_visible()
    _import_sample(page, live_server, "web-classification-offline")
    expect(page.locator('svg [data-node="classify"]')).to_be_visible()

    page.get_by_role("link", name="Test", exact=True).click()
    page.get_by_label("url").fill("https://arxiv.org/abs/2307.04767")
    page.get_by_label("location").fill("Seattle")
    page.get_by_role("button", name="Run").click()

    result = page.locator("#run[data-status=Completed]")
    expect(result).to_be_visible(timeout=60_000)
    expect(result.locator('[data-output="category"]')).to_have_text("Academic")
    expect(result.locator('[data-output="location"]')).to_have_text("Seattle")
    expect(result.locator("table.node-runs tbody tr")).to_have_count(4)


def test_it_shows_a_flow_error_in_the_result(signed_in, live_server, celery_worker):
    page = signed_in
    _import_sample(page, live_server, "web-classification-offline")
    page.get_by_role("link", name="Test", exact=True).click()
    page.get_by_label("url").fill("not a url")
    page.get_by_role("button", name="Run").click()
    result = page.locator("#run[data-status=Failed]")
    expect(result).to_be_visible(timeout=60_000)
    expect(result.locator(".flow-error")).to_contain_text("node 'fetch_url_parts'")
    expect(result.locator(".flow-error")).to_contain_text("not an absolute URL: 'not a url'")


def test_it_chats_with_an_llm_flow_through_a_new_connection(signed_in, live_server, celery_worker, local_llm):
    """The chat flow needs open_ai_connection: the user creates it, then holds a two-turn chat."""
    page = signed_in
    _import_sample(page, live_server, "chat-basic")
    expect(page.get_by_text("Missing")).to_be_visible()
    page.get_by_role("link", name="Create it").click()

    expect(page.get_by_label("Connection name")).to_have_value("open_ai_connection")
    page.get_by_label("API key").fill("sk-browser-test-key")
    page.get_by_label("API base").fill(local_llm)
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("cell", name="open_ai_connection", exact=True)).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("sk-browser-test-key")

    page.get_by_role("link", name="Flows").click()
    page.get_by_role("link", name="chat-basic").click()
    expect(page.get_by_text("Exists")).to_be_visible()
    page.get_by_role("link", name="Chat", exact=True).click()

    box = page.get_by_placeholder("Type a message")
    box.fill("What is prompt flow?")
    page.get_by_role("button", name="Send").click()
    answers = page.locator("[data-answer]")
    expect(answers.nth(0)).to_have_text("Local model, turn 1: you asked 'What is prompt flow?'.", timeout=60_000)
    expect(box).to_have_value("")
    box.fill("How do I deploy it?")
    page.get_by_role("button", name="Send").click()
    expect(answers.nth(1)).to_have_text("Local model, turn 2: you asked 'How do I deploy it?'.", timeout=60_000)
