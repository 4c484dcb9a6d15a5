"""Deployments whose flow snapshot is on disk, for the Azure artifacts and export tests (rows only: nothing runs).

`snapshot` copies one of tests/fixtures/flows where the studio keeps snapshots (settings.FLOWDEPLOY_FLOWS_DIR;
the tests point it at their own folder with the `isolated_flow_dirs` fixture).
"""

import shutil

from support import FIXTURE_FLOWS

from endpoints.models import Deployment, DeploymentState, Endpoint
from flows.models import Flow, FlowSource, FlowVersion

OPENAI = "open_ai_connection"
CHAT = {
    "fixture": "chat-basic",
    "inputs": {"chat_history": {"type": "list", "default": []}, "question": {"type": "string"}},
    "outputs": {"answer": {"type": "string"}},
    "chat_input": "question",
    "chat_output": "answer",
    "chat_history": "chat_history",
    "connections": [{"name": OPENAI, "nodes": ["chat"], "types": ["OpenAIConnection"]}],
}
WEB = {
    "fixture": "web-classification",
    "inputs": {"url": {"type": "string"}},
    "outputs": {"category": {"type": "string"}, "evidence": {"type": "string"}},
    "connections": [
        {"name": OPENAI, "nodes": ["summarize_text_content", "classify_with_llm"], "types": ["OpenAIConnection"]}
    ],
}


def flow_version(name: str = "web", kind: dict = WEB, version: int = 1) -> FlowVersion:
    """A flow version as the importer leaves it, with its snapshot copied from tests/fixtures/flows."""
    fields = dict(kind)
    fixture = FIXTURE_FLOWS / fields.pop("fixture")
    flow, _ = Flow.objects.get_or_create(name=name)
    row = FlowVersion.objects.create(
        flow=flow,
        version=version,
        content_hash=f"{name}-{version}-{fixture.name}",
        source=FlowSource.FOLDER,
        requirements=(fixture / "requirements.txt").read_text(),
        **fields,
    )
    shutil.copytree(fixture, row.snapshot_dir)
    return row


def deployment(
    version: FlowVersion, endpoint: str = "ep-web", name: str = "blue", endpoint_fields: dict | None = None, **fields
) -> Deployment:
    found = Endpoint.objects.filter(name=endpoint).first()
    if found is None:
        found = Endpoint.objects.create(name=endpoint, **(endpoint_fields or {}))
    return Deployment.objects.create(
        endpoint=found, name=name, flow_version=version, state=DeploymentState.SUCCEEDED, **fields
    )
