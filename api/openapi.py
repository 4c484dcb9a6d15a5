"""The OpenAPI 3.1 document of /api/v1/, written by hand. tests/api/test_openapi.py checks that every
route of api/urls.py (and every method its view allows) is described here."""

from __future__ import annotations

from typing import Any

from endpoints.sizes import SIZES
from workspace.access import MINIMUM_ROLE, ROLES_FROM, Action

PREFIX = "/api/v1"

# What each operation needs in the project that owns its object (workspace/access.py). None: any signed-in
# user (the answer holds only their own things). Every authenticated operation must be listed here.
NEEDS: dict[str, Action | None] = {
    "me": None,
    "listProjects": None,
    "listConnections": Action.VIEW,
    "createConnection": Action.DEPLOY,
    "showConnection": Action.VIEW,
    "updateConnection": Action.DEPLOY,
    "deleteConnection": Action.DELETE,
    "listFlows": Action.VIEW,
    "createFlowVersion": Action.DEPLOY,
    "showFlow": Action.VIEW,
    "showFlowVersion": Action.VIEW,
    "listOnlineEndpoints": Action.VIEW,
    "createOnlineEndpoint": Action.DEPLOY,
    "showOnlineEndpoint": Action.VIEW,
    "updateOnlineEndpoint": Action.DEPLOY,
    "deleteOnlineEndpoint": Action.DELETE,
    "listKeys": Action.READ_KEYS,
    "regenerateKeys": Action.READ_KEYS,
    "getToken": Action.READ_KEYS,
    "invoke": Action.TEST,
    "listOnlineDeployments": Action.VIEW,
    "showOnlineDeployment": Action.VIEW,
    "createOrUpdateOnlineDeployment": Action.DEPLOY,
    "deleteOnlineDeployment": Action.DELETE,
    "getLogs": Action.READ_DATA,
    "exportOnlineDeployment": Action.READ_DATA,
}
NOTES = {
    Action.VIEW: "Lists hold only the objects of your projects.",
    Action.READ_KEYS: "Keys and tokens are never shown to a Reader.",
    Action.TEST: "A Reader may test: the endpoint's credentials stay in the studio.",
}
OPERATION_NOTES = {
    "getLogs": "As in Azure Machine Learning, whose Reader role has no getLogs action: a log can hold a flow's "
    "inputs. The deployment's events are also in its show, for Readers.",
    "createFlowVersion": "A folder on the server's disk needs a superuser.",
    "exportOnlineDeployment": "The zip holds the flow's code and the deployment's environment variables; never a "
    "key nor a connection secret.",
}
CREATES = ("createConnection", "createFlowVersion", "createOnlineEndpoint")


def needs_text(action: Action | None, operation_id: str = "") -> str:
    """The role an operation needs, as its description says it."""
    if action is None:
        return "Needs a signed-in user; the answer holds only their own projects."
    roles = ROLES_FROM[MINIMUM_ROLE[action]]
    where = "the target project" if operation_id in CREATES else "the object's project"
    notes = " ".join(note for note in (NOTES.get(action), OPERATION_NOTES.get(operation_id)) if note)
    return f"Needs {roles} in {where} (action `{action}`). {notes}".strip()


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _string_map() -> dict:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def _percent_map() -> dict:
    return {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 100}}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return {"description": description, **_json(_ref("Error"))}


def _project_field(what: str) -> dict:
    return {
        "type": "string",
        "description": f"{what} Default: your only project, else 'default'. Needs Contributor or Owner there; "
        "not one of your projects answers 404 naming the field.",
    }


def _path_param(name: str, description: str, kind: str = "string") -> dict:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": kind}}


def _query_param(name: str, description: str, kind: str = "string", **extra: Any) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": kind, **extra},
    }


