"""Headless Chromium (Debian's, at /usr/bin/chromium) driven by Playwright against a live studio."""

import os
from collections.abc import Iterator

import pytest

CHROMIUM = os.environ.get("FLOWDEPLOY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "browser-pass-123"

# Playwright's sync API runs an event loop in this thread; Django's ORM calls from fixtures are still
# made synchronously, one at a time, so its async-safety guard does not apply.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is missing at {CHROMIUM}; `make test` installs it (scripts/ensure_chromium.sh).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def signed_in(page, live_server, django_user_model):
    """A page signed in as an administrator through the sign-in form."""
    django_user_model.objects.create_superuser("studio-admin", password=PASSWORD)
    page.goto(f"{live_server.url}/")
    page.get_by_label("Username").fill("studio-admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/flows/")
    return page
