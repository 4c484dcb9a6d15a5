"""Headless Chromium (Debian's, at /usr/bin/chromium) driven by Playwright against a live studio."""

from collections.abc import Iterator

import pytest

PASSWORD = "browser-pass-123"


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
