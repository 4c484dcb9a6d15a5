"""A deployment exported for Azure Machine Learning (endpoints/export.py): what the zip holds, that azure-ai-ml reads
its YAML back, that it holds no secret, and the Details tab's download."""

import io
import json
import zipfile

import pytest
from azure.ai.ml import load_environment, load_model, load_online_deployment, load_online_endpoint
from export_support import CHAT, OPENAI, WEB, deployment, flow_version
from roles import member

from django.test import Client

from endpoints import export
from endpoints.models import Endpoint, IdentityType
from endpoints.providers.azureml.artifacts import WorkspaceInfo
from workspace.connections import ConnectionSpec, save_connection
from workspace.models import AzureWorkspace, ManagedIdentity, Project, ProjectRole

pytestmark = pytest.mark.django_db

SECRET = "sk-export-5ecret-4417"
KEY = "ep-key-never-exported-8812"
WORKSPACE = WorkspaceInfo("0000-sub", "rg-flows", "ws-flows")


@pytest.fixture
def blue(isolated_flow_dirs):
    row = deployment(flow_version("web", WEB), environment_variables={"LOG_LEVEL": "debug"}, selected_outputs=[])
    row.endpoint.set_keys({"primary": KEY, "secondary": KEY[::-1]})
    row.endpoint.save()
    return row


def _unzip(content: bytes, folder) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        archive.extractall(folder)
        return {name: archive.read(name) for name in archive.namelist()}


def test_it_zips_the_yaml_the_build_context_the_flow_and_a_readme(blue, tmp_path):
    files = _unzip(export.export_zip(blue), tmp_path)
    assert sorted(name for name in files if not name.startswith("flow/")) == [
        "README.md",
        "deployment.yml",
        "endpoint.yml",
        "environment/Dockerfile",
        "environment/environment.yml",
        "environment/requirements.txt",
        "environment/runtime-requirements.txt",
        "environment/start.sh",
        "model.yml",
        "request.json",
    ]
    snapshot = blue.flow_version.snapshot_dir
    flow_files = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    assert sorted(name.removeprefix("flow/") for name in files if name.startswith("flow/")) == flow_files
    assert files["flow/flow.dag.yaml"] == (snapshot / "flow.dag.yaml").read_bytes()


def test_its_yaml_loads_back_with_azure_ai_ml(blue, tmp_path):
    _unzip(export.export_zip(blue, WORKSPACE), tmp_path)
    model = load_model(tmp_path / "model.yml")
    assert (model.name, model.version, model.type) == ("web", "1", "custom_model")
    assert str(model.path) == str(tmp_path / "flow")
    environment = load_environment(tmp_path / "environment" / "environment.yml")
    assert environment.name == "web-env" and environment.path == tmp_path / "environment"  # what it uploads
    assert environment._to_dict()["inference_config"]["scoring_route"] == {"port": 8080, "path": "/score"}
    endpoint = load_online_endpoint(tmp_path / "endpoint.yml")
    assert (endpoint.name, endpoint.auth_mode, endpoint.identity.type) == ("ep-web", "key", "system_assigned")
    assert endpoint.properties == {"enforce_access_to_default_secret_stores": "enabled"}
    online = load_online_deployment(tmp_path / "deployment.yml")
    assert (online.name, online.endpoint_name, online.instance_type) == ("blue", "ep-web", "Standard_DS3_v2")
    assert (online.model, online.environment) == ("web:1", f"web-env:{environment.version}")  # azureml: dropped
    assert online.environment_variables["LOG_LEVEL"] == "debug"
    assert online.environment_variables["PRT_CONFIG_OVERRIDE"].startswith("deployment.subscription_id=0000-sub,")
    assert online.request_settings.request_timeout_ms == 90_000


def test_it_exports_a_user_assigned_endpoint_with_placeholders_to_replace(blue, tmp_path):
    identity = ManagedIdentity.objects.create(project=Project.default(), name="id-web")
    Endpoint.objects.filter(pk=blue.endpoint.pk).update(
        identity_type=IdentityType.USER, user_assigned_identity=identity
    )
    blue.refresh_from_db()
    _unzip(export.export_zip(blue), tmp_path)
    endpoint = load_online_endpoint(tmp_path / "endpoint.yml")
    (assigned,) = endpoint.identity.user_assigned_identities
    assert assigned.resource_id.startswith("/subscriptions/<subscription-id>/resourceGroups/<resource-group>/")
    readme = (tmp_path / "README.md").read_text()
    assert "Replace `<subscription-id>`, `<resource-group>` and `<workspace-name>`" in readme
    assert "`endpoint.yml` (the identity's resource id)" in readme
    assert "AZURE_CLIENT_ID" in readme


