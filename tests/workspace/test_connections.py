import logging

import pytest
from roles import member

from django.db import connection as db
from django.urls import reverse

from workspace.connections import (
    ConnectionSpec,
    ConnectionSpecError,
    connection_type_names,
    parse_promptflow_yaml,
    promptflow_connections,
    save_connection,
)
from workspace.models import AuditEvent, Connection, Project, ProjectRole

pytestmark = pytest.mark.django_db

# OPENAI_KEY and CUSTOM_SECRET are the defaults of conftest's make_connection.
OPENAI_KEY = "sk-test-OPENAI-5ecret-0001"
AZURE_KEY = "azure-5ecret-key-0002"
SERP_KEY = "serp-5ecret-key-0003"
SERVERLESS_KEY = "serverless-5ecret-key-0004"
CUSTOM_SECRET = "custom-5ecret-value-0005"

CREATE = reverse("workspace:connection_create")
LIST = reverse("workspace:connections")
ALL_SECRETS = [OPENAI_KEY, AZURE_KEY, SERP_KEY, SERVERLESS_KEY, CUSTOM_SECRET]

FORMS = {
    "open_ai": {"api_key": OPENAI_KEY, "base_url": "http://127.0.0.1:9999/v1", "organization": ""},
    "azure_open_ai": {
        "api_key": AZURE_KEY,
        "api_base": "https://res.openai.azure.com/",
        "api_type": "",
        "api_version": "",
    },
    "serp": {"api_key": SERP_KEY},
    "serverless": {"api_key": SERVERLESS_KEY, "api_base": "https://llama.eastus2.models.ai.azure.com"},
    "custom": {
        "pair-0-key": "endpoint",
        "pair-0-value": "https://search.example.com",
        "pair-1-key": "token",
        "pair-1-value": CUSTOM_SECRET,
        "pair-1-secret": "on",
        "pair-2-key": "",
        "pair-2-value": "",
    },
}


def _post_create(client, connection_type, name="conn1", **overrides):
    data = {"type": connection_type, "name": name, **FORMS[connection_type], **overrides}
    return client.post(CREATE, data)


def _raw_rows() -> str:
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM workspace_connection")
        rows = cursor.fetchall()
        cursor.execute("SELECT * FROM workspace_auditevent")
        rows += cursor.fetchall()
    return repr(rows)


# --- create ----------------------------------------------------------------------------------


@pytest.mark.parametrize("connection_type", list(FORMS))
def test_it_creates_each_type_from_the_page(admin_client, connection_type):
    """Posting the New connection form saves a connection of that type and returns to the list."""
    response = _post_create(admin_client, connection_type, name=f"my-{connection_type}")
    assert response.status_code == 302
    assert response.url == LIST
    saved = Connection.objects.get(name=f"my-{connection_type}")
    assert saved.type == connection_type
    assert saved.created_by.username == "admin"
    page = admin_client.get(LIST)
    assert f"Connection my-{connection_type} created." in page.content.decode()


def test_it_fills_azure_defaults():
    """An Azure OpenAI connection gets api_type azure and api_version 2024-02-01 when left blank."""
    spec = ConnectionSpec("aoai", "azure_open_ai", {"api_base": "https://r.openai.azure.com/"}, {"api_key": "k"})
    saved = save_connection(spec)
    assert saved.configs == {
        "api_base": "https://r.openai.azure.com/",
        "api_type": "azure",
        "api_version": "2024-02-01",
    }


def test_it_refuses_a_bad_name_naming_the_rule(admin_client):
    """A name with a space or starting with a digit is refused with a message naming the rule."""
    for bad in ("my conn", "1conn", "a" * 65, "conn!"):
        response = _post_create(admin_client, "serp", name=bad)
        assert response.status_code == 400
        html = response.content.decode()
        assert "Name" in html
        assert "starts with a letter" in html
    assert not Connection.objects.exists()


