"""The secret key: DJANGO_SECRET_KEY or the file `make run` creates, the same for every process, never a public one."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from serving import auth, secret_key

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_KEY = "flowdeploy-insecure-development-key-change-me"


def _env(data_dir: Path, **values: str) -> dict[str, str]:
    return {"FLOWDEPLOY_DATA_DIR": str(data_dir), **values}


def test_it_creates_a_private_key_file_on_the_first_start(tmp_path):
    env = _env(tmp_path / "data")
    created = secret_key.ensure_file(env)
    assert created == tmp_path / "data" / "secret-key"
    assert stat.S_IMODE(created.stat().st_mode) == 0o600
    key = secret_key.find(env)
    assert len(key) >= 60
    assert [p.name for p in created.parent.iterdir()] == ["secret-key"]  # no partial file left behind


def test_it_reuses_the_key_file_on_the_next_start(tmp_path):
    env = _env(tmp_path)
    secret_key.ensure_file(env)
    first = secret_key.find(env)
    assert secret_key.ensure_file(env) is None
    assert secret_key.find(env) == first


def test_it_prefers_the_environment_variable_and_then_writes_no_file(tmp_path):
    env = _env(tmp_path, DJANGO_SECRET_KEY="a-key-from-the-environment")
    assert secret_key.ensure_file(env) is None
    assert not (tmp_path / "secret-key").exists()
    (tmp_path / "secret-key").write_text("a-key-from-the-file\n")
    assert secret_key.find(env) == "a-key-from-the-environment"
    assert secret_key.find(_env(tmp_path)) == "a-key-from-the-file"


def test_it_reads_the_file_flowdeploy_secret_key_file_names(tmp_path):
    elsewhere = tmp_path / "keys" / "studio.key"
    env = _env(tmp_path / "data", FLOWDEPLOY_SECRET_KEY_FILE=str(elsewhere))
    assert secret_key.ensure_file(env) == elsewhere
    assert secret_key.find(env) == elsewhere.read_text().strip()
    assert not (tmp_path / "data" / "secret-key").exists()


@pytest.mark.parametrize("key", [PUBLIC_KEY, "change-me-to-a-long-random-string"])
def test_it_refuses_the_published_keys(tmp_path, key):
    with pytest.raises(secret_key.SecretKeyError) as caught:
        secret_key.find(_env(tmp_path, DJANGO_SECRET_KEY=key))
    assert "DJANGO_SECRET_KEY" in str(caught.value)
    (tmp_path / "secret-key").write_text(key)
    with pytest.raises(secret_key.SecretKeyError):
        secret_key.find(_env(tmp_path))


def test_it_says_how_to_set_a_key_when_there_is_none(tmp_path):
    with pytest.raises(secret_key.SecretKeyError) as caught:
        secret_key.find(_env(tmp_path))
    message = str(caught.value)
    assert "DJANGO_SECRET_KEY is not set" in message
    assert str(tmp_path / "secret-key") in message
    assert "make run" in message


def _django_setup(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SECRET_KEY", "FLOWDEPLOY_SECRET_KEY"}}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('configured')"],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_settings_refuse_the_public_default_key(tmp_path):
    result = _django_setup(_env(tmp_path, DJANGO_SECRET_KEY=PUBLIC_KEY))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "Set DJANGO_SECRET_KEY" in result.stderr


def test_the_settings_refuse_to_start_without_a_key(tmp_path):
    result = _django_setup(_env(tmp_path))
    assert result.returncode != 0
    assert "ImproperlyConfigured: No secret key" in result.stderr


def test_the_settings_refuse_a_public_flowdeploy_secret_key(tmp_path):
    result = _django_setup(_env(tmp_path, DJANGO_SECRET_KEY="a-private-key", FLOWDEPLOY_SECRET_KEY=PUBLIC_KEY))
    assert result.returncode != 0
    assert "FLOWDEPLOY_SECRET_KEY holds a published example key" in result.stderr


def test_the_settings_read_the_key_file_make_run_created(tmp_path):
    env = _env(tmp_path)
    secret_key.ensure_file(env)
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    base = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SECRET_KEY", "FLOWDEPLOY_SECRET_KEY"}}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == secret_key.find(env)


def test_the_gateway_signs_with_the_same_key_file(tmp_path, monkeypatch):
    """Without FLOWDEPLOY_SECRET_KEY, the gateway's key comes from the file, as the studio's does."""
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    monkeypatch.delenv("FLOWDEPLOY_SECRET_KEY", raising=False)
    monkeypatch.setenv("FLOWDEPLOY_DATA_DIR", str(tmp_path))
    secret_key.ensure_file()
    studio_key = auth.signing_key(secret_key.find())  # what the studio signs with (settings.SECRET_KEY)
    assert auth.signing_key() == studio_key
    token = auth.issue_token("ep-file", studio_key)["accessToken"]
    assert auth.token_endpoint(token, auth.signing_key()) == "ep-file"


def test_the_gateway_has_no_fallback_key(tmp_path, monkeypatch):
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    monkeypatch.delenv("FLOWDEPLOY_SECRET_KEY", raising=False)
    monkeypatch.setenv("FLOWDEPLOY_DATA_DIR", str(tmp_path))
    with pytest.raises(secret_key.SecretKeyError):
        auth.signing_key()
    monkeypatch.setenv("FLOWDEPLOY_SECRET_KEY", PUBLIC_KEY)
    with pytest.raises(secret_key.SecretKeyError):
        auth.signing_key()


def test_connection_secrets_still_derive_from_the_django_key(settings):
    """With FLOWDEPLOY_SECRET_KEY empty, connection secrets are encrypted with a key derived from SECRET_KEY."""
    from workspace import crypto

    settings.FLOWDEPLOY_SECRET_KEY = ""
    settings.SECRET_KEY = "a-file-key-for-this-test"
    token = crypto.encrypt_json({"api_key": "sk-1"})
    assert crypto.decrypt_json(token) == {"api_key": "sk-1"}
    settings.SECRET_KEY = "another-key"
    with pytest.raises(crypto.SecretsUnreadable):
        crypto.decrypt_json(token)
