"""`flowdeploy connection`: promptflow's connection YAML in, no secret ever out."""

import pytest

from workspace.models import Connection

pytestmark = pytest.mark.django_db(transaction=True)

API_KEY = "sk-cli-test-5ecret-0099"
CONNECTION_YAML = f"""\
$schema: https://azuremlschemas.azureedge.net/promptflow/latest/OpenAIConnection.schema.json
name: local_llm
type: open_ai
api_key: "{API_KEY}"
base_url: http://127.0.0.1:9999/v1
"""


@pytest.fixture
def connection_file(tmp_path):
    path = tmp_path / "connection.yml"
    path.write_text(CONNECTION_YAML)
    return path


def test_it_creates_a_connection_from_promptflows_yaml(cli, connection_file):
    result = cli("connection", "create", "-f", connection_file)
    assert result.code == 0, result.err
    assert result.json["name"] == "local_llm" and result.json["secret_keys"] == ["api_key"]
    assert API_KEY not in result.out
    assert Connection.objects.get(name="local_llm").get_secrets() == {"api_key": API_KEY}


def test_it_lists_and_shows_connections_without_secrets(cli, connection_file):
    cli("connection", "create", "-f", connection_file)
    listing = cli("connection", "list")
    shown = cli("connection", "show", "-n", "local_llm")
    assert [c["name"] for c in listing.json] == ["local_llm"]
    assert shown.json["configs"] == {"base_url": "http://127.0.0.1:9999/v1"}
    assert API_KEY not in listing.out + shown.out


def test_it_prints_the_studios_message_naming_the_field(cli, tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("name: local_llm\ntype: open_ai\napi_key: k\nbase_url: not-a-url\n")
    result = cli("connection", "create", "-f", path)
    assert result.code == 1
    assert result.err.strip() == "API base: enter an http:// or https:// URL, not 'not-a-url'."


def test_it_points_at_the_line_of_a_yaml_error(cli, tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("name: x\ntype: open_ai\napi_key: [unclosed\n")
    result = cli("connection", "create", "-f", path)
    assert result.code == 1
    assert result.err.startswith(f"{path}: YAML error at line")


def test_it_updates_a_connection_keeping_the_secret(cli, connection_file, tmp_path):
    cli("connection", "create", "-f", connection_file)
    update = tmp_path / "update.yml"
    update.write_text("name: local_llm\ntype: open_ai\nbase_url: http://127.0.0.1:7777/v1\n")
    result = cli("connection", "update", "-f", update)
    assert result.code == 0, result.err
    assert result.json["configs"] == {"base_url": "http://127.0.0.1:7777/v1"}
    assert Connection.objects.get(name="local_llm").get_secrets() == {"api_key": API_KEY}


def test_it_deletes_only_with_confirmation(cli, connection_file):
    cli("connection", "create", "-f", connection_file)
    refused = cli("connection", "delete", "-n", "local_llm")
    assert refused.code == 1 and "add --yes" in refused.err
    assert cli("connection", "delete", "-n", "local_llm", "--yes").code == 0
    missing = cli("connection", "show", "-n", "local_llm")
    assert missing.code == 1 and missing.err.strip() == "There is no connection named 'local_llm'."