def test_it_refuses_a_missing_name(admin_client):
    """An empty name is refused with a message naming the Name field."""
    response = _post_create(admin_client, "serp", name="")
    assert response.status_code == 400
    assert "Name: enter a name" in response.content.decode()


def test_it_refuses_azure_without_api_base(admin_client):
    """Azure OpenAI without an API base is refused with a message naming API base."""
    response = _post_create(admin_client, "azure_open_ai", api_base="")
    assert response.status_code == 400
    assert "API base: this field is required for Azure OpenAI connections." in response.content.decode()
    assert not Connection.objects.exists()


def test_it_refuses_an_api_base_that_is_not_a_url(admin_client):
    """An API base that is not http(s) is refused naming the field."""
    response = _post_create(admin_client, "open_ai", base_url="ftp://example.com")
    assert response.status_code == 400
    assert "API base: enter an http:// or https:// URL" in response.content.decode()


def test_it_refuses_a_missing_api_key(admin_client):
    """A new connection without its API key is refused naming API key, and the page shows no secret."""
    response = _post_create(admin_client, "open_ai", api_key="")
    assert response.status_code == 400
    assert "API key: this field is required for OpenAI connections." in response.content.decode()


def test_it_refuses_custom_without_pairs(admin_client):
    """A Custom connection without any key-value pair is refused naming the pairs."""
    data = {"type": "custom", "name": "c1", "pair-0-key": "", "pair-0-value": ""}
    response = admin_client.post(CREATE, data)
    assert response.status_code == 400
    assert "a Custom connection needs at least one key-value pair" in response.content.decode()


def test_it_refuses_a_custom_value_without_key(admin_client):
    """A row with a value and no key is refused naming the row."""
    data = {"type": "custom", "name": "c1", "pair-0-key": "", "pair-0-value": "x"}
    response = admin_client.post(CREATE, data)
    assert response.status_code == 400
    assert "row 1 has a value but no key" in response.content.decode()


def test_it_refuses_a_duplicate_name(admin_client, make_connection):
    """Creating a connection whose name exists is refused naming the name."""
    make_connection(name="gpt")
    response = _post_create(admin_client, "serp", name="gpt")
    assert response.status_code == 400
    assert "a connection named &#x27;gpt&#x27; already exists" in response.content.decode()


def test_it_does_not_echo_a_secret_on_a_form_error(admin_client):
    """When the form comes back with an error, typed secrets are not rendered back."""
    response = _post_create(admin_client, "azure_open_ai", api_base="")
    assert AZURE_KEY not in response.content.decode()
    response = _post_create(admin_client, "custom", name="bad name")
    assert CUSTOM_SECRET not in response.content.decode()


# --- secrets ---------------------------------------------------------------------------------


def test_it_encrypts_secrets_at_rest(admin_client):
    """The raw database rows hold no secret, only a Fernet token."""
    for connection_type in FORMS:
        _post_create(admin_client, connection_type, name=f"c-{connection_type}")
    raw = _raw_rows()
    for secret in ALL_SECRETS:
        assert secret not in raw
    token = Connection.objects.get(name="c-open_ai").secrets_encrypted
    assert token.startswith("gAAAA")
    assert Connection.objects.get(name="c-open_ai").get_secrets() == {"api_key": OPENAI_KEY}


def test_it_never_shows_a_secret_in_pages_admin_or_logs(admin_client, caplog):
    """Across create, edit and every page that shows a connection, no secret reaches HTML or the logs."""
    caplog.set_level(logging.DEBUG)
    pages = []
    for connection_type in FORMS:
        name = f"c-{connection_type}"
        _post_create(admin_client, connection_type, name=name)
        edit = reverse("workspace:connection_edit", args=[name])
        pages.append(admin_client.get(edit))
        pages.append(admin_client.post(edit, {**FORMS[connection_type], "api_key": ""}))
        pages.append(admin_client.get(reverse("workspace:connection_delete", args=[name])))
        pk = Connection.objects.get(name=name).pk
        pages.append(admin_client.get(reverse("admin:workspace_connection_change", args=[pk])))
    pages.append(admin_client.get(LIST))
    pages.append(admin_client.get(reverse("admin:workspace_connection_changelist")))
    pages.append(admin_client.get(reverse("admin:workspace_auditevent_changelist")))
    for response in pages:
        assert response.status_code in (200, 302)
        html = response.content.decode()
        for secret in ALL_SECRETS:
            assert secret not in html
    admin_change = pages[3].content.decode()
    assert "api_key: ••••••••" in admin_change
    logged = caplog.text + repr([r.args for r in caplog.records])
    for secret in ALL_SECRETS:
        assert secret not in logged
    assert "Connection c-open_ai (open_ai) created" in caplog.text


