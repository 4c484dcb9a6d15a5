"""`flowdeploy login`: the studio's URL and a token in ~/.config/flowdeploy/config.json, mode 600."""

import json
import stat

import pytest
from cli_support import PASSWORD

from api.models import PersonalAccessToken

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_logs_in_with_a_password_and_stores_a_private_config(run, live_server, staff, home):
    result = run("login", "--url", live_server.url, "--username", "ops", "--password", PASSWORD)
    assert result.code == 0, result.err
    config = home / "config" / "flowdeploy" / "config.json"
    assert result.json == {"url": live_server.url, "username": "ops", "config": str(config)}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    stored = json.loads(config.read_text())
    assert stored["url"] == live_server.url and stored["token"].startswith("fdp_")
    assert PersonalAccessToken.objects.get(user=staff).name == "flowdeploy-cli"
    listing = run("online-endpoint", "list")
    assert listing.code == 0, listing.err
    assert listing.json == []


def test_it_uses_the_home_folder_without_xdg_config_home(run, live_server, staff, home, monkeypatch):
    monkeypatch.delenv("XDG_CONFIG_HOME")
    run("login", "--url", live_server.url + "/api/v1/", "--username", "ops", "--password", PASSWORD)
    stored = json.loads((home / "home" / ".config" / "flowdeploy" / "config.json").read_text())
    assert stored["url"] == live_server.url


def test_it_refuses_a_wrong_password_without_a_traceback(run, live_server, staff, home):
    result = run("login", "--url", live_server.url, "--username", "ops", "--password", "wrong-password")
    assert result.code == 1
    assert result.err.strip() == "Wrong username or password."
    assert not (home / "config" / "flowdeploy").exists()


def test_it_logs_in_with_a_token_after_checking_it(run, live_server, staff, home):
    _, token = PersonalAccessToken.issue(staff)
    result = run("login", "--url", live_server.url, "--token", token)
    assert result.code == 0 and result.json["username"] == "ops"
    bad = run("login", "--url", live_server.url, "--token", "fdp_nope")
    assert bad.code == 1
    assert "not valid" in bad.err


def test_it_lets_the_environment_override_the_config_file(run, live_server, staff, reader, monkeypatch):
    run("login", "--url", live_server.url, "--username", "ops", "--password", PASSWORD)
    monkeypatch.setenv("FLOWDEPLOY_TOKEN", PersonalAccessToken.issue(reader)[1])
    result = run("online-endpoint", "create", "--name", "ep-env")
    assert result.code == 1
    assert "You are Reader of project 'default'" in result.err
    monkeypatch.setenv("FLOWDEPLOY_URL", "http://127.0.0.1:9")
    result = run("online-endpoint", "list")
    assert result.code == 1 and result.err.startswith("Cannot reach the studio at http://127.0.0.1:9")


def test_it_says_how_to_log_in_when_nothing_is_configured(run):
    result = run("connection", "list")
    assert result.code == 1
    assert "Not logged in: run `flowdeploy login" in result.err


def test_it_reports_usage_errors_without_a_traceback(run):
    result = run("online-endpoint", "show")
    assert result.code == 2
    assert "the following arguments are required: -n/--name" in result.err
    assert "Traceback" not in result.err
