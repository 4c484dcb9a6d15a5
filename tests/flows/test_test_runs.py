"""Test runs go through a real Celery worker and execute each sample flow in the flow runtime."""

import uuid

import pytest
from support import LLM_KEY, wait_for

from flows import services
from flows.models import RunStatus, TestRun

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _finished(run: TestRun, timeout: float = 90) -> TestRun:
    def done():
        run.refresh_from_db()
        return run.is_final

    wait_for(done, timeout=timeout, message=f"test run stayed {run.status}")
    return run


def test_it_runs_web_classification_through_celery(celery_worker, import_flow):
    """One line through promptflow: outputs, each node's result and the time taken."""
    version = import_flow("web-classification-offline")
    run = services.start_test_run(version, {"url": "https://arxiv.org/abs/2307.04767", "location": "Seattle"}, None)
    _finished(run)
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.outputs == {
        "category": "Academic",
        "evidence": "host arxiv.org matches arxiv.org",
        "location": "Seattle",
    }
    assert [n["node"] for n in run.node_runs] == [
        "fetch_url_parts",
        "classify_prompt",
        "classify",
        "convert_to_dict",
    ]
    assert all(n["status"] == "Completed" for n in run.node_runs)
    assert run.duration is not None and run.seconds is not None


def test_it_fills_in_defaults_for_inputs_left_out(celery_worker, import_flow):
    version = import_flow("web-classification-offline")
    run = _finished(services.start_test_run(version, {}, None))
    assert run.outputs["category"] == "Movie"
    assert run.outputs["location"] == "LA"


def test_it_shows_promptflows_message_when_a_node_fails(celery_worker, import_flow):
    """A flow error is a failed run naming the node and promptflow's message, not a crash."""
    version = import_flow("web-classification-offline")
    run = _finished(services.start_test_run(version, {"url": "not a url", "location": "LA"}, None))
    assert run.status == RunStatus.FAILED
    assert run.error["node"] == "fetch_url_parts"
    assert "not an absolute URL: 'not a url'" in run.error["message"]
    assert run.error["line"] == 22


def test_it_runs_the_chat_flow_against_a_local_openai_server(celery_worker, import_flow, open_ai_connection):
    """chat-basic's llm node reaches the OpenAI-compatible server through the workspace connection."""
    version = import_flow("chat-basic")
    session = uuid.uuid4()
    first = _finished(services.start_test_run(version, {"question": "What is prompt flow?"}, None, session))
    assert first.status == RunStatus.COMPLETED, first.error
    assert first.outputs == {"answer": "Local model, turn 1: you asked 'What is prompt flow?'."}
    second = _finished(services.start_test_run(version, {"question": "And deployments?"}, None, session))
    assert second.inputs["chat_history"] == [
        {"inputs": {"question": "What is prompt flow?"}, "outputs": {"answer": first.outputs["answer"]}}
    ]
    assert second.outputs["answer"] == "Local model, turn 2: you asked 'And deployments?'."


def test_it_fails_clearly_when_the_connection_is_missing(celery_worker, import_flow):
    version = import_flow("chat-basic")
    run = _finished(services.start_test_run(version, {"question": "hi"}, None))
    assert run.status == RunStatus.FAILED
    assert "open_ai_connection" in run.error["message"]
    assert run.error["node"] == "chat"


def test_it_keeps_the_connection_key_out_of_the_run(celery_worker, import_flow, open_ai_connection):
    version = import_flow("chat-basic")
    run = _finished(services.start_test_run(version, {"question": "hi"}, None))
    stored = str(TestRun.objects.filter(pk=run.pk).values().get())
    assert LLM_KEY not in stored


def test_it_collects_a_streaming_flows_answer(celery_worker, import_flow):
    version = import_flow("chat-stream-offline")
    run = _finished(services.start_test_run(version, {"question": "hi"}, None, uuid.uuid4()))
    assert run.outputs == {"answer": "Turn 1: you said 'hi'."}


def test_it_runs_a_flow_with_its_own_requirements(celery_worker, import_flow):
    version = import_flow("with-requirements")
    run = _finished(services.start_test_run(version, {"title": "Hello, Prompt Flow!"}, None))
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.outputs == {"slug": "hello-prompt-flow"}


def test_it_is_safe_to_execute_a_run_twice(celery_worker, import_flow):
    """A redelivered task finds the run already claimed or finished and does nothing."""
    version = import_flow("chat-stream-offline")
    run = _finished(services.start_test_run(version, {"question": "once"}, None))
    finished_at = run.finished_at
    services.execute_test_run(str(run.pk))
    run.refresh_from_db()
    assert run.finished_at == finished_at
