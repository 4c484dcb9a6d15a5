"""The connection types promptflow knows and the fields each one has, with promptflow's field names."""

import re
from dataclasses import dataclass

from django.db import models

NAME_MAX_LENGTH = 64
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
NAME_RULE = (
    "A connection name uses only letters, digits, _ and -, starts with a letter "
    f"and has at most {NAME_MAX_LENGTH} characters."
)
CUSTOM_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
CUSTOM_KEY_RULE = "A key uses only letters, digits, _, - and ., and starts with a letter or _."
PROMPTFLOW_MODULE = "promptflow.connections"


class ConnectionType(models.TextChoices):
    OPEN_AI = "open_ai", "OpenAI"
    AZURE_OPEN_AI = "azure_open_ai", "Azure OpenAI"
    SERP = "serp", "Serp"
    SERVERLESS = "serverless", "Serverless"
    CUSTOM = "custom", "Custom"


PROMPTFLOW_CLASS = {
    ConnectionType.OPEN_AI: "OpenAIConnection",
    ConnectionType.AZURE_OPEN_AI: "AzureOpenAIConnection",
    ConnectionType.SERP: "SerpConnection",
    ConnectionType.SERVERLESS: "ServerlessConnection",
    ConnectionType.CUSTOM: "CustomConnection",
}


@dataclass(frozen=True)
class FieldSpec:
    """One field of a strong-type connection; `name` is promptflow's name for it."""

    name: str
    label: str
    secret: bool = False
    required: bool = False
    default: str = ""
    help: str = ""
    url: bool = False


_API_KEY = FieldSpec("api_key", "API key", secret=True, required=True)

FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    ConnectionType.OPEN_AI: (
        _API_KEY,
        FieldSpec(
            "base_url",
            "API base",
            url=True,
            help="Optional. For a local OpenAI-compatible server, e.g. http://127.0.0.1:9999/v1. "
            "Leave blank for api.openai.com.",
        ),
        FieldSpec("organization", "Organization", help="Optional. Your OpenAI organization ID."),
    ),
    ConnectionType.AZURE_OPEN_AI: (
        _API_KEY,
        FieldSpec(
            "api_base",
            "API base",
            required=True,
            url=True,
            help="The resource endpoint, e.g. https://<resource>.openai.azure.com/",
        ),
        FieldSpec("api_type", "API type", required=True, default="azure"),
        FieldSpec("api_version", "API version", required=True, default="2024-02-01"),
    ),
    ConnectionType.SERP: (_API_KEY,),
    ConnectionType.SERVERLESS: (
        _API_KEY,
        FieldSpec(
            "api_base",
            "API base",
            required=True,
            url=True,
            help="The serverless endpoint's target URI.",
        ),
    ),
    ConnectionType.CUSTOM: (),
}

# Where the "API base / target" column of the list comes from, per type.
TARGET_FIELD = {
    ConnectionType.OPEN_AI: "base_url",
    ConnectionType.AZURE_OPEN_AI: "api_base",
    ConnectionType.SERVERLESS: "api_base",
}


def field_specs(connection_type: str) -> tuple[FieldSpec, ...]:
    return FIELDS.get(connection_type, ())