def test_it_keeps_secrets_out_of_repr_str_and_errors(make_connection):
    """repr/str of a connection and of a spec, and validation errors, do not contain secrets."""
    saved = make_connection(name="gpt")
    spec = ConnectionSpec("gpt", "open_ai", {"base_url": "nope"}, {"api_key": OPENAI_KEY})
    assert OPENAI_KEY not in repr(saved) + str(saved) + repr(spec) + str(spec)
    with pytest.raises(ConnectionSpecError) as caught:
        save_connection(spec, update=True)
    assert OPENAI_KEY not in str(caught.value) + repr(caught.value.errors)


def test_it_keeps_the_saved_key_when_edit_leaves_it_blank(admin_client, make_connection):
    """Saving the edit form with an empty API key keeps the saved one and changes the rest."""
    make_connection(name="gpt")
    response = admin_client.post(
        reverse("workspace:connection_edit", args=["gpt"]),
        {"api_key": "", "base_url": "http://127.0.0.1:9999/v1", "organization": "org-1"},
    )
    assert response.status_code == 302
    saved = Connection.objects.get(name="gpt")
    assert saved.get_secrets() == {"api_key": OPENAI_KEY}
    assert saved.configs == {"base_url": "http://127.0.0.1:9999/v1", "organization": "org-1"}


def test_it_replaces_the_key_when_edit_gives_one(admin_client, make_connection):
    """Saving the edit form with a new API key replaces the saved one."""
    make_connection(name="gpt")
    admin_client.post(reverse("workspace:connection_edit", args=["gpt"]), {"api_key": "sk-new-key"})
    assert Connection.objects.get(name="gpt").get_secrets() == {"api_key": "sk-new-key"}


def test_it_shows_saved_secrets_masked_on_edit(admin_client, make_connection):
    """The edit page shows the key as saved, with an empty password input and how to keep it."""
    make_connection(name="gpt")
    html = admin_client.get(reverse("workspace:connection_edit", args=["gpt"])).content.decode()
    assert "•••••••• (saved)" in html
    assert "Leave blank to keep the saved key." in html
    assert 'type="password" name="api_key"' in html
    assert 'name="name"' not in html and 'name="type"' not in html


def test_it_does_not_change_name_or_type_on_edit(admin_client, make_connection):
    """Name and type posted to the edit page are ignored."""
    make_connection(name="gpt")
    admin_client.post(
        reverse("workspace:connection_edit", args=["gpt"]), {"name": "other", "type": "serp", "api_key": ""}
    )
    saved = Connection.objects.get()
    assert (saved.name, saved.type) == ("gpt", "open_ai")


def test_it_edits_custom_pairs_keeping_saved_secrets(admin_client, make_connection):
    """On a Custom connection, a blank saved secret is kept, a new pair is added, a cleared row is dropped."""
    make_connection(name="search", type="custom", configs={"endpoint": "https://a", "region": "eu"})
    edit = reverse("workspace:connection_edit", args=["search"])
    html = admin_client.get(edit).content.decode()
    assert CUSTOM_SECRET not in html
    assert 'value="endpoint"' in html and 'value="https://a"' in html
    # Rows are: endpoint, region, token (secret), then blank rows.
    response = admin_client.post(
        edit,
        {
            "pair-0-key": "endpoint",
            "pair-0-value": "https://b",
            "pair-1-key": "",
            "pair-1-value": "",
            "pair-2-key": "token",
            "pair-2-value": "",
            "pair-2-secret": "on",
            "pair-3-key": "extra",
            "pair-3-value": "new-secret",
            "pair-3-secret": "on",
        },
    )
    assert response.status_code == 302
    saved = Connection.objects.get(name="search")
    assert saved.configs == {"endpoint": "https://b"}
    assert saved.get_secrets() == {"token": CUSTOM_SECRET, "extra": "new-secret"}


