"""The OpenAPI document describes every route of the API, with every method its view allows."""

import re

import pytest
from api_client import Api

from django.urls import URLPattern, URLResolver, get_resolver

from api.openapi import document

pytestmark = pytest.mark.django_db

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def _api_routes() -> dict[str, tuple]:
    """Every route under api/v1/ as an OpenAPI path, with the methods its view allows."""
    (api_resolver,) = [
        entry for entry in get_resolver().url_patterns if isinstance(entry, URLResolver) and entry.namespace == "api"
    ]
    routes = {}
    for entry in api_resolver.url_patterns:
        assert isinstance(entry, URLPattern)
        if entry.name == "unknown":  # the catch-all JSON 404, not a route
            continue
        path = "/" + str(api_resolver.pattern) + str(entry.pattern)
        routes[re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path)] = entry.callback.api_methods
    return routes


def test_it_documents_every_route_and_method():
    paths = document()["paths"]
    routes = _api_routes()
    assert len(routes) >= 17
    for path, methods in routes.items():
        assert path in paths, f"{path} is not in api/openapi.py"
        documented = {method for method in paths[path] if method in HTTP_METHODS}
        assert documented == {m.lower() for m in methods}, path
    assert set(paths) == set(routes), "api/openapi.py documents a route the URLconf does not have"


def test_it_declares_every_path_parameter():
    for path, item in document()["paths"].items():
        declared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), path


def test_it_resolves_every_schema_reference():
    text = str(document())
    schemas = document()["components"]["schemas"]
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in schemas


def test_it_serves_the_document_without_a_token(client):
    response = Api(client, None).get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"] == "3.1.0"
    assert "/api/v1/online-endpoints/{endpoint}/deployments/{name}/logs" in response.json()["paths"]
