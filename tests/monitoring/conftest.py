"""Data collection fixtures: a data folder of the test's own, records written by the gateway's own writer,
deployments as rows (nothing runs), and headless Chromium for the data asset page."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from roles import member

from serving import collector as collection

PASSWORD = "monitoring-pass-123"


@pytest.fixture
def collection_dir(settings, tmp_path) -> Path:
    settings.FLOWDEPLOY_DATA_COLLECTION_DIR = tmp_path / "data-collection"
    return settings.FLOWDEPLOY_DATA_COLLECTION_DIR


@pytest.fixture
def collect(collection_dir) -> Callable[..., None]:
    """Write one request's lines exactly as the gateway does (serving.collector.Collector.write)."""
    writer = collection.Collector(collection_dir, gateway="gw-test")

    def collect_one(
        endpoint: str,
        deployment: str,
        request_id: str,
        inputs: dict,
        outputs: dict | bytes,
        at: datetime,
        status: int = 200,
        streamed: bool = False,
    ) -> None:
        body = outputs if isinstance(outputs, bytes) else json.dumps(outputs).encode()
        content_type = b"text/event-stream" if streamed else b"application/json"
        record = collection.Record(
            endpoint,
            deployment,
            request_id.encode(),
            at.timestamp(),
            status,
            json.dumps(inputs).encode(),
            [body],
            content_type,
            False,
            len(body),
        )
        writer.write([record])

    return collect_one


@pytest.fixture
def deployment_row(db):
    """Make an endpoint's deployment as a row only (nothing runs), with or without data collection."""
    from endpoints.models import Deployment, DeploymentState, Endpoint
    from flows.models import Flow, FlowSource, FlowVersion

    def make(endpoint: str = "ep-data", name: str = "blue", data_collection: bool = True) -> Deployment:
        flow, _ = Flow.objects.get_or_create(name="web")
        version, _ = FlowVersion.objects.get_or_create(
            flow=flow, version=1, defaults={"content_hash": "web-hash", "source": FlowSource.FOLDER}
        )
        target, _ = Endpoint.objects.get_or_create(name=endpoint, defaults={"traffic": {name: 100}})
        return Deployment.objects.create(
            endpoint=target,
            name=name,
            flow_version=version,
            data_collection=data_collection,
            state=DeploymentState.SUCCEEDED,
            phase="Succeeded",
            live_generation=1,
        )

    return make


@pytest.fixture
def signed_in(browser, live_server, django_user_model) -> Iterator:
    """A page signed in, through the sign-in form, as a Contributor of the default project: collected records
    and traces are what requests carried (Action.READ_DATA)."""
    member(django_user_model.objects.create_user("data-viewer", password=PASSWORD), "contributor")
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{live_server.url}/")
    page.get_by_label("Username").fill("data-viewer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/flows/")
    yield page
    context.close()