def _op(
    summary: str,
    tag: str,
    ok: tuple[int, str, dict | None],
    body: dict | None = None,
    errors: tuple[int, ...] = (),
    public: bool = False,
    operation_id: str = "",
) -> dict:
    status, description, schema = ok
    responses: dict[str, Any] = {str(status): {"description": description, **(_json(schema) if schema else {})}}
    messages = {
        400: "Validation error; `field` names the offending field",
        401: "No, unknown, expired or revoked access token",
        403: "Your role in the object's project does not allow this; the message names the role needed",
        404: "No such resource, or it is in a project you are not a member of (the same answer)",
        409: "Conflicts with the resource's current state (name taken, busy, being deleted)",
        413: "Upload too large",
        415: "The body is not JSON",
        502: "The scoring gateway is not reachable",
        504: "The scoring gateway did not answer in time",
    }
    for code in sorted({*errors, *(() if public else (401,))}):
        responses[str(code)] = _error(messages[code])
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "operationId": operation_id, "responses": responses}
    if not public:
        action = NEEDS[operation_id]
        operation["description"] = needs_text(action, operation_id)
        operation["x-flowdeploy-action"] = action.value if action else None
        if action is not None and "403" not in responses and MINIMUM_ROLE[action] != "reader":
            responses["403"] = _error(messages[403])
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    if public:
        operation["security"] = []
    return operation


