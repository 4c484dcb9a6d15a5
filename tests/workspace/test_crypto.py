import pytest

from django.urls import reverse

from workspace.connections import ConnectionSpec, promptflow_connections, save_connection
from workspace.crypto import SecretsUnreadable, decrypt_json, encrypt_json
from workspace.models import Connection

SECRET = "sk-crypto-5ecret-value"


def test_it_round_trips_a_dict():
    """decrypt_json gives back what encrypt_json was given."""
    data = {"api_key": SECRET, "other": "ü-ñ"}
    assert decrypt_json(encrypt_json(data)) == data


def test_it_hides_the_plain_text():
    """The token is a Fernet token that does not contain the secret."""
    token = encrypt_json({"api_key": SECRET})
    assert token.startswith("gAAAA")
    assert SECRET not in token


def test_it_reads_an_empty_token_as_empty():
    """An empty token is an empty dict."""
    assert decrypt_json("") == {}


def test_it_uses_flowdeploy_secret_key_before_secret_key(settings):
    """With FLOWDEPLOY_SECRET_KEY set, SECRET_KEY no longer matters; without it, SECRET_KEY is the key."""
    settings.FLOWDEPLOY_SECRET_KEY = "flowdeploy-key-one"
    settings.SECRET_KEY = "django-key-a"
    token = encrypt_json({"a": "b"})
    settings.SECRET_KEY = "django-key-b"
    assert decrypt_json(token) == {"a": "b"}
    settings.FLOWDEPLOY_SECRET_KEY = ""
    with pytest.raises(SecretsUnreadable):
        decrypt_json(token)
    token = encrypt_json({"c": "d"})
    settings.SECRET_KEY = "django-key-c"
    with pytest.raises(SecretsUnreadable):
        decrypt_json(token)


def test_it_explains_a_wrong_key_without_the_secret(settings):
    """A token made with another key gives a clear SecretsUnreadable naming the setting."""
    settings.FLOWDEPLOY_SECRET_KEY = "key-one"
    token = encrypt_json({"api_key": SECRET})
    settings.FLOWDEPLOY_SECRET_KEY = "key-two"
    with pytest.raises(SecretsUnreadable) as caught:
        decrypt_json(token)
    assert "FLOWDEPLOY_SECRET_KEY" in str(caught.value)
    assert SECRET not in str(caught.value) and token not in str(caught.value)


def test_it_rejects_garbage():
    """A damaged token is SecretsUnreadable, not a crash."""
    with pytest.raises(SecretsUnreadable):
        decrypt_json("not-a-token")


@pytest.mark.django_db
def test_it_keeps_pages_working_after_a_key_change(admin_client, settings):
    """After the key changed, the list and edit pages still render and saving asks for the key again."""
    settings.FLOWDEPLOY_SECRET_KEY = "key-one"
    save_connection(ConnectionSpec("gpt", "open_ai", {}, {"api_key": SECRET}))
    settings.FLOWDEPLOY_SECRET_KEY = "key-two"
    assert admin_client.get(reverse("workspace:connections")).status_code == 200
    edit = reverse("workspace:connection_edit", args=["gpt"])
    page = admin_client.get(edit)
    assert page.status_code == 200
    assert "cannot be decrypted" in page.content.decode()
    response = admin_client.post(edit, {"api_key": ""})
    assert response.status_code == 400
    assert "API key: the saved value cannot be used; enter it again." in response.content.decode()
    with pytest.raises(SecretsUnreadable, match="'gpt'"):
        promptflow_connections()
    assert admin_client.post(edit, {"api_key": "sk-new"}).status_code == 302
    assert Connection.objects.get().get_secrets() == {"api_key": "sk-new"}