def test_its_readme_has_the_az_ml_commands_and_the_connections_to_create(blue, tmp_path):
    blue.connection_overrides = {OPENAI: "gpt-eu"}
    blue.save()
    readme = _unzip(export.export_zip(blue, WORKSPACE), tmp_path)["README.md"].decode()
    for command in (
        "az ml model create --file model.yml",
        "az ml environment create --file environment/environment.yml",
        "az ml online-endpoint create --file endpoint.yml",
        "az ml online-deployment create --file deployment.yml --all-traffic",
    ):
        assert f"\n{command}\n" in readme
    assert readme.index("az ml model create") < readme.index("az ml online-deployment create")
    assert (
        "- `gpt-eu` (type OpenAIConnection; used by summarize_text_content, classify_with_llm; in place of the "
        "flow's `open_ai_connection`)"
    ) in readme
    assert "--scope /subscriptions/0000-sub/resourceGroups/rg-flows/providers/" in readme
    assert "az configure --defaults group=rg-flows workspace=ws-flows" in readme


def test_it_never_exports_a_key_or_a_connection_secret(blue, tmp_path):
    save_connection(ConnectionSpec(name=OPENAI, type="open_ai", configs={}, secrets={"api_key": SECRET}))
    files = _unzip(export.export_zip(blue), tmp_path)
    for name, content in files.items():
        for secret in (SECRET, KEY, KEY[::-1]):
            assert secret.encode() not in content, f"{name} holds a secret"


def test_it_gives_a_request_of_the_flows_inputs_to_try_it_with(isolated_flow_dirs, tmp_path):
    chat = deployment(flow_version("chat", CHAT), endpoint="ep-chat")
    files = _unzip(export.export_zip(chat), tmp_path)
    assert json.loads(files["request.json"]) == {"chat_history": [], "question": ""}
    assert "az ml online-endpoint invoke --name ep-chat --deployment-name blue --request-file request.json" in (
        files["README.md"].decode()
    )


def test_it_exports_the_same_deployment_to_the_same_bytes(blue):
    assert export.export_zip(blue) == export.export_zip(blue)


def test_it_exports_a_chat_flow_as_a_chat_model(isolated_flow_dirs, tmp_path):
    chat = deployment(flow_version("chat", CHAT), endpoint="ep-chat")
    files = _unzip(export.export_zip(chat), tmp_path)
    assert "environment/requirements.txt" not in files  # promptflow-tools is the runtime's
    model = load_model(tmp_path / "model.yml")
    assert model.properties["azureml.promptflow.mode"] == "chat"
    assert model.properties["azureml.promptflow.chat_input"] == "question"


def test_it_refuses_a_deployment_whose_snapshot_is_missing(blue):
    blue.flow_version.content_hash = "gone"
    with pytest.raises(export.ExportError, match="snapshot of flow web:1 is missing"):
        export.export_zip(blue)


# --- the Details tab's download ----------------------------------------------------------------------------


@pytest.fixture
def contributor_client(django_user_model):
    client = Client()  # not the `client` fixture, which viewer_client signs in
    user = django_user_model.objects.create_user("dev", password="dev-pass-1")
    client.force_login(member(user, ProjectRole.CONTRIBUTOR))
    return client


def test_it_downloads_the_zip_for_a_contributor(contributor_client, blue):
    response = contributor_client.get("/deployments/ep-web/blue/export/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="ep-web-blue-azureml.zip"'
    content = b"".join(response.streaming_content)
    assert "model.yml" in zipfile.ZipFile(io.BytesIO(content)).namelist()


def test_it_fills_in_the_workspace_the_project_is_connected_to(contributor_client, blue, tmp_path):
    AzureWorkspace.objects.create(
        project=Project.default(),
        subscription_id="00000000-0000-0000-0000-000000000001",
        resource_group="rg-flows",
        workspace_name="ws-flows",
        credential_type=AzureWorkspace.CredentialType.DEFAULT,
    )
    response = contributor_client.get("/deployments/ep-web/blue/export/")
    _unzip(b"".join(response.streaming_content), tmp_path)
    variables = load_online_deployment(tmp_path / "deployment.yml").environment_variables
    assert variables["PRT_CONFIG_OVERRIDE"].startswith(
        "deployment.subscription_id=00000000-0000-0000-0000-000000000001,deployment.resource_group=rg-flows,"
        "deployment.workspace_name=ws-flows,"
    )
    assert "<subscription-id>" not in (tmp_path / "README.md").read_text()


def test_it_requires_read_data_rights(viewer_client, blue):
    assert viewer_client.get("/deployments/ep-web/blue/export/").status_code == 403


def test_it_says_why_an_export_failed(contributor_client, blue):
    blue.flow_version.snapshot_dir.rename(blue.flow_version.snapshot_dir.with_name("moved"))
    response = contributor_client.get("/deployments/ep-web/blue/export/", follow=True)
    assert response.redirect_chain == [("/deployments/ep-web/blue/", 302)]
    assert "The deployment could not be exported. The snapshot of flow web:1 is missing" in response.content.decode()


def test_the_details_tab_links_to_the_export_for_those_who_may_read_data(contributor_client, viewer_client, blue):
    link = 'href="/deployments/ep-web/blue/export/" download>Export for Azure ML</a>'
    assert link in contributor_client.get("/deployments/ep-web/blue/").content.decode()
    assert link not in viewer_client.get("/deployments/ep-web/blue/").content.decode()
