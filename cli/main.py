"""`flowdeploy`: connections, models (flows), online endpoints and deployments, shaped like `az ml`.

flowdeploy login --url http://127.0.0.1:8000 --username admin --password ...
flowdeploy projects
flowdeploy --project lab online-endpoint create -n my-endpoint
flowdeploy model create --name web --path ./web-classification
flowdeploy online-endpoint create -f endpoint.yml
flowdeploy online-deployment create -f deployment.yml --all-traffic
flowdeploy online-endpoint invoke -n my-endpoint --request-file request.json
flowdeploy export my-endpoint blue -o blue.zip
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from cli import commands
from cli.errors import CliError

DEFAULT_WAIT_TIMEOUT = 3600.0


def _command(group, name: str, handler, help: str) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=handler)
    return parser


def _group(subparsers, name: str, help: str):
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=None, group_parser=parser)
    return parser.add_subparsers(title="commands", metavar="COMMAND")


PROJECT_HELP = (
    "The project new flows, connections and endpoints go to (or FLOWDEPLOY_PROJECT, or the one saved by "
    "login --project; default: your only project, else 'default')"
)


def _project(parser) -> None:
    """--project after the command too; SUPPRESS keeps the value given before the command when it is absent."""
    parser.add_argument("--project", default=argparse.SUPPRESS, help=PROJECT_HELP)


def _file(parser, required: bool = True, help: str = "The YAML file") -> None:
    parser.add_argument("-f", "--file", required=required, help=help)


def _deletion(parser) -> None:
    parser.add_argument("-y", "--yes", action="store_true", help="Do not ask for confirmation")
    _waiting(parser)


def _waiting(parser) -> None:
    parser.add_argument("--no-wait", action="store_true", help="Return at once; do not wait for the operation")
    parser.add_argument("--timeout", type=float, default=DEFAULT_WAIT_TIMEOUT, help="Seconds to wait at most")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowdeploy",
        description="Manage Flowdeploy: connections, models (flows), online endpoints and deployments.",
    )
    parser.add_argument("--debug", action="store_true", help="Show the traceback of unexpected errors")
    parser.add_argument("--project", help=PROJECT_HELP)
    parser.set_defaults(handler=None, group_parser=parser)
    top = parser.add_subparsers(title="groups", metavar="GROUP")

    login = top.add_parser("login", help="Store the studio's URL and an access token")
    login.set_defaults(handler=commands.login)
    login.add_argument("--url", help="The studio, e.g. http://127.0.0.1:8000 (or FLOWDEPLOY_URL)")
    login.add_argument("--username", "-u")
    login.add_argument("--password", "-p", help="Asked for when omitted on a terminal")
    login.add_argument("--token", help="Use this personal access token (fdp_...) instead of a password")
    login.add_argument("--name", default="flowdeploy-cli", help="Name of the token created for this login")
    _project(login)

    command = top.add_parser("projects", help="Your projects and your role in each")
    command.set_defaults(handler=commands.projects)

    group = _group(top, "connection", "Connections to model providers (promptflow's connection YAML)")
    command = _command(group, "create", commands.connection_create, "Create a connection from its YAML")
    _project(command)
    _file(command)
    command.add_argument("-n", "--name", help="Overrides the name in the file")
    command = _command(group, "update", commands.connection_update, "Update a connection from its YAML")
    _file(command)
    command.add_argument("-n", "--name", help="Overrides the name in the file")
    _command(group, "list", commands.connection_list, "List connections (no secrets)")
    command = _command(group, "show", commands.connection_show, "Show a connection (no secrets)")
    command.add_argument("-n", "--name", required=True)
    command = _command(group, "delete", commands.connection_delete, "Delete a connection")
    command.add_argument("-n", "--name", required=True)
    command.add_argument("-y", "--yes", action="store_true", help="Do not ask for confirmation")

    group = _group(top, "model", "Flows, registered as versioned models")
    command = _command(group, "create", commands.model_create, "Upload a flow folder as a new version")
    _project(command)
    _file(command, required=False, help="Azure's model YAML (name, path)")
    command.add_argument("-n", "--name", help="The flow's name")
    command.add_argument("-p", "--path", help="The flow folder (with flow.dag.yaml) or a zip of it")
    command.add_argument("--description")
    _command(group, "list", commands.model_list, "List flows")
    command = _command(group, "show", commands.model_show, "Show a flow, or one version of it")
    command.add_argument("-n", "--name", required=True)
    command.add_argument("-v", "--version", type=int)

    group = _group(top, "online-endpoint", "Online endpoints")
    command = _command(group, "create", commands.endpoint_create, "Create an online endpoint")
    _project(command)
    _file(command, required=False, help="Azure's endpoint YAML")
    command.add_argument("-n", "--name", help="Overrides the name in the file")
    command.add_argument("--auth-mode", choices=["key", "aml_token"])
    command.add_argument(
        "--provider",
        choices=["local", "azureml"],
        help="Where it runs: this machine (default) or the project's Azure ML workspace",
    )
    for name, handler, help in (
        ("show", commands.endpoint_show, "Show an online endpoint"),
        ("get-credentials", commands.endpoint_get_credentials, "The keys (key auth) or a token (aml_token auth)"),
    ):
        command = _command(group, name, handler, help)
        command.add_argument("-n", "--name", required=True)
    _command(group, "list", commands.endpoint_list, "List online endpoints")
    command = _command(group, "invoke", commands.endpoint_invoke, "Score a request through the scoring URI")
    command.add_argument("-n", "--name", required=True)
    command.add_argument("-r", "--request-file", required=True, help="A JSON file with the flow's inputs")
    command.add_argument("-d", "--deployment-name", help="Send the request to this deployment")
    command = _command(group, "update", commands.endpoint_update, "Update traffic, mirror traffic, tags")
    command.add_argument("-n", "--name", required=True)
    _file(command, required=False, help="Azure's endpoint YAML (description, tags, traffic, mirror_traffic)")
    command.add_argument("--traffic", help='e.g. "blue=90 green=10"')
    command.add_argument("--mirror-traffic", help='e.g. "green=10"')
    command.add_argument("--description")
    command = _command(group, "delete", commands.endpoint_delete, "Delete an online endpoint and its deployments")
    command.add_argument("-n", "--name", required=True)
    _deletion(command)

    group = _group(top, "online-deployment", "Online deployments of an endpoint")
    for name, handler, help in (
        ("create", commands.deployment_create, "Create a deployment from Azure's deployment YAML"),
        ("update", commands.deployment_update, "Roll out new settings from Azure's deployment YAML"),
    ):
        command = _command(group, name, handler, help)
        _file(command)
        command.add_argument("-e", "--endpoint-name", help="Overrides endpoint_name in the file")
        command.add_argument("-n", "--name", help="Overrides name in the file")
        if name == "create":
            command.add_argument("--all-traffic", action="store_true", help="Send all traffic to it once created")
        _waiting(command)
    command = _command(group, "show", commands.deployment_show, "Show a deployment, its instances and events")
    command.add_argument("-e", "--endpoint-name", required=True)
    command.add_argument("-n", "--name", required=True)
    command = _command(group, "list", commands.deployment_list, "List an endpoint's deployments")
    command.add_argument("-e", "--endpoint-name", required=True)
    command = _command(group, "get-logs", commands.deployment_get_logs, "An instance's log (or the events)")
    command.add_argument("-e", "--endpoint-name", required=True)
    command.add_argument("-n", "--name", required=True)
    command.add_argument("-l", "--lines", type=int, default=100)
    command.add_argument("--instance", type=int, help="The instance's ordinal (default: the first live one)")
    command.add_argument("--container", choices=["inference-server", "events"])
    command = _command(group, "delete", commands.deployment_delete, "Delete a deployment")
    command.add_argument("-e", "--endpoint-name", required=True)
    command.add_argument("-n", "--name", required=True)
    _deletion(command)

    summary = "Export a deployment for Azure Machine Learning: a zip of az ml YAML, the flow and a README"
    command = _command(top, "export", commands.export, summary)
    command.add_argument("endpoint_name", metavar="ENDPOINT")
    command.add_argument("deployment_name", metavar="DEPLOYMENT")
    command.add_argument("-o", "--output", help="The zip to write (default: <endpoint>-<deployment>-azureml.zip)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already reported
        return exc.code if isinstance(exc.code, int) else 2
    if args.handler is None:
        args.group_parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except CliError as exc:
        print(exc.message, file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"flowdeploy failed unexpectedly: {type(exc).__name__}: {exc} (--debug shows more)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
