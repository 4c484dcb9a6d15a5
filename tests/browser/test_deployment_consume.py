"""The Consume tab in Chromium: keys are masked until shown, Copy puts them in the clipboard, regenerating
one after its confirmation makes the real gateway refuse the old key; token-based endpoints get a token."""

import re

import httpx
import pytest
from playwright.sync_api import expect
from support import wait_for

from endpoints import samples, services
from endpoints.models import AuthType, Endpoint

pytestmark = [pytest.mark.browser, pytest.mark.integration]

BODY = {"url": "https://www.youtube.com/watch?v=o5ZQyXaAv1g", "location": "LA"}
ANSWER = {"category": "Movie", "evidence": "host www.youtube.com matches youtube.com", "location": "LA"}


def _score(gateway_url: str, endpoint_name: str, credential: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {credential}"}
    return httpx.post(f"{gateway_url}/endpoints/{endpoint_name}/score", json=BODY, headers=headers, timeout=30)


def _clipboard(page) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def _open_consume(page, live_server, deployment):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.goto(f"{live_server.url}/deployments/{deployment.endpoint.name}/{deployment.name}/consume/")
    expect(page.get_by_role("heading", name="Basic consumption info")).to_be_visible()


def test_it_reveals_copies_and_regenerates_a_key(signed_in, live_server, deploy, gateway_url):
    page = signed_in
    deployment = deploy("web-classification-offline", endpoint="ep-browser-consume", name="blue")
    old = services.credentials(deployment.endpoint)
    _open_consume(page, live_server, deployment)
    expect(page.locator("#rest-endpoint")).to_have_text(f"{gateway_url}/endpoints/ep-browser-consume/score")
    assert old["primaryKey"] not in page.content()

    # Copy works while the key is still masked.
    copy = page.get_by_role("button", name="Copy primary key")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert _clipboard(page) == old["primaryKey"]
    assert old["primaryKey"] not in page.content()

    page.get_by_role("link", name="Show secondary key").click()
    expect(page.get_by_label("Secondary key", exact=True)).to_have_text(old["secondaryKey"])
    page.get_by_role("button", name="Hide secondary key").click()
    expect(page.get_by_label("Secondary key (hidden)")).to_be_visible()
    assert old["secondaryKey"] not in page.content()

    page.get_by_role("link", name="Regenerate primary key").click()
    expect(page.get_by_role("heading", name="Regenerate primary key")).to_be_visible()
    expect(page.get_by_text("every client that sends it gets 401 Unauthorized")).to_be_visible()
    page.get_by_role("button", name="Regenerate primary key").click()

    expect(page.get_by_text("The primary key of endpoint ep-browser-consume was regenerated.")).to_be_visible()
    expect(page.get_by_role("heading", name="Basic consumption info")).to_be_visible()
    new = services.credentials(Endpoint.objects.get(name="ep-browser-consume"))
    assert new["primaryKey"] != old["primaryKey"]
    assert new["secondaryKey"] == old["secondaryKey"]
    wait_for(
        lambda: _score(gateway_url, "ep-browser-consume", old["primaryKey"]).status_code == 401,
        timeout=5,
        message="the gateway still accepts the old primary key",
    )
    answer = _score(gateway_url, "ep-browser-consume", new["primaryKey"])
    assert answer.status_code == 200
    assert answer.json() == ANSWER

    page.get_by_role("link", name="Show primary key").click()
    expect(page.get_by_label("Primary key", exact=True)).to_have_text(new["primaryKey"])

    page.locator(".bell summary").click()
    expect(page.locator(".bell .panel")).to_contain_text("Keys regenerated", timeout=15_000)


def test_it_shows_one_highlighted_sample_at_a_time_and_copies_it(signed_in, live_server, deploy, gateway_url):
    page = signed_in
    deployment = deploy("web-classification-offline", endpoint="ep-browser-samples", name="blue")
    rendered = {s.language: s for s in samples.render_samples(deployment.endpoint, deployment, deployment.flow_version)}
    _open_consume(page, live_server, deployment)

    python, javascript = page.locator("#panel-python"), page.locator("#panel-javascript")
    expect(python).to_be_visible()
    expect(javascript).to_be_hidden()
    expect(python.locator(".highlight .kn").first).to_have_text("import")  # highlighted by Pygments

    page.get_by_text("JavaScript", exact=True).click()
    expect(javascript).to_be_visible()
    expect(python).to_be_hidden()
    expect(javascript).to_contain_text('"location": "LA"')
    copy = page.get_by_role("button", name="Copy the JavaScript sample")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert _clipboard(page) == rendered["javascript"].source
    assert f"{gateway_url}/endpoints/ep-browser-samples/score" in _clipboard(page)


def test_it_gets_a_token_that_the_gateway_accepts(signed_in, live_server, deploy, gateway_url):
    page = signed_in
    deployment = deploy("web-classification-offline", endpoint="ep-browser-token", auth_type=AuthType.TOKEN)
    _open_consume(page, live_server, deployment)
    expect(page.locator("#auth-type")).to_have_text("Token-based authentication")
    expect(page.get_by_text("Primary key")).to_have_count(0)

    page.get_by_role("button", name="Get token").click()
    expect(page.get_by_text("Expires (UTC)")).to_be_visible()
    expect(page.locator("#token-expiry")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
    expect(page.locator("#token-value")).to_be_hidden()
    copy = page.get_by_role("button", name="Copy access token")
    copy.click()
    expect(copy).to_have_text("Copied")
    token = _clipboard(page)
    page.get_by_role("button", name="Show access token").click()
    expect(page.locator("#token-value")).to_have_text(token)

    answer = _score(gateway_url, "ep-browser-token", token)
    assert answer.status_code == 200
    assert answer.json() == ANSWER
