"""Flows through the API: zip upload or a server folder becomes a version promptflow has validated."""

import io
import zipfile

import pytest
from api_client import Api, error
from support import FIXTURE_FLOWS

from flows.models import Flow

pytestmark = pytest.mark.django_db


def _zip(folder) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(folder).as_posix())
    buffer.seek(0)
    buffer.name = f"{folder.name}.zip"
    return buffer


def _upload(api: Api, folder, name: str | None = "web"):
    data = {"file": _zip(folder)}
    if name:
        data["name"] = name
    return api.client.post("/api/v1/flows", data, headers={"Authorization": f"Bearer {api.token}"})


def test_it_imports_an_uploaded_zip_as_a_new_version(api, flow_runtime, isolated_flow_dirs):
    response = _upload(api, FIXTURE_FLOWS / "web-classification-offline")
    assert response.status_code == 201, response.content
    version = response.json()
    assert version["name"] == "web" and version["version"] == 1 and version["id"] == "web:1"
    assert set(version["inputs"]) == {"url", "location"}
    assert set(version["outputs"]) == {"category", "evidence", "location"}
    assert version["nodes"][0]["name"] == "fetch_url_parts"
    assert version["source"] == "upload"
    again = _upload(api, FIXTURE_FLOWS / "web-classification-offline").json()
    assert again["version"] == 2


def test_it_names_the_flow_after_the_zip_when_no_name_is_given(api, flow_runtime, isolated_flow_dirs):
    response = _upload(api, FIXTURE_FLOWS / "chat-stream-offline", name=None)
    assert response.status_code == 201
    assert response.json()["name"] == "chat-stream-offline"


def test_it_refuses_an_invalid_flow_with_promptflows_node_and_line(api, flow_runtime, isolated_flow_dirs):
    response = _upload(api, FIXTURE_FLOWS / "invalid" / "missing-source", name="broken")
    assert response.status_code == 400
    problem = error(response)
    assert problem["node"] == "echo" and problem["line"] == 9 and problem["file"] == "flow.dag.yaml"
    assert problem["message"].startswith("flow.dag.yaml, line 9, node 'echo': ")
    assert not Flow.objects.exists()


def test_it_refuses_a_file_that_is_not_a_zip(api):
    upload = io.BytesIO(b"not a zip")
    upload.name = "flow.zip"
    response = api.client.post(
        "/api/v1/flows", {"name": "web", "file": upload}, headers={"Authorization": f"Bearer {api.token}"}
    )
    assert response.status_code == 400
    assert error(response)["code"] == "InvalidZip" and error(response)["field"] == "file"


def test_it_names_a_bad_flow_name(api):
    response = _upload(api, FIXTURE_FLOWS / "web-classification-offline", name="1 bad")
    assert response.status_code == 400
    assert error(response)["field"] == "name"


def test_it_imports_a_server_folder_for_a_superuser(admin_api, flow_runtime, isolated_flow_dirs):
    api = admin_api
    folder = FIXTURE_FLOWS / "web-classification-offline"
    response = api.post("/flows", {"name": "web", "path": str(folder), "description": "Classifies URLs"})
    assert response.status_code == 201, response.content
    assert response.json()["source"] == "folder" and response.json()["source_detail"] == str(folder)
    assert api.get("/flows/web").json()["description"] == "Classifies URLs"


def test_it_refuses_a_server_folder_to_an_owner_who_is_not_a_superuser(api):
    response = api.post("/flows", {"name": "web", "path": str(FIXTURE_FLOWS / "web-classification-offline")})
    assert response.status_code == 403
    assert "superusers" in error(response)["message"]


def test_it_refuses_an_upload_to_a_reader(reader_api):
    response = _upload(reader_api, FIXTURE_FLOWS / "web-classification-offline")
    assert response.status_code == 403


@pytest.mark.parametrize(("path", "field"), [("relative/flow", "path"), ("/no/such/folder", "path"), (None, "path")])
def test_it_names_a_bad_folder(admin_api, path, field):
    response = admin_api.post("/flows", {"name": "web", "path": path})
    assert response.status_code == 400
    assert error(response)["field"] == field


def test_it_lists_and_shows_flows_and_versions(api, import_flow, isolated_flow_dirs):
    import_flow("web-classification-offline", "web")
    import_flow("web-classification-offline", "web")
    import_flow("chat-stream-offline")
    listing = api.get("/flows").json()
    assert [(f["name"], f["latest_version"]) for f in listing] == [("chat-stream-offline", 1), ("web", 2)]
    flow = api.get("/flows/web").json()
    assert [v["version"] for v in flow["versions"]] == [1, 2]
    version = api.get("/flows/chat-stream-offline/versions/1").json()
    assert version["chat_input"] == "question" and version["chat_output"] == "answer"
    assert version["inputs"]["question"]["default"] == "Tell me about deployments"
    assert [node["name"] for node in version["nodes"]] == ["reply"]
    assert version["connections"] == [] and version["requirements"] == ""


def test_it_answers_404_for_an_unknown_flow_or_version(api, flow_version):
    flow_version("web")
    assert api.get("/flows/nope").status_code == 404
    response = api.get("/flows/web/versions/7")
    assert response.status_code == 404
    assert error(response)["message"] == "Flow 'web' has no version 7."
