"""What each `flowdeploy` command does. Each handler takes the parsed arguments and returns an exit status."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from cli import config, specs
from cli.client import Api, failure, segment
from cli.errors import ApiFailure, CliError

IMPORT_TIMEOUT = 900.0
INVOKE_TIMEOUT = 300.0
FINAL_STATES = ("Succeeded", "Failed")


def out(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def api(args=None) -> Api:
    settings = config.load(getattr(args, "project", None))
    return Api(settings.url, settings.token, settings.project)


def confirm(args, what: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise CliError(f"Deleting {what} needs confirmation: add --yes.")
    answer = input(f"Are you sure you want to delete {what}? (y/n): ")
    if answer.strip().lower() not in ("y", "yes"):
        raise CliError("Cancelled.")


# --- login ---------------------------------------------------------------------------------------


def login(args) -> int:
    stored = config.read_file()
    url = config.normalize_url(args.url or os.environ.get("FLOWDEPLOY_URL") or stored.get("url") or "")
    if args.token:
        me = Api(url, args.token).get("/me")
        token, username = args.token, me["username"]
    else:
        if not args.username:
            raise CliError("login: give --username and --password, or --token.")
        password = args.password
        if password is None:
            if not sys.stdin.isatty():
                raise CliError("login: give --password (no terminal to ask for it).")
            import getpass

            password = getpass.getpass("Password: ")
        issued = Api(url).post("/auth/token", json={"username": args.username, "password": password, "name": args.name})
        token, username = issued["token"], issued["username"]
    project = args.project or stored.get("project")
    path = config.save(url, token, username, project)
    out({"url": url, "username": username, "config": str(path), **({"project": project} if project else {})})
    return 0


# --- projects ------------------------------------------------------------------------------------


def projects(args) -> int:
    """The user's projects and their role in each: what they may do there follows from it."""
    out(api(args).get("/projects"))
    return 0


# --- connections ---------------------------------------------------------------------------------


def connection_create(args) -> int:
    spec = specs.connection_spec(args.file)
    if args.name:
        spec.body["name"] = args.name
    client = api(args)
    if client.project:
        spec.body["project"] = client.project
    out(client.post("/connections", json=spec.body))
    return 0


def connection_update(args) -> int:
    spec = specs.connection_spec(args.file)
    name = args.name or spec.body.get("name")
    if not name:
        raise CliError(f"{args.file}: missing required field 'name' (or give --name).")
    spec.body["name"] = name
    out(api().put(f"/connections/{segment(name)}", json=spec.body))
    return 0


def connection_list(args) -> int:
    out(api().get("/connections"))
    return 0


def connection_show(args) -> int:
    out(api().get(f"/connections/{segment(args.name)}"))
    return 0


def connection_delete(args) -> int:
    confirm(args, f"connection {args.name}")
    api().delete(f"/connections/{segment(args.name)}")
    return 0


# --- models (flows) ------------------------------------------------------------------------------


def upload_flow(client: Api, name: str | None, folder: Path, description: str = "", project: str | None = None) -> dict:
    """A new flow goes to `project` (default: the client's); a new version stays in its flow's project."""
    content, filename = specs.zip_flow(folder)
    data = {"description": description} if description else {}
    if name:
        data["name"] = name
    if project or client.project:
        data["project"] = project or client.project
    note(f"Uploading {folder} ({len(content) // 1024 + 1} KiB); the studio validates it with promptflow...")
    files = {"file": (filename, content, "application/zip")}
    return client.post("/flows", data=data, files=files, timeout=IMPORT_TIMEOUT)


def model_create(args) -> int:
    if args.file:
        name, folder, description, notes = specs.model_spec(args.file)
        for line in notes:
            note(line)
        name = args.name or name
    else:
        if not args.name or not args.path:
            raise CliError("model create: give -f model.yml, or --name and --path.")
        name, folder, description = args.name, Path(args.path).resolve(), ""
    out(upload_flow(api(args), name, folder, args.description or description))
    return 0


def model_list(args) -> int:
    out(api().get("/flows"))
    return 0


def model_show(args) -> int:
    client = api()
    if args.version is None:
        out(client.get(f"/flows/{segment(args.name)}"))
    else:
        out(client.get(f"/flows/{segment(args.name)}/versions/{args.version}"))
    return 0


# --- online endpoints ----------------------------------------------------------------------------


def _endpoint_path(name: str) -> str:
    return f"/online-endpoints/{segment(name)}"


def endpoint_create(args) -> int:
    spec = specs.endpoint_spec(args.file) if args.file else specs.Spec({})
    for line in spec.notes:
        note(line)
    if args.name:
        spec.body["name"] = args.name
    if args.auth_mode:
        spec.body["auth_mode"] = args.auth_mode
    if args.provider:
        spec.body["provider"] = args.provider
    if not spec.body.get("name"):
        raise CliError(f"{args.file or 'online-endpoint create'}: missing required field 'name' (or give --name).")
    traffic = {key: spec.body.pop(key) for key in ("traffic", "mirror_traffic") if key in spec.body}
    if any(traffic.values()):
        note("traffic is set once deployments exist (online-endpoint update --traffic); ignored at create.")
    client = api(args)
    if client.project:
        spec.body["project"] = client.project
    out(client.post("/online-endpoints", json=spec.body))
    return 0