SCHEMAS: dict[str, dict] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "examples": ["ValidationError", "NotFound", "Conflict"]},
                    "message": {"type": "string"},
                    "field": {"type": "string", "description": "The request field the error is about"},
                    "details": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                        },
                    },
                    "node": {"type": "string", "description": "Flow imports: the node promptflow names"},
                    "line": {"type": "integer", "description": "Flow imports: the line of flow.dag.yaml"},
                    "file": {"type": "string", "description": "Flow imports: the file"},
                },
            }
        },
    },
    "TokenRequest": {
        "type": "object",
        "required": ["username", "password"],
        "additionalProperties": False,
        "properties": {
            "username": {"type": "string"},
            "password": {"type": "string", "format": "password"},
            "name": {"type": "string", "description": "A name to recognise the token by", "default": "flowdeploy"},
            "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 366},
        },
    },
    "PersonalAccessToken": {
        "type": "object",
        "properties": {
            "token": {"type": "string", "description": "fdp_...; shown once, only its digest is stored"},
            "name": {"type": "string"},
            "prefix": {"type": "string"},
            "username": {"type": "string"},
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "Me": {
        "type": "object",
        "properties": {
            "username": {"type": "string"},
            "is_staff": {"type": "boolean"},
            "token": {
                "type": ["object", "null"],
                "properties": {"name": {"type": "string"}, "prefix": {"type": "string"}, "expires_at": {}},
            },
        },
    },
    "Project": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "role": {"type": "string", "enum": ["Owner", "Contributor", "Reader"], "description": "Your role"},
        },
    },
    "Connection": {
        "type": "object",
        "description": "Secret values are never returned, to any role; `secret_keys` names them.",
        "properties": {
            "name": {"type": "string"},
            "project": {"type": "string"},
            "type": {"type": "string", "enum": ["open_ai", "azure_open_ai", "serp", "serverless", "custom"]},
            "configs": _string_map(),
            "secret_keys": {"type": "array", "items": {"type": "string"}},
            "target": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "ConnectionInput": {
        "type": "object",
        "description": "promptflow's connection YAML as JSON (what `pf connection create -f` takes). Strong types "
        "give fields at the top level; custom connections give `configs` and `secrets`. On update, a blank "
        "secret keeps the saved one.",
        "required": ["name", "type"],
        "properties": {
            "name": {"type": "string"},
            "project": _project_field("The new connection's project; on update it must be the connection's own."),
            "type": {"type": "string", "enum": ["open_ai", "azure_open_ai", "serp", "serverless", "custom"]},
            "api_key": {"type": "string", "format": "password"},
            "base_url": {"type": "string", "format": "uri"},
            "api_base": {"type": "string", "format": "uri"},
            "api_type": {"type": "string"},
            "api_version": {"type": "string"},
            "organization": {"type": "string"},
            "configs": _string_map(),
            "secrets": _string_map(),
        },
    },
    "Deleted": {"type": "object", "properties": {"name": {"type": "string"}, "deleted": {"type": "boolean"}}},
    "Flow": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "project": {"type": "string"},
            "description": {"type": "string"},
            "latest_version": {"type": ["integer", "null"]},
            "versions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "version": {"type": "integer"},
                        "content_hash": {"type": "string"},
                        "source": {"type": "string", "enum": ["upload", "sample", "folder"]},
                        "created_at": {"type": "string", "format": "date-time"},
                    },
                },
            },
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "FlowVersion": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "integer"},
            "id": {"type": "string", "description": "name:version"},
            "content_hash": {"type": "string"},
            "source": {"type": "string"},
            "source_detail": {"type": "string"},
            "inputs": {"type": "object", "description": "Input name to {type, default, ...}"},
            "outputs": {"type": "object", "description": "Output name to {type, reference, ...}"},
            "nodes": {"type": "array", "items": {"type": "object"}},
            "connections": {"type": "array", "items": {"type": "object"}},
            "chat_input": {"type": "string"},
            "chat_output": {"type": "string"},
            "chat_history": {"type": "string"},
            "requirements": {"type": "string"},
            "environment": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "FlowFolderImport": {
        "type": "object",
        "required": ["path"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "description": "Defaults to the folder's name"},
            "path": {"type": "string", "description": "An absolute folder on the server (superusers only)"},
            "description": {"type": "string"},
            "project": _project_field("A new flow's project; a new version stays in its flow's project."),
        },
    },
    "FlowZipImport": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "name": {"type": "string", "description": "Defaults to the zip file's name"},
            "file": {"type": "string", "contentMediaType": "application/zip", "description": "The flow folder, zipped"},
            "description": {"type": "string"},
            "project": _project_field("A new flow's project; a new version stays in its flow's project."),
        },
    },
    "Identity": {
        "type": "object",
        "description": "A user-assigned identity is one of the endpoint's project's managed identities, named by "
        "a resource id whose last segment is its name (or by its name). Shown: its resource id, principal and "
        "client ids; for a system-assigned identity, the endpoint's principal_id (what role assignments name).",
        "properties": {
            "type": {"type": "string", "enum": ["system_assigned", "user_assigned"]},
            "principal_id": {"type": "string", "format": "uuid", "readOnly": True},
            "user_assigned_identities": {
                "type": "array",
                "maxItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "resource_id": {"type": "string", "examples": ["/projects/default/userAssignedIdentities/x"]},
                        "principal_id": {"type": "string", "format": "uuid", "readOnly": True},
                        "client_id": {"type": "string", "format": "uuid", "readOnly": True},
                    },
                },
            },
        },
    },
    "OnlineEndpoint": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "project": {"type": "string"},
            "description": {"type": "string"},
            "auth_mode": {"type": "string", "enum": ["key", "aml_token"]},
            "scoring_uri": {"type": "string", "format": "uri"},
            "swagger_uri": {"type": "string", "format": "uri"},
            "traffic": _percent_map(),
            "mirror_traffic": _percent_map(),
            "tags": _string_map(),
            "identity": _ref("Identity"),
            "enforce_access_to_connection_secrets": {"type": "boolean"},
            "provider": {"type": "string", "enum": ["local", "azureml"]},
            "provisioning_state": {
                "type": "string",
                "enum": ["Creating", "Updating", "Succeeded", "Failed", "Deleting"],
            },
            "deployments": {"type": "array", "items": {"type": "string"}},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "OnlineEndpointCreate": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$"},
            "auth_mode": {"type": "string", "enum": ["key", "aml_token"], "default": "key"},
            "description": {"type": "string"},
            "tags": _string_map(),
            "identity": _ref("Identity"),
            "enforce_access_to_connection_secrets": {"type": "boolean", "default": True},
            "project": _project_field("The new endpoint's project."),
            "provider": {
                "type": "string",
                "enum": ["local", "azureml"],
                "default": "local",
                "description": "Where its deployments run: this machine, or the project's Azure ML workspace.",
            },
        },
    },
    "OnlineEndpointUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "project": {"type": "string", "description": "Must be the endpoint's own: an endpoint cannot move"},
            "description": {"type": "string"},
            "tags": _string_map(),
            "traffic": {**_percent_map(), "description": "Deployment name to percent; sums to 100 (or 0)"},
            "mirror_traffic": {**_percent_map(), "description": "At most 50%, never to a deployment with live traffic"},
        },
    },
    "Accepted": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "endpoint_name": {"type": "string"},
            "provisioning_state": {"type": "string", "const": "Deleting"},
        },
    },
    "Keys": {
        "type": "object",
        "properties": {"primaryKey": {"type": "string"}, "secondaryKey": {"type": "string"}},
    },
    "RegenerateKeys": {
        "type": "object",
        "required": ["key_type"],
        "additionalProperties": False,
        "properties": {"key_type": {"type": "string", "enum": ["primary", "secondary"]}},
    },
    "Regenerated": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "key_type": {"type": "string"}, "regenerated": {"type": "boolean"}},
    },
    "AccessToken": {
        "type": "object",
        "properties": {
            "accessToken": {"type": "string"},
            "tokenType": {"type": "string", "const": "Bearer"},
            "expiryTimeUtc": {"type": "integer", "description": "Unix time"},
            "refreshAfterTimeUtc": {"type": "integer", "description": "Unix time"},
        },
    },
    "Instance": {
        "type": "object",
        "properties": {
            "ordinal": {"type": "integer"},
            "generation": {"type": "integer"},
            "state": {"type": "string", "enum": ["Starting", "Ready", "Draining", "Crashed", "Stopped"]},
            "restarts": {"type": "integer"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "ready_at": {"type": ["string", "null"], "format": "date-time"},
            "last_exit": {"type": "string"},
        },
    },
    "DeploymentEvent": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "time": {"type": "string", "format": "date-time"},
            "phase": {"type": "string"},
            "level": {"type": "string"},
            "message": {"type": "string"},
        },
    },
    "DeploymentSettings": {
        "type": "object",
        "properties": {
            "vm_size": {"type": "string", "enum": list(SIZES), "description": "Azure's instance_type"},
            "instance_count": {"type": "integer", "minimum": 1},
            "environment_variables": _string_map(),
            "environment": {
                "type": "string",
                "description": "Azure ML endpoints: a custom environment used as is (azureml:<name>:<version>); "
                "empty for the one built from the flow",
            },
            "selected_outputs": {"type": "array", "items": {"type": "string"}},
            "connection_overrides": {**_string_map(), "description": "Connection the flow names to the one to use"},
            "request_timeout_ms": {"type": "integer", "minimum": 1000, "maximum": 3600000},
            "max_concurrent_requests_per_instance": {"type": "integer", "minimum": 1, "maximum": 1000},
            "data_collection": {"type": "boolean"},
            "app_insights_enabled": {"type": "boolean"},
            "tags": _string_map(),
        },
    },
    "OnlineDeploymentPut": {
        "description": "Create, or roll out new settings to the deployment with this name. Omitted settings keep "
        "their current (or default) values; `flow` may be omitted when the deployment exists.",
        "allOf": [
            _ref("DeploymentSettings"),
            {
                "type": "object",
                "properties": {
                    "flow": {
                        "type": "string",
                        "description": "name:version, name@latest or name (latest); azureml: in front is accepted",
                        "examples": ["web-classification:3", "azureml:chat:1", "chat@latest"],
                    },
                    "name": {"type": "string", "description": "Must match the URL when given"},
                    "endpoint_name": {"type": "string", "description": "Must match the URL when given"},
                },
            },
        ],
    },
    "OnlineDeployment": {
        "allOf": [
            _ref("DeploymentSettings"),
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "endpoint_name": {"type": "string"},
                    "flow": {"type": "string", "description": "name:version"},
                    "provisioning_state": {
                        "type": "string",
                        "enum": ["Creating", "Updating", "Succeeded", "Failed", "Deleting"],
                    },
                    "phase": {"type": "string"},
                    "failure_reason": {"type": "string"},
                    "traffic": {"type": "integer"},
                    "mirror_traffic": {"type": "integer"},
                    "generation": {"type": "integer"},
                    "live_generation": {"type": "integer"},
                    "instances": {"type": "array", "items": _ref("Instance"), "description": "In show only"},
                    "events": {"type": "array", "items": _ref("DeploymentEvent"), "description": "In show only"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                },
            },
        ]
    },
    "Logs": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "endpoint_name": {"type": "string"},
            "container": {"type": "string", "enum": ["inference-server", "storage-initializer", "events"]},
            "instance": {"type": ["integer", "null"]},
            "lines": {"type": "integer"},
            "content": {"type": "string"},
            "events": {"type": "array", "items": _ref("DeploymentEvent"), "description": "With container=events"},
        },
    },
}

