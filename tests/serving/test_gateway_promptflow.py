"""The gateway in front of real promptflow instances (the sample flows, served by gunicorn from the flow runtime)."""

import json

import pytest
from gateway_support import call, deployment_spec, read_stream

pytestmark = pytest.mark.integration


def test_it_scores_a_real_promptflow_instance(gateway, publish, promptflow_instance):
    """web-classification answers through the gateway with promptflow's outputs."""
    instance = promptflow_instance("web-classification-offline")
    endpoint = publish({"blue": deployment_spec(instance.url)})
    inputs = {"url": "https://arxiv.org/abs/2307.04767", "location": "Seattle"}
    answer = gateway.score(endpoint.name, inputs, endpoint.key)
    assert answer.status == 200, answer.body
    assert answer.json == {
        "category": "Academic",
        "evidence": "host arxiv.org matches arxiv.org",
        "location": "Seattle",
    }
    assert answer.headers["azureml-model-deployment"] == "blue"
    assert answer.headers["x-request-id"]


def test_it_reports_a_failing_node_of_a_real_flow_as_424(gateway, publish, promptflow_instance):
    """A python node raising becomes 424 with promptflow's own message."""
    instance = promptflow_instance("web-classification-offline")
    endpoint = publish({"blue": deployment_spec(instance.url)})
    answer = gateway.score(endpoint.name, {"url": "bad"}, endpoint.key)
    assert answer.status == 424
    assert answer.error["code"] == "FlowExecutionFailed"
    assert answer.error["message"] == "Execution failure in 'fetch_url_parts': (ValueError) not an absolute URL: 'bad'"
    assert answer.error["innerError"] == {"code": "UserError"}


def test_it_keeps_promptflows_input_errors_as_400(gateway, publish, promptflow_instance):
    """An input promptflow cannot use is the client's mistake: 400 with promptflow's message."""
    instance = promptflow_instance("chat-stream-offline")
    endpoint = publish({"blue": deployment_spec(instance.url)})
    answer = gateway.score(endpoint.name, {"question": "hi", "chat_history": "not a list"}, endpoint.key)
    assert answer.status == 400
    assert answer.error["code"] == "UserError"
    assert answer.error["message"].startswith(
        "Failed to parse the flow input. The value for flow input 'chat_history' was interpreted as JSON string"
    )


def test_it_streams_a_real_promptflow_answer_chunk_by_chunk(gateway, publish, promptflow_instance):
    """A generator output produced word by word arrives as server-sent events, in several reads, in order."""
    instance = promptflow_instance("chat-stream-slow")
    endpoint = publish({"blue": deployment_spec(instance.url)})
    words = [f"word{n}" for n in range(30)]
    headers = {
        "Authorization": f"Bearer {endpoint.key}",
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
    }
    body = json.dumps({"question": " ".join(words), "chat_history": []}).encode()
    stream = read_stream(gateway.url, f"/endpoints/{endpoint.name}/score", headers, body)
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["azureml-model-deployment"] == "blue"
    answer = "".join(json.loads(event)["answer"] for event in stream.events)
    assert answer == "Turn 1: you said '" + " ".join(words) + "'."
    assert len(stream.events) == len(words) + 4  # one per word of "Turn 1: you said '...'."
    assert len(stream.reads) > 1, "the answer came in one piece: it was buffered somewhere"
    assert stream.reads[0][0] < stream.reads[-1][0]


def test_it_serves_a_real_instances_swagger(gateway, publish, promptflow_instance):
    """Without a swagger in the document, the gateway fetches promptflow's and serves it."""
    instance = promptflow_instance("web-classification-offline")
    endpoint = publish({"blue": deployment_spec(instance.url)})
    path = f"/endpoints/{endpoint.name}/swagger.json"
    answer = call(gateway.url, path, headers={"Authorization": f"Bearer {endpoint.key}"})
    assert answer.status == 200
    schema = answer.json["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"location", "url"}
