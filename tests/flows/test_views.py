"""The flow pages: list, import, detail, test and chat; full pages and their htmx fragments."""

import io
import re
import uuid
import zipfile

import pytest
from roles import member

from flows.models import Flow, TestRun
from workspace.models import Project, ProjectRole

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(django_user_model):
    """A Reader of the default project."""
    return member(django_user_model.objects.create_user("viewer", password="viewer-pass-1"), ProjectRole.READER)


def _zip(files: dict[str, str]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    buffer.seek(0)
    buffer.name = "uploaded-flow.zip"
    return buffer


def test_it_requires_sign_in(client):
    response = client.get("/flows/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_lists_flows_with_their_latest_version(admin_client, import_flow):
    import_flow("chat-stream-offline")
    import_flow("chat-stream-offline")
    response = admin_client.get("/flows/")
    html = response.content.decode()
    assert "chat-stream-offline" in html
    assert "Chat flow" in html
    assert "of 2" in html


def test_it_refuses_import_to_a_reader(client, viewer):
    client.force_login(viewer)
    response = client.get("/flows/import/")
    assert response.status_code == 403
    assert "You are Reader of project &#x27;default&#x27;" in response.content.decode()
    assert "Import flow" not in client.get("/flows/").content.decode()


def test_it_offers_the_server_folder_only_to_the_admin(client, viewer):
    member(viewer, ProjectRole.OWNER)
    client.force_login(viewer)
    assert 'href="?source=folder"' not in client.get("/flows/import/").content.decode()
    assert client.get("/flows/import/?source=folder").status_code == 403


def test_it_imports_into_the_current_project(client, django_user_model, flow_runtime, isolated_flow_dirs):
    """A new flow goes to the project chosen in the top bar; only its members see it."""
    team = Project.objects.create(name="team-a")
    user = django_user_model.objects.create_user("ann", password="ann-pass-12345")
    member(user, ProjectRole.CONTRIBUTOR, team)
    member(user, ProjectRole.READER)
    client.force_login(user)
    assert 'id="project-switcher"' in client.get("/flows/").content.decode()
    client.post("/projects/switch/", {"project": team.pk})
    response = client.post("/flows/import/", {"source": "sample", "sample": "chat-stream-offline"})
    assert response.status_code == 302
    assert Flow.objects.get(name="chat-stream-offline").project == team
    other = django_user_model.objects.create_user("bob", password="bob-pass-12345")
    client.force_login(member(other, ProjectRole.OWNER))
    assert 'href="/flows/chat-stream-offline/' not in client.get("/flows/").content.decode()
    assert client.get("/flows/chat-stream-offline/").status_code == 404


def test_it_imports_an_uploaded_zip_and_redirects_to_the_flow(admin_client, flow_runtime, isolated_flow_dirs):
    upload = _zip(
        {
            "flow.dag.yaml": "inputs:\n  text:\n    type: string\noutputs:\n  out:\n    type: string\n"
            "    reference: ${echo.output}\nnodes:\n- name: echo\n  type: python\n  source:\n"
            "    type: code\n    path: echo.py\n  inputs:\n    text: ${inputs.text}\n",
            "echo.py": "from promptflow.core import tool\n\n@tool\ndef echo(text: str) -> str:\n    return text\n",
        }
    )
    response = admin_client.post("/flows/import/", {"source": "upload", "file": upload, "name": ""})
    assert response.status_code == 302
    assert response["Location"] == "/flows/uploaded-flow/versions/1/"
    page = admin_client.get(response["Location"]).content.decode()
    assert "Imported uploaded-flow, version 1." in page
    assert 'data-node="echo"' in page


def test_it_shows_promptflows_error_on_the_import_page(admin_client, flow_runtime, isolated_flow_dirs):
    upload = _zip({"flow.dag.yaml": "inputs:\n  text:\n    type: string\n  nodes: [\n"})
    response = admin_client.post("/flows/import/", {"source": "upload", "file": upload, "name": "broken"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "flow.dag.yaml, line 5" in html
    assert "is not valid YAML" in html
    assert "Nothing was imported." in html
    assert not Flow.objects.exists()


def test_it_imports_a_sample(admin_client, flow_runtime, isolated_flow_dirs):
    response = admin_client.post("/flows/import/", {"source": "sample", "sample": "chat-stream-offline"})
    assert response.status_code == 302
    assert Flow.objects.get().name == "chat-stream-offline"


def test_it_shows_a_flows_inputs_outputs_nodes_and_missing_connections(admin_client, import_flow):
    import_flow("chat-basic")
    html = admin_client.get("/flows/chat-basic/").content.decode()
    assert "Chat input" in html
    assert "Chat output" in html
    assert "open_ai_connection" in html
    assert "Missing" in html
    assert "/connections/new/?name=open_ai_connection" in html
    assert "promptflow-tools" in html
    assert "<svg" in html


def test_it_says_a_connection_exists_once_created(admin_client, import_flow, open_ai_connection):
    import_flow("chat-basic")
    html = admin_client.get("/flows/chat-basic/").content.decode()
    assert "Exists" in html
    assert "OpenAIConnection" in html


def test_it_serves_the_graph_as_svg(admin_client, import_flow):
    import_flow("web-classification-offline")
    response = admin_client.get("/flows/web-classification-offline/versions/1/dag.svg")
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.decode().count('class="dag-node"') == 4


def test_it_builds_the_test_form_from_the_inputs(admin_client, import_flow):
    import_flow("web-classification-offline")
    html = admin_client.get("/flows/web-classification-offline/versions/1/test/").content.decode()
    assert 'name="location"' in html
    assert 'value="LA"' in html
    assert 'name="url"' in html


def test_it_answers_an_htmx_test_with_the_run_fragment(admin_client, import_flow, django_capture_on_commit_callbacks):
    """The form posts with htmx and gets back only the polling run fragment."""
    import_flow("web-classification-offline")
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(
            "/flows/web-classification-offline/versions/1/test/",
            {"location": "LA", "url": "https://youtu.be/x"},
            headers={"HX-Request": "true"},
        )
    html = response.content.decode()
    run = TestRun.objects.get()
    assert html.lstrip().startswith('<div id="run"')
    assert f'hx-get="/flows/runs/{run.pk}/"' in html
    assert 'hx-trigger="every 1s"' in html
    assert "<html" not in html


def test_it_stops_polling_once_the_run_is_final(admin_client, import_flow):
    version = import_flow("web-classification-offline")
    run = TestRun.objects.create(flow_version=version, status="Completed", outputs={"category": "Movie"})
    html = admin_client.get(f"/flows/runs/{run.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in html
    assert 'data-output="category">Movie' in html


def test_it_redirects_to_the_run_page_without_javascript(admin_client, import_flow, django_capture_on_commit_callbacks):
    import_flow("web-classification-offline")
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post("/flows/web-classification-offline/versions/1/test/", {"location": "LA"})
    assert response.status_code == 302
    assert response["Location"] == TestRun.objects.get().get_absolute_url()


def test_it_shows_the_chat_box_for_a_chat_flow(admin_client, import_flow):
    import_flow("chat-stream-offline")
    html = admin_client.get("/flows/chat-stream-offline/versions/1/test/").content.decode()
    assert 'id="chat"' in html
    assert 'name="question"' in html
    assert 'name="chat_history"' not in html
    assert 'name="chat_session"' in html


def test_it_refuses_an_empty_chat_message(admin_client, import_flow):
    import_flow("chat-stream-offline")
    response = admin_client.post(
        "/flows/chat-stream-offline/versions/1/test/", {"question": " "}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 400
    assert "Type a message for &#x27;question&#x27;." in response.content.decode()
    assert not TestRun.objects.exists()


def test_it_holds_one_chat_turn_at_a_time(admin_client, import_flow):
    """While a turn runs, the box and Send render disabled and the server refuses another message."""
    version = import_flow("chat-stream-offline")
    session = uuid.uuid4()
    TestRun.objects.create(flow_version=version, chat_session=session, inputs={"question": "first"}, status="Running")
    url = f"/flows/chat-stream-offline/versions/1/test/?chat_session={session}"
    html = admin_client.get(url).content.decode()
    assert re.search(r'<input type="text" id="chat-input"[^>]* disabled>', html)
    assert re.search(r'<button type="submit"[^>]* disabled>Send</button>', html)
    response = admin_client.post(
        url, {"question": "second", "chat_session": str(session)}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 400
    assert "Wait for the answer to your last message before you send another." in response.content.decode()
    assert TestRun.objects.count() == 1
    TestRun.objects.update(status="Completed")
    html = admin_client.get(url).content.decode()
    assert not re.search(r"<button[^>]* disabled>Send", html)


def test_it_refuses_a_test_run_to_a_user_who_is_no_member(client, django_user_model, import_flow):
    import_flow("web-classification-offline")
    client.force_login(django_user_model.objects.create_user("stranger", password="stranger-pass-1"))
    response = client.post("/flows/web-classification-offline/versions/1/test/", {"location": "LA"})
    assert response.status_code == 404
    assert not TestRun.objects.exists()


def test_it_refuses_a_bulk_run_to_a_reader(client, viewer, import_flow):
    import_flow("chat-stream-offline")
    client.force_login(viewer)
    assert client.get("/flows/chat-stream-offline/versions/1/bulk-runs/new/").status_code == 403
    assert client.post("/flows/chat-stream-offline/versions/1/bulk-runs/", {}).status_code == 403
    html = client.get("/flows/chat-stream-offline/").content.decode()
    assert "Bulk test</a>" not in html and ">Deploy</button>" not in html


def test_it_refuses_a_bulk_run_without_data(admin_client, import_flow):
    import_flow("chat-stream-offline")
    response = admin_client.post("/flows/chat-stream-offline/versions/1/bulk-runs/", {})
    assert response.status_code == 400
    assert "Choose a JSONL data file" in response.content.decode()