ENDPOINT = _path_param("name", "Online endpoint name")
DEPLOYMENT_ENDPOINT = _path_param("endpoint", "Online endpoint name")
DEPLOYMENT = _path_param("name", "Deployment name")


def _paths() -> dict[str, dict]:
    p = PREFIX
    json_body = _json
    return {
        f"{p}/openapi.json": {
            "get": _op(
                "This document", "meta", (200, "OpenAPI 3.1", {"type": "object"}), public=True, operation_id="openapi"
            )
        },
        f"{p}/auth/token": {
            "post": _op(
                "Exchange username and password for a personal access token",
                "auth",
                (201, "A new token (shown once)", _ref("PersonalAccessToken")),
                json_body(_ref("TokenRequest"))["content"],
                errors=(400, 401, 415),
                public=True,
                operation_id="createToken",
            )
        },
        f"{p}/me": {"get": _op("Who the token belongs to", "auth", (200, "The user", _ref("Me")), operation_id="me")},
        f"{p}/projects": {
            "get": _op(
                "Your projects and your role in each (a superuser is Owner of every project)",
                "projects",
                (200, "Projects", {"type": "array", "items": _ref("Project")}),
                operation_id="listProjects",
            )
        },
        f"{p}/connections": {
            "get": _op(
                "List connections (no secrets)",
                "connections",
                (200, "Connections", {"type": "array", "items": _ref("Connection")}),
                operation_id="listConnections",
            ),
            "post": _op(
                "Create a connection",
                "connections",
                (201, "Created", _ref("Connection")),
                json_body(_ref("ConnectionInput"))["content"],
                errors=(400, 403, 404, 409, 415),
                operation_id="createConnection",
            ),
        },
        f"{p}/connections/{{name}}": {
            "parameters": [_path_param("name", "Connection name")],
            "get": _op(
                "Show a connection (no secrets)",
                "connections",
                (200, "The connection", _ref("Connection")),
                errors=(404,),
                operation_id="showConnection",
            ),
            "put": _op(
                "Update a connection; blank secrets keep the saved values; the type cannot change",
                "connections",
                (200, "Updated", _ref("Connection")),
                json_body(_ref("ConnectionInput"))["content"],
                errors=(400, 403, 404, 415),
                operation_id="updateConnection",
            ),
            "delete": _op(
                "Delete a connection",
                "connections",
                (200, "Deleted", _ref("Deleted")),
                errors=(403, 404),
                operation_id="deleteConnection",
            ),
        },
        f"{p}/flows": {
            "get": _op(
                "List flows",
                "flows",
                (200, "Flows", {"type": "array", "items": _ref("Flow")}),
                operation_id="listFlows",
            ),
            "post": _op(
                "Import a new flow version: a zip upload, or a folder on the server (superusers only). promptflow "
                "validates it; an invalid flow is refused with its message, node and line.",
                "flows",
                (201, "The new version", _ref("FlowVersion")),
                {
                    "multipart/form-data": {"schema": _ref("FlowZipImport")},
                    "application/json": {"schema": _ref("FlowFolderImport")},
                },
                errors=(400, 403, 404, 409, 413, 415),
                operation_id="createFlowVersion",
            ),
        },
        f"{p}/flows/{{name}}": {
            "parameters": [_path_param("name", "Flow name")],
            "get": _op(
                "Show a flow and its versions",
                "flows",
                (200, "The flow", _ref("Flow")),
                errors=(404,),
                operation_id="showFlow",
            ),
        },
        f"{p}/flows/{{name}}/versions/{{version}}": {
            "parameters": [_path_param("name", "Flow name"), _path_param("version", "Version number", "integer")],
            "get": _op(
                "Show a flow version: inputs, outputs, nodes, connections, requirements",
                "flows",
                (200, "The version", _ref("FlowVersion")),
                errors=(404,),
                operation_id="showFlowVersion",
            ),
        },
        f"{p}/online-endpoints": {
            "get": _op(
                "List online endpoints",
                "online-endpoints",
                (200, "Endpoints", {"type": "array", "items": _ref("OnlineEndpoint")}),
                operation_id="listOnlineEndpoints",
            ),
            "post": _op(
                "Create an online endpoint",
                "online-endpoints",
                (201, "Created", _ref("OnlineEndpoint")),
                json_body(_ref("OnlineEndpointCreate"))["content"],
                errors=(400, 403, 404, 409, 415),
                operation_id="createOnlineEndpoint",
            ),
        },
        f"{p}/online-endpoints/{{name}}": {
            "parameters": [ENDPOINT],
            "get": _op(
                "Show an online endpoint",
                "online-endpoints",
                (200, "The endpoint", _ref("OnlineEndpoint")),
                errors=(404,),
                operation_id="showOnlineEndpoint",
            ),
            "patch": _op(
                "Update tags, description, traffic and mirror traffic",
                "online-endpoints",
                (200, "Updated", _ref("OnlineEndpoint")),
                json_body(_ref("OnlineEndpointUpdate"))["content"],
                errors=(400, 403, 404, 409, 415),
                operation_id="updateOnlineEndpoint",
            ),
            "delete": _op(
                "Delete an online endpoint and its deployments (asynchronously)",
                "online-endpoints",
                (202, "Deletion started", _ref("Accepted")),
                errors=(403, 404),
                operation_id="deleteOnlineEndpoint",
            ),
        },
        f"{p}/online-endpoints/{{name}}/list-keys": {
            "parameters": [ENDPOINT],
            "post": _op(
                "The endpoint's keys (key-based endpoints)",
                "keys",
                (200, "Keys", _ref("Keys")),
                errors=(400, 403, 404),
                operation_id="listKeys",
            ),
        },
        f"{p}/online-endpoints/{{name}}/regenerate-keys": {
            "parameters": [ENDPOINT],
            "post": _op(
                "Regenerate the primary or secondary key",
                "keys",
                (200, "Regenerated (read the new key with list-keys)", _ref("Regenerated")),
                json_body(_ref("RegenerateKeys"))["content"],
                errors=(400, 403, 404, 415),
                operation_id="regenerateKeys",
            ),
        },
        f"{p}/online-endpoints/{{name}}/token": {
            "parameters": [ENDPOINT],
            "post": _op(
                "A scoring token (token-based endpoints), valid for an hour",
                "keys",
                (200, "Token", _ref("AccessToken")),
                errors=(400, 403, 404),
                operation_id="getToken",
            ),
        },
        f"{p}/online-endpoints/{{name}}/invoke": {
            "parameters": [
                ENDPOINT,
                _query_param("deployment_name", "Send the request to this deployment (azureml-model-deployment)"),
            ],
            "post": _op(
                "Score through the gateway with the endpoint's credentials; the gateway's status and answer are "
                "relayed as they are (gateway errors keep their JSON error shape)",
                "invoke",
                (200, "The flow's outputs", {"type": "object"}),
                json_body({"type": "object", "description": "The flow's inputs"})["content"],
                errors=(400, 403, 404, 415, 502, 504),
                operation_id="invoke",
            ),
        },
        f"{p}/online-endpoints/{{endpoint}}/deployments": {
            "parameters": [DEPLOYMENT_ENDPOINT],
            "get": _op(
                "List an endpoint's deployments",
                "online-deployments",
                (200, "Deployments", {"type": "array", "items": _ref("OnlineDeployment")}),
                errors=(404,),
                operation_id="listOnlineDeployments",
            ),
        },
        f"{p}/online-endpoints/{{endpoint}}/deployments/{{name}}": {
            "parameters": [DEPLOYMENT_ENDPOINT, DEPLOYMENT],
            "get": _op(
                "Show a deployment with its instances and latest events",
                "online-deployments",
                (200, "The deployment", _ref("OnlineDeployment")),
                errors=(404,),
                operation_id="showOnlineDeployment",
            ),
            "put": {
                **_op(
                    "Create or update a deployment; provisioning runs in the background (poll provisioning_state)",
                    "online-deployments",
                    (200, "Updated; the new settings are rolling out", _ref("OnlineDeployment")),
                    json_body(_ref("OnlineDeploymentPut"))["content"],
                    errors=(400, 403, 404, 409, 415),
                    operation_id="createOrUpdateOnlineDeployment",
                ),
            },
            "delete": _op(
                "Delete a deployment (asynchronously); refused while it receives traffic and others exist",
                "online-deployments",
                (202, "Deletion started", _ref("Accepted")),
                errors=(403, 404, 409),
                operation_id="deleteOnlineDeployment",
            ),
        },
        f"{p}/online-endpoints/{{endpoint}}/deployments/{{name}}/logs": {
            "parameters": [
                DEPLOYMENT_ENDPOINT,
                DEPLOYMENT,
                _query_param("lines", "How many lines from the end", "integer", default=100, minimum=1, maximum=5000),
                _query_param("instance", "The instance ordinal (default: the first live one)", "integer", minimum=0),
                _query_param(
                    "container",
                    "inference-server (an instance's log), storage-initializer (Azure ML only) or events",
                    enum=["inference-server", "storage-initializer", "events"],
                ),
            ],
            "get": _op(
                "An instance's log tail, or the deployment's events",
                "online-deployments",
                (200, "Logs", _ref("Logs")),
                errors=(400, 403, 404),
                operation_id="getLogs",
            ),
        },
        f"{p}/online-endpoints/{{endpoint}}/deployments/{{name}}/export": {
            "parameters": [DEPLOYMENT_ENDPOINT, DEPLOYMENT],
            "get": _zip_operation(
                _op(
                    "The deployment for Azure Machine Learning: a zip of model.yml, endpoint.yml, deployment.yml, "
                    "environment/ (its build context), flow/ and a README with the `az ml` commands",
                    "online-deployments",
                    (200, "The zip (attachment <endpoint>-<deployment>-azureml.zip)", None),
                    errors=(403, 404, 409),
                    operation_id="exportOnlineDeployment",
                )
            ),
        },
    }


