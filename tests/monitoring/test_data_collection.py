"""End to end: real deployments (provisioned by the real worker, served by promptflow) scored through the real
gateway, with inference data collection on and off; the lines land in the files and on the data asset page."""

import json
import time
from pathlib import Path

import httpx
import pytest
from roles import member
from support import wait_for

from endpoints import services

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _lines(folder: Path, kind: str) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob(f"{kind}/*/*/*/*/*.jsonl")) for line in path.open()]


def _wait_lines(folder: Path, kind: str, request_ids: set[str]) -> list[dict]:
    """The lines of these requests, once they are all there; any other line is deploy()'s own check of the
    deployment, made before the test's requests."""

    def mine() -> list[dict]:
        return [line for line in _lines(folder, kind) if line["xrequestid"] in request_ids]

    wait_for(lambda: len(mine()) >= len(request_ids), timeout=15, interval=0.1)
    time.sleep(0.3)  # a line too many would be written by now
    found = mine()
    assert sorted(line["xrequestid"] for line in found) == sorted(request_ids)
    first = min(line["time"] for line in found)
    assert all(line["time"] < first for line in _lines(folder, kind) if line not in found)
    return found


def _headers(key: str, deployment: str, request_id: str) -> dict:
    return {"Authorization": f"Bearer {key}", "azureml-model-deployment": deployment, "x-request-id": request_id}


def test_it_collects_exactly_the_scored_requests_of_deployments_with_collection_on(
    deploy, gateway_url, settings, client, django_user_model
):
    """blue (web classification, only `category` selected) and green (a streaming chat flow) collect; red does
    not. Each request to blue or green is one inputs and one outputs line with the client's request id and the
    body it got; red leaves no file."""
    blue = deploy("web-classification-offline", "ep-dc", "blue", data_collection=True, selected_outputs=["category"])
    green = deploy("chat-stream-offline", "ep-dc", "green", data_collection=True)
    deploy("chat-stream-offline", "ep-dc", "red", data_collection=False)
    key = services.credentials(blue.endpoint)["primaryKey"]
    url = f"{gateway_url}/endpoints/ep-dc/score"
    root = Path(settings.FLOWDEPLOY_DATA_COLLECTION_DIR) / "ep-dc"

    sent = {}
    with httpx.Client(timeout=30) as http:
        for number, location in enumerate(("Seattle", "Paris")):
            body = {"url": f"https://arxiv.org/abs/230{number}.0001", "location": location}
            answer = http.post(url, json=body, headers=_headers(key, "blue", f"b-{number}"))
            assert answer.status_code == 200 and set(answer.json()) == {"category"}
            sent[f"b-{number}"] = (body, answer.json())
        headers = {**_headers(key, "green", "g-stream"), "Accept": "text/event-stream"}
        with http.stream("POST", url, json={"question": "stream this"}, headers=headers) as answer:
            events = [json.loads(line[5:]) for line in answer.iter_lines() if line.startswith("data:")]
        assert len(events) > 1
        for number in range(2):
            headers = _headers(key, "red", f"r-{number}")
            assert http.post(url, json={"question": "not collected"}, headers=headers).status_code == 200

    inputs = _wait_lines(root / "blue", "model_inputs", set(sent))
    outputs = _wait_lines(root / "blue", "model_outputs", set(sent))
    assert {line["xrequestid"]: line["data"] for line in inputs} == {rid: body for rid, (body, _) in sent.items()}
    assert {line["xrequestid"]: line["data"] for line in outputs} == {rid: out for rid, (_, out) in sent.items()}
    assert {line["correlationid"] for line in inputs} == {line["correlationid"] for line in outputs}
    assert all(line["status"] == 200 and line["deployment"] == "blue" for line in outputs)

    (streamed,) = _wait_lines(root / "green", "model_outputs", {"g-stream"})
    assert streamed["xrequestid"] == "g-stream" and streamed["streamed"] is True
    assert streamed["data"] == {"answer": "".join(event["answer"] for event in events)}
    assert streamed["data"] == {"answer": "Turn 1: you said 'stream this'."}
    assert not (root / "red").exists()
    assert green.data_collection

    viewer = django_user_model.objects.create_user("data-viewer", password="viewer-pass-1")
    client.force_login(member(viewer, "contributor"))  # the records are what requests carried: Contributors
    html = client.get("/data-assets/ep-dc/blue/", {"request_id": "b-1"}).content.decode()
    assert '<tr data-request-id="b-1">' in html and '<tr data-request-id="b-0">' not in html
    assert "Paris" in html