def endpoint_show(args) -> int:
    out(api().get(_endpoint_path(args.name)))
    return 0


def endpoint_list(args) -> int:
    out(api().get("/online-endpoints"))
    return 0


def credentials(client: Api, endpoint: dict) -> dict:
    if endpoint["auth_mode"] == "key":
        return client.post(f"{_endpoint_path(endpoint['name'])}/list-keys")
    return client.post(f"{_endpoint_path(endpoint['name'])}/token")


def endpoint_get_credentials(args) -> int:
    client = api()
    out(credentials(client, client.get(_endpoint_path(args.name))))
    return 0


def endpoint_update(args) -> int:
    body: dict[str, Any] = {}
    if args.file:
        spec = specs.endpoint_spec(args.file)
        for line in spec.notes:
            note(line)
        if spec.body.get("name") not in (None, args.name):
            raise CliError(f"{args.file}: names endpoint {spec.body['name']!r} but --name is {args.name!r}.")
        for key in ("auth_mode", "identity"):
            if key in spec.body:
                note(f"{args.file}: {key} cannot change after the endpoint is created; ignored.")
        body.update({k: v for k, v in spec.body.items() if k in ("description", "tags", "traffic", "mirror_traffic")})
    if args.traffic is not None:
        body["traffic"] = specs.parse_traffic(args.traffic, "--traffic")
    if args.mirror_traffic is not None:
        body["mirror_traffic"] = specs.parse_traffic(args.mirror_traffic, "--mirror-traffic")
    if args.description is not None:
        body["description"] = args.description
    if not body:
        raise CliError("online-endpoint update: nothing to change; give --traffic, --mirror-traffic or -f.")
    out(api().patch(_endpoint_path(args.name), json=body))
    return 0


def endpoint_delete(args) -> int:
    confirm(args, f"online endpoint {args.name} and all its deployments")
    client = api()
    client.delete(_endpoint_path(args.name))
    if not args.no_wait:
        note(f"Deleting online endpoint {args.name}...")
        wait_until_gone(client, _endpoint_path(args.name), args.timeout)
    return 0


def endpoint_invoke(args) -> int:
    """Call the scoring URI directly with the endpoint's key or token, as `az ml online-endpoint invoke` does.

    A Reader may test but not see keys: then the studio scores for them (POST .../invoke)."""
    try:
        content = Path(args.request_file).read_bytes()
        json.loads(content)
    except OSError as exc:
        raise CliError(f"--request-file: cannot read {args.request_file}: {exc.strerror or exc}.") from None
    except ValueError as exc:
        raise CliError(f"--request-file: {args.request_file} is not valid JSON: {exc}.") from None
    client = api()
    endpoint = client.get(_endpoint_path(args.name))
    try:
        secret = credentials(client, endpoint)
    except ApiFailure as exc:
        if exc.http_status != 403:
            raise
        params = {"deployment_name": args.deployment_name} if args.deployment_name else {}
        path = f"{_endpoint_path(args.name)}/invoke"
        out(client.post(path, json=json.loads(content), params=params, timeout=INVOKE_TIMEOUT))
        return 0
    credential = secret.get("primaryKey") or secret.get("accessToken")
    headers = {"Authorization": f"Bearer {credential}", "Content-Type": "application/json"}
    if args.deployment_name:
        headers["azureml-model-deployment"] = args.deployment_name
    try:
        response = httpx.post(endpoint["scoring_uri"], content=content, headers=headers, timeout=INVOKE_TIMEOUT)
    except httpx.TimeoutException:
        raise CliError(f"{endpoint['scoring_uri']} did not answer within {INVOKE_TIMEOUT:.0f} s.") from None
    except httpx.HTTPError as exc:
        raise CliError(f"Cannot reach the scoring URI {endpoint['scoring_uri']}: {exc}") from None
    if response.status_code >= 400:
        raise failure(response)
    try:
        out(response.json())
    except ValueError:
        print(response.text)
    return 0


# --- online deployments --------------------------------------------------------------------------


def _deployment_path(endpoint: str, name: str) -> str:
    return f"{_endpoint_path(endpoint)}/deployments/{segment(name)}"


def _deployment_target(args, spec: specs.Spec) -> tuple[str, str]:
    endpoint = args.endpoint_name or spec.body.pop("endpoint_name", None)
    name = args.name or spec.body.pop("name", None)
    spec.body.pop("endpoint_name", None)
    spec.body.pop("name", None)
    if not endpoint:
        raise CliError(f"{spec.source}: missing required field 'endpoint_name' (or give --endpoint-name).")
    if not name:
        raise CliError(f"{spec.source}: missing required field 'name' (or give --name).")
    return endpoint, name