def _zip_operation(operation: dict) -> dict:
    operation["responses"]["200"]["content"] = {
        "application/zip": {"schema": {"type": "string", "contentMediaType": "application/zip"}}
    }
    return operation


def document() -> dict:
    paths = _paths()
    put = paths[f"{PREFIX}/online-endpoints/{{endpoint}}/deployments/{{name}}"]["put"]
    put["responses"]["201"] = {"description": "Created; provisioning is queued", **_json(_ref("OnlineDeployment"))}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Flowdeploy management API",
            "version": "1",
            "description": "Connections, flows, online endpoints and deployments, keys and invoke. Authenticate "
            "with `Authorization: Bearer fdp_...` (POST /api/v1/auth/token, or `flowdeploy login`). Every "
            "flow, connection and endpoint belongs to a project; what you may do follows from your role there "
            "(Reader: look and test; Contributor: also create, change, delete, keys, logs; Owner: also manage "
            "access), and each operation's description says what it needs. Objects of projects you are not a "
            "member of answer 404, as if they did not exist. Errors are "
            '`{"error": {"code", "message", "field"}}`.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [
            {"name": name}
            for name in (
                "auth",
                "projects",
                "connections",
                "flows",
                "online-endpoints",
                "online-deployments",
                "keys",
                "invoke",
                "meta",
            )
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "fdp_<token>"}},
            "schemas": SCHEMAS,
        },
    }
