"""The data asset page in Chromium: from the left navigation to a deployment's records, filtered by request id
without a reload, and its files downloaded."""

import io
import json
import zipfile
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from django.utils import timezone

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def collected(deployment_row, collect):
    deployment_row()
    now = timezone.now()
    for number in range(6):
        collect(
            "ep-data",
            "blue",
            f"req-{number}",
            {"question": f"question {number}"},
            {"answer": f"answer {number}"},
            now - timedelta(minutes=10 * number),
        )
    return now


def test_it_filters_records_by_request_id_and_downloads_them(signed_in, live_server, collected):
    page = signed_in
    page.get_by_role("link", name="Data", exact=True).click()
    page.get_by_role("link", name="ep-data-blue").click()
    expect(page.get_by_role("heading", name="ep-data-blue")).to_be_visible()
    rows = page.locator("#records tbody tr[data-request-id]")
    expect(rows).to_have_count(6)

    page.evaluate("window.notReloaded = true")
    page.get_by_label("Request ID").fill("req-3")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row).to_have_attribute("data-request-id", "req-3")
    expect(row.locator("pre.inputs")).to_contain_text('"question": "question 3"')
    expect(row.locator("pre.outputs")).to_contain_text('"answer": "answer 3"')
    assert page.evaluate("window.notReloaded") is True  # htmx swapped the results in place
    assert "request_id=req-3" in page.url  # and the address can be shared

    with page.expect_download() as download:
        page.locator("#download-range").click()
    path = download.value.path()
    archive = zipfile.ZipFile(io.BytesIO(open(path, "rb").read()))  # noqa: SIM115
    outputs = [name for name in archive.namelist() if "/model_outputs/" in name]
    request_ids = {json.loads(line)["xrequestid"] for name in outputs for line in archive.read(name).splitlines()}
    assert request_ids == {f"req-{number}" for number in range(6)}
    assert download.value.suggested_filename.startswith("ep-data-blue-")

    with page.expect_download() as download:
        page.locator("#hours a[href*='/files/model_inputs/']").first.click()
    lines = [json.loads(line) for line in open(download.value.path(), "rb").read().splitlines()]  # noqa: SIM115
    assert lines and all(line["type"] == "flowdeploy.inference.model_inputs" for line in lines)
    assert download.value.suggested_filename.endswith(".jsonl")