def test_it_records_audit_events_without_secrets(admin_client):
    """Create, update and delete each write an audit event naming the connection and no secret."""
    _post_create(admin_client, "open_ai", name="gpt")
    admin_client.post(reverse("workspace:connection_edit", args=["gpt"]), {"api_key": "sk-replaced"})
    admin_client.post(reverse("workspace:connection_delete", args=["gpt"]))
    events = list(
        AuditEvent.objects.filter(action__startswith="connection.")
        .order_by("id")
        .values_list("action", "target", "detail")
    )
    assert [(a, t) for a, t, _ in events] == [
        ("connection.create", "gpt"),
        ("connection.update", "gpt"),
        ("connection.delete", "gpt"),
    ]
    assert events[1][2]["replaced_secrets"] == ["api_key"]
    assert OPENAI_KEY not in repr(events) and "sk-replaced" not in repr(events)


# --- list, delete ----------------------------------------------------------------------------


def test_it_lists_connections_with_target(admin_client, make_connection):
    """The list shows name, type, API base and who created it."""
    make_connection(name="local", configs={"base_url": "http://127.0.0.1:9999/v1"})
    html = admin_client.get(LIST).content.decode()
    assert "local" in html and "OpenAI" in html and "http://127.0.0.1:9999/v1" in html
    assert "New connection" in html


def test_it_shows_an_empty_state(admin_client):
    """With no connections the list explains what a connection is."""
    assert "No connections yet." in admin_client.get(LIST).content.decode()


def test_it_confirms_then_deletes(admin_client, make_connection):
    """GET delete names the connection; POST deletes it and says so."""
    make_connection(name="gpt")
    url = reverse("workspace:connection_delete", args=["gpt"])
    assert "Delete connection gpt?" in admin_client.get(url).content.decode()
    assert Connection.objects.filter(name="gpt").exists()
    response = admin_client.post(url, follow=True)
    assert "Connection gpt deleted." in response.content.decode()
    assert not Connection.objects.exists()


def test_it_404s_for_an_unknown_connection(admin_client):
    """Edit and delete of a missing connection are 404."""
    assert admin_client.get(reverse("workspace:connection_edit", args=["nope"])).status_code == 404
    assert admin_client.get(reverse("workspace:connection_delete", args=["nope"])).status_code == 404


# --- permissions -----------------------------------------------------------------------------


def test_it_requires_login(client):
    """Anonymous visitors are sent to sign in."""
    response = client.get(LIST)
    assert response.status_code == 302
    assert reverse("login") in response.url


def test_it_forbids_changes_without_permissions(viewer_client, make_connection):
    """A Reader can view the list but gets 403 on changes."""
    make_connection(name="gpt")
    html = viewer_client.get(LIST).content.decode()
    assert "gpt" in html
    assert "New connection" not in html and "Edit</a>" not in html
    assert viewer_client.get(CREATE).status_code == 403
    assert _post_create(viewer_client, "serp", name="x").status_code == 403
    assert viewer_client.get(reverse("workspace:connection_edit", args=["gpt"])).status_code == 403
    assert viewer_client.post(reverse("workspace:connection_edit", args=["gpt"]), {}).status_code == 403
    assert viewer_client.get(reverse("workspace:connection_delete", args=["gpt"])).status_code == 403
    assert viewer_client.post(reverse("workspace:connection_delete", args=["gpt"])).status_code == 403
    assert viewer_client.get(reverse("workspace:connection_pair_row")).status_code == 403
    assert Connection.objects.filter(name="gpt").exists()