def _put_deployment(args, require_model: bool) -> int:
    spec, model = specs.deployment_spec(args.file, require_model=require_model)
    for line in spec.notes:
        note(line)
    endpoint, name = _deployment_target(args, spec)
    client = api(args)
    if isinstance(model, specs.InlineModel):
        project = client.get(_endpoint_path(endpoint))["project"]  # a new flow goes where its endpoint is
        version = upload_flow(client, model.name or None, model.path, project=project)
        model = version["id"]
        note(f"Registered flow {model}.")
    if model:
        spec.body["flow"] = model
    path = _deployment_path(endpoint, name)
    deployment = client.put(path, json=spec.body)
    all_traffic = getattr(args, "all_traffic", False)
    if args.no_wait:
        if all_traffic:
            _all_traffic(client, endpoint, name)
        out(client.get(path))
        return 0
    deployment = wait_for_deployment(client, path, deployment, args.timeout)
    if deployment["provisioning_state"] == "Failed":
        raise CliError(f"Deployment {endpoint}/{name} failed: {deployment['failure_reason'] or 'no reason given'}")
    if all_traffic:
        _all_traffic(client, endpoint, name)
        deployment = client.get(path)
    out(deployment)
    return 0


def _all_traffic(client: Api, endpoint: str, name: str) -> None:
    current = client.get(_endpoint_path(endpoint))
    body: dict[str, Any] = {"traffic": {name: 100}}
    if name in current.get("mirror_traffic", {}):
        body["mirror_traffic"] = {k: v for k, v in current["mirror_traffic"].items() if k != name}
    client.patch(_endpoint_path(endpoint), json=body)
    note(f"All traffic of {endpoint} now goes to {name}.")


def wait_for_deployment(client: Api, path: str, deployment: dict, timeout: float) -> dict:
    """Poll until Succeeded or Failed, printing each new event (the phases) to stderr, like az ml does."""
    events = deployment.get("events") or []
    seen = {event["id"] for event in events[:-1]}  # the last one is the "provisioning is queued" of this request
    interval = float(os.environ.get("FLOWDEPLOY_POLL_INTERVAL", "1"))
    deadline = time.monotonic() + timeout
    while True:
        for event in deployment.get("events") or []:
            if event["id"] not in seen:
                seen.add(event["id"])
                note(f"{event['time'][11:19]} {event['phase']}: {event['message']}")
        if deployment["provisioning_state"] in FINAL_STATES:
            return deployment
        if time.monotonic() > deadline:
            raise CliError(
                f"{deployment['endpoint_name']}/{deployment['name']} is still {deployment['provisioning_state']} "
                f"({deployment['phase']}) after {timeout:.0f} s; follow it with `flowdeploy online-deployment show`."
            )
        time.sleep(interval)
        deployment = client.get(path)


def wait_until_gone(client: Api, path: str, timeout: float) -> None:
    interval = float(os.environ.get("FLOWDEPLOY_POLL_INTERVAL", "1"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.get(path)
        except ApiFailure as exc:
            if exc.http_status == 404:
                note("Deleted.")
                return
            raise
        time.sleep(interval)
    raise CliError(f"Still deleting after {timeout:.0f} s; check again with show.")


def deployment_create(args) -> int:
    return _put_deployment(args, require_model=True)


def deployment_update(args) -> int:
    return _put_deployment(args, require_model=False)


def deployment_show(args) -> int:
    out(api().get(_deployment_path(args.endpoint_name, args.name)))
    return 0


def deployment_list(args) -> int:
    out(api().get(f"{_endpoint_path(args.endpoint_name)}/deployments"))
    return 0


def deployment_get_logs(args) -> int:
    params: dict[str, Any] = {"lines": args.lines}
    if args.instance is not None:
        params["instance"] = args.instance
    if args.container:
        params["container"] = args.container
    logs = api().get(f"{_deployment_path(args.endpoint_name, args.name)}/logs", params=params)
    print(logs["content"])
    return 0


def deployment_delete(args) -> int:
    confirm(args, f"online deployment {args.endpoint_name}/{args.name}")
    client = api()
    path = _deployment_path(args.endpoint_name, args.name)
    client.delete(path)
    if not args.no_wait:
        note(f"Deleting online deployment {args.endpoint_name}/{args.name}...")
        wait_until_gone(client, path, args.timeout)
    return 0


# --- export --------------------------------------------------------------------------------------------------


def export(args) -> int:
    """Write a deployment's export for Azure Machine Learning (a zip with its README of `az ml` commands)."""
    target = Path(args.output or f"{args.endpoint_name}-{args.deployment_name}-azureml.zip")
    content = api().download(f"{_deployment_path(args.endpoint_name, args.deployment_name)}/export", timeout=300.0)
    try:
        target.write_bytes(content)
    except OSError as exc:
        raise CliError(f"Cannot write {target}: {exc.strerror or exc}.") from None
    print(
        f"Wrote {target} ({len(content):,} bytes): {args.endpoint_name}/{args.deployment_name} for Azure Machine "
        "Learning. Its README.md has the az ml commands."
    )
    return 0