def test_it_allows_users_with_permissions(editor_client):
    """A Contributor can manage connections."""
    assert _post_create(editor_client, "serp", name="s1").status_code == 302
    edit = reverse("workspace:connection_edit", args=["s1"])
    assert editor_client.post(edit, {"api_key": ""}).status_code == 302
    assert editor_client.post(reverse("workspace:connection_delete", args=["s1"])).status_code == 302


def test_it_allows_owners(client, django_user_model):
    """Owners of the project may manage connections."""
    owner = member(django_user_model.objects.create_user("owner", password="pw-owner-123"), ProjectRole.OWNER)
    client.force_login(owner)
    assert client.get(CREATE).status_code == 200


def test_it_refuses_staff_without_a_role(client, django_user_model, make_connection):
    """Being staff gives no rights in a project: a staff user who is no member sees no connection."""
    make_connection(name="gpt")
    staff = django_user_model.objects.create_user("staff", password="pw-staff-123", is_staff=True)
    client.force_login(staff)
    assert "gpt" not in client.get(LIST).content.decode()
    assert client.get(reverse("workspace:connection_edit", args=["gpt"])).status_code == 404
    assert client.get(CREATE).status_code == 403


def test_it_hides_other_projects_connections(client, django_user_model, make_connection):
    """A member of another project does not see the default project's connections (404, not 403), and creates
    connections in their own project."""
    make_connection(name="gpt")
    other = Project.objects.create(name="other-team")
    user = member(django_user_model.objects.create_user("ann", password="pw-ann-12345"), "contributor", other)
    client.force_login(user)
    assert "gpt" not in client.get(LIST).content.decode()
    assert client.get(reverse("workspace:connection_edit", args=["gpt"])).status_code == 404
    assert client.post(reverse("workspace:connection_delete", args=["gpt"])).status_code == 404
    assert "in project other-team" in client.get(CREATE).content.decode()
    assert _post_create(client, "serp", name="mine").status_code == 302
    assert Connection.objects.get(name="mine").project == other


# --- htmx and no-JS form behaviour -----------------------------------------------------------


def test_it_swaps_type_fields_with_htmx(admin_client):
    """With HX-Request the type switch returns only the type-specific fields."""
    response = admin_client.get(CREATE, {"type": "azure_open_ai"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="type-fields"')
    assert "<html" not in html and 'name="name"' not in html
    assert 'name="api_base"' in html and 'name="api_version"' in html and 'placeholder="2024-02-01"' in html


def test_it_renders_type_fields_without_js(admin_client):
    """A plain GET ?type=custom renders the whole page with that type's fields selected."""
    html = admin_client.get(CREATE, {"type": "custom"}).content.decode()
    assert "<html" in html
    assert '<option value="custom" selected>' in html
    assert html.count('name="pair-') == 15  # 5 rows of key, value, secret
    assert 'hx-get="/connections/new/"' in html and 'hx-params="type"' in html


def test_it_defaults_to_openai_with_api_base(admin_client):
    """The New connection page starts with OpenAI and its API base field."""
    html = admin_client.get(CREATE).content.decode()
    assert '<option value="open_ai" selected>' in html
    assert "API base" in html and "http://127.0.0.1:9999/v1" in html


def test_it_adds_a_custom_row_with_htmx(admin_client):
    """The Add row action returns one row and an out-of-band button for the next index."""
    response = admin_client.get(
        reverse("workspace:connection_pair_row"), {"index": "5"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert 'name="pair-5-key"' in html and 'name="pair-5-value"' in html
    assert 'hx-swap-oob="true"' in html and "index=6" in html


def test_it_adds_a_custom_row_without_js(admin_client):
    """Without JavaScript, Add row submits the form and shows one more row, saving nothing."""
    data = {"type": "custom", "name": "c1", "add_row": "1"}
    data.update({f"pair-{i}-key": "" for i in range(5)})
    data["pair-0-key"] = "endpoint"
    data["pair-0-value"] = "https://x"
    html = admin_client.post(CREATE, data).content.decode()
    assert 'name="pair-5-key"' in html
    assert 'value="endpoint"' in html
    assert not Connection.objects.exists()


# --- promptflow ------------------------------------------------------------------------------


def test_it_gives_promptflow_connections_for_each_type(make_connection):
    """promptflow_connections returns promptflow's executor dict format for every type."""
    make_connection(name="oai", configs={"base_url": "http://127.0.0.1:9999/v1", "organization": "org"})
    make_connection(name="oai-plain", secrets={"api_key": "k2"})
    make_connection(
        name="aoai",
        type="azure_open_ai",
        configs={"api_base": "https://r.openai.azure.com/"},
        secrets={"api_key": "k3"},
    )
    make_connection(name="serp", type="serp", secrets={"api_key": "k4"})
    make_connection(name="sls", type="serverless", configs={"api_base": "https://s.example"}, secrets={"api_key": "k5"})
    make_connection(name="cust", type="custom", configs={"endpoint": "https://e"}, secrets={"token": "t", "b": "x"})
    result = promptflow_connections()
    assert result == {
        "oai": {
            "type": "OpenAIConnection",
            "name": "oai",
            "module": "promptflow.connections",
            "value": {"api_key": OPENAI_KEY, "base_url": "http://127.0.0.1:9999/v1", "organization": "org"},
            "secret_keys": ["api_key"],
        },
        "oai-plain": {
            "type": "OpenAIConnection",
            "name": "oai-plain",
            "module": "promptflow.connections",
            "value": {"api_key": "k2"},
            "secret_keys": ["api_key"],
        },
        "aoai": {
            "type": "AzureOpenAIConnection",
            "name": "aoai",
            "module": "promptflow.connections",
            "value": {
                "api_key": "k3",
                "api_base": "https://r.openai.azure.com/",
                "api_type": "azure",
                "api_version": "2024-02-01",
            },
            "secret_keys": ["api_key"],
        },
        "serp": {
            "type": "SerpConnection",
            "name": "serp",
            "module": "promptflow.connections",
            "value": {"api_key": "k4"},
            "secret_keys": ["api_key"],
        },
        "sls": {
            "type": "ServerlessConnection",
            "name": "sls",
            "module": "promptflow.connections",
            "value": {"api_key": "k5", "api_base": "https://s.example"},
            "secret_keys": ["api_key"],
        },
        "cust": {
            "type": "CustomConnection",
            "name": "cust",
            "module": "promptflow.connections",
            "value": {"endpoint": "https://e", "token": "t", "b": "x"},
            "secret_keys": ["b", "token"],
        },
    }


def test_it_filters_promptflow_connections_by_name(make_connection):
    """Only the named connections that exist are returned."""
    make_connection(name="a")
    make_connection(name="b")
    assert list(promptflow_connections(["a", "missing"])) == ["a"]
    assert promptflow_connections([]) == {}


def test_it_maps_names_to_promptflow_classes(make_connection):
    """connection_type_names gives each connection's promptflow class and nothing secret."""
    make_connection(name="a")
    make_connection(name="c", type="custom")
    assert connection_type_names() == {"a": "OpenAIConnection", "c": "CustomConnection"}


AZURE_YAML = """\
$schema: https://azuremlschemas.azureedge.net/promptflow/latest/AzureOpenAIConnection.schema.json
name: azure_open_ai_connection
type: azure_open_ai
api_key: "<to-be-replaced>"
api_base: "https://<name>.openai.azure.com/"
api_type: "azure"
api_version: "2023-03-15-preview"
"""

OPENAI_YAML = """\
$schema: https://azuremlschemas.azureedge.net/promptflow/latest/OpenAIConnection.schema.json
name: open_ai_connection
type: open_ai
api_key: "<user-input>"
organization: "" # optional
base_url: "http://127.0.0.1:9999/v1"
"""

CUSTOM_YAML = """\
$schema: https://azuremlschemas.azureedge.net/promptflow/latest/CustomConnection.schema.json
name: custom_connection
type: custom
configs:
  endpoint: "<your-endpoint>"
  other_config: "other_value"
secrets:  # required
  my_key: "<your-api-key>"
"""

SERP_YAML = """\
$schema: https://azuremlschemas.azureedge.net/promptflow/latest/SerpConnection.schema.json
name: serp_connection
type: serp
api_key: "<to-be-replaced>"
"""


def test_it_parses_promptflow_connection_yaml():
    """The samples from promptflow's docs parse into specs with promptflow's field names."""
    azure = parse_promptflow_yaml(AZURE_YAML)
    assert (azure.name, azure.type) == ("azure_open_ai_connection", "azure_open_ai")
    assert azure.configs == {
        "api_base": "https://<name>.openai.azure.com/",
        "api_type": "azure",
        "api_version": "2023-03-15-preview",
    }
    assert azure.secrets == {"api_key": "<to-be-replaced>"}
    openai = parse_promptflow_yaml(OPENAI_YAML)
    assert openai.configs == {"organization": "", "base_url": "http://127.0.0.1:9999/v1"}
    custom = parse_promptflow_yaml(CUSTOM_YAML)
    assert custom.configs == {"endpoint": "<your-endpoint>", "other_config": "other_value"}
    assert custom.secrets == {"my_key": "<your-api-key>"}
    serp = parse_promptflow_yaml(SERP_YAML)
    assert (serp.type, serp.secrets) == ("serp", {"api_key": "<to-be-replaced>"})


def test_it_accepts_api_base_for_openai_yaml():
    """An OpenAI YAML may say api_base; it is stored as promptflow's base_url."""
    spec = parse_promptflow_yaml("name: x\ntype: open_ai\napi_key: k\napi_base: http://localhost:9999/v1\n")
    assert spec.configs == {"base_url": "http://localhost:9999/v1"}


def test_it_saves_parsed_yaml(make_connection):
    """A parsed YAML saves through save_connection like the form does."""
    save_connection(parse_promptflow_yaml(CUSTOM_YAML))
    save_connection(parse_promptflow_yaml(OPENAI_YAML))
    result = promptflow_connections(["custom_connection", "open_ai_connection"])
    assert result["custom_connection"]["secret_keys"] == ["my_key"]
    assert result["open_ai_connection"]["value"] == {
        "api_key": "<user-input>",
        "base_url": "http://127.0.0.1:9999/v1",
    }


def test_it_rejects_an_unknown_type_naming_it():
    """An unknown type is refused with a message naming the type and the supported ones."""
    with pytest.raises(ConnectionSpecError) as caught:
        parse_promptflow_yaml("name: x\ntype: cognitive_search\napi_key: k\n")
    assert "type" in caught.value.errors
    assert "'cognitive_search'" in str(caught.value) and "azure_open_ai" in str(caught.value)


def test_it_rejects_bad_yaml_naming_the_field_or_line():
    """Unknown fields, missing names and YAML syntax errors name what is wrong."""
    with pytest.raises(ConnectionSpecError) as caught:
        parse_promptflow_yaml("name: x\ntype: serp\napi_key: k\nendpoint: e\n")
    assert "endpoint: not a field of serp connections" in str(caught.value)
    with pytest.raises(ConnectionSpecError) as caught:
        parse_promptflow_yaml("type: serp\napi_key: k\n")
    assert "name: missing" in str(caught.value)
    with pytest.raises(ConnectionSpecError) as caught:
        parse_promptflow_yaml("name: x\ntype: custom\nconfigs: [1, 2]\n")
    assert "configs: expected a mapping" in str(caught.value)
    with pytest.raises(ConnectionSpecError) as caught:
        parse_promptflow_yaml("name: x\n  type: : serp\n")
    assert "line 2" in str(caught.value)
    with pytest.raises(ConnectionSpecError) as caught:
        save_connection(parse_promptflow_yaml("name: x\ntype: azure_open_ai\napi_key: k\n"))
    assert "API base: this field is required" in str(caught.value)
