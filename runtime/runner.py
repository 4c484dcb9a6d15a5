"""Runs inside the flow runtime environment, never inside the studio.

It uses only the standard library, PyYAML and promptflow, and talks to the studio through
JSON: a request on stdin, one JSON document per line on stdout. Secrets arrive on stdin
and are never printed.

    python runner.py validate FLOW_DIR      stdin: {"connections": {...}}
    python runner.py run FLOW_DIR           stdin: {"connections": {...}, "inputs": {...}}
    python runner.py bulk FLOW_DIR DATA     stdin: {"connections": {...}}; "started" once the flow is
                                            loaded, then one line per data row, then "done"
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

FLOW_FILE = "flow.dag.yaml"
RESULT_PREFIX = "@@flowdeploy "


def emit(payload: dict) -> None:
    """Write one result line; the prefix tells it apart from anything a tool prints."""
    sys.__stdout__.write(RESULT_PREFIX + json.dumps(payload, default=_json_default) + "\n")
    sys.__stdout__.flush()


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "value"):  # enums
        return value.value
    return repr(value)


# --- errors -----------------------------------------------------------------------------------


def _yaml_line_of_node(flow_dir: Path, node_name: str | None) -> int | None:
    if not node_name:
        return None
    pattern = re.compile(r"^\s*-?\s*name:\s*['\"]?" + re.escape(node_name) + r"['\"]?\s*$")
    try:
        lines = (flow_dir / FLOW_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for number, line in enumerate(lines, start=1):
        if pattern.match(line):
            return number
    return None


def _node_of(exc: BaseException) -> str | None:
    params = getattr(exc, "message_parameters", None) or {}
    for key in ("node_name", "node", "remaining_nodes"):
        value = params.get(key)
        if isinstance(value, list | tuple) and value:
            return str(value[0])
        if value:
            return str(value)
    inner = getattr(exc, "inner_exception", None)
    if inner is not None and inner is not exc:
        return _node_of(inner)
    match = re.search(r"node '([^']+)'", str(exc))
    return match.group(1) if match else None


def describe_error(exc: BaseException, flow_dir: Path) -> dict:
    """Turn an exception from promptflow into the message, node and line a user can act on."""
    node = _node_of(exc)
    message = str(exc).strip().replace(f"{flow_dir}/", "") or type(exc).__name__
    return {
        "code": type(exc).__name__,
        "message": message,
        "node": node,
        "file": FLOW_FILE,
        "line": _yaml_line_of_node(flow_dir, node),
    }


def yaml_error(exc: Exception) -> dict:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    where = f"line {line}, column {column}" if line else "unknown position"
    detail = f"{context}, {problem}" if context else problem
    return {
        "code": "InvalidYaml",
        "message": f"{FLOW_FILE} is not valid YAML ({where}): {detail}",
        "node": None,
        "file": FLOW_FILE,
        "line": line,
    }


# --- loading ----------------------------------------------------------------------------------


def load_yaml(flow_dir: Path) -> dict:
    import yaml

    path = flow_dir / FLOW_FILE
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{FLOW_FILE} must be a mapping with inputs, outputs and nodes.")
    return data


class _ConnectionSource:
    """Builds promptflow connection objects from the dict the studio sends."""

    def __init__(self, connections: dict):
        from promptflow.core._connection_provider._dict_connection_provider import DictConnectionProvider

        self.provider = DictConnectionProvider(connections)


def _connection_type_names(value_types: list) -> list[str]:
    from promptflow.contracts.tool import ConnectionType

    names = []
    for value_type in value_types or []:
        name = value_type if isinstance(value_type, str) else getattr(value_type, "value", str(value_type))
        if ConnectionType.is_connection_class_name(name):
            names.append(name)
    return names


def connections_used(flow, tool_definitions: dict) -> list[dict]:
    """Every connection the flow's nodes name, with the connection types each place accepts."""
    used: dict[str, dict] = {}

    def add(name: str, types: list[str], node: str) -> None:
        entry = used.setdefault(name, {"name": name, "types": [], "nodes": []})
        for typ in types:
            if typ not in entry["types"]:
                entry["types"].append(typ)
        if node not in entry["nodes"]:
            entry["nodes"].append(node)

    for node in flow.nodes:
        if node.connection:
            llm_types = ["OpenAIConnection", "AzureOpenAIConnection", "ServerlessConnection"]
            add(node.connection, llm_types if str(node.type.value) == "llm" else [], node.name)
        definition = tool_definitions.get(node.name)
        if definition is None:
            continue
        for input_name, assignment in node.inputs.items():
            tool_input = definition.inputs.get(input_name)
            if tool_input is None or not isinstance(assignment.value, str):
                continue
            types = _connection_type_names(tool_input.type)
            if types and assignment.value_type.value == "Literal":
                add(assignment.value, types, node.name)
    return list(used.values())


def describe_flow(flow_dir: Path, flow, raw: dict, tool_definitions: dict) -> dict:
    inputs = {}
    for name, definition in flow.inputs.items():
        inputs[name] = {
            "type": definition.type.value,
            "default": definition.default,
            "description": definition.description or "",
            "is_chat_input": bool(definition.is_chat_input),
            "is_chat_history": bool(getattr(definition, "is_chat_history", False)),
        }
    outputs = {}
    for name, definition in flow.outputs.items():
        outputs[name] = {
            "type": definition.type.value,
            "reference": (raw.get("outputs") or {}).get(name, {}).get("reference", ""),
            "is_chat_output": bool(definition.is_chat_output),
        }
    nodes = []
    raw_nodes = {node.get("name"): node for node in raw.get("nodes") or [] if isinstance(node, dict)}
    for node in flow.nodes:
        references = sorted(_node_references(node))
        flow_inputs = sorted({a.value for a in node.inputs.values() if a.value_type.value == "FlowInput" and a.value})
        raw_node = raw_nodes.get(node.name, {})
        source = raw_node.get("source") or {}
        nodes.append(
            {
                "name": node.name,
                "type": str(node.type.value) if node.type else "",
                "source": source.get("path") or source.get("tool") or "",
                "api": node.api or "",
                "connection": node.connection or "",
                "depends_on": references,
                "flow_inputs": flow_inputs,
                "inputs": {k: _input_text(raw_node.get("inputs", {}).get(k)) for k in node.inputs},
                "line": _yaml_line_of_node(flow_dir, node.name),
            }
        )
    chat_input = next((n for n, d in inputs.items() if d["is_chat_input"]), None)
    chat_output = next((n for n, d in outputs.items() if d["is_chat_output"]), None)
    chat_history = next(
        (n for n, d in inputs.items() if d["is_chat_history"]),
        "chat_history" if "chat_history" in inputs else None,
    )
    environment = raw.get("environment") or {}
    requirements_file = environment.get("python_requirements_txt") or "requirements.txt"
    requirements_path = flow_dir / requirements_file
    requirements = requirements_path.read_text(encoding="utf-8") if requirements_path.is_file() else ""
    return {
        "inputs": inputs,
        "outputs": outputs,
        "nodes": nodes,
        "connections": connections_used(flow, tool_definitions),
        "chat_input": chat_input,
        "chat_output": chat_output,
        "chat_history": chat_history if chat_input else None,
        "requirements": requirements,
    }


def _input_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _node_references(node) -> set[str]:
    names = {a.value for a in node.inputs.values() if a.value_type.value == "NodeReference"}
    if node.activate and node.activate.condition.value_type.value == "NodeReference":
        names.add(node.activate.condition.value)
    return names


def validate(flow_dir: Path, connections: dict) -> dict:
    """Check a flow the way promptflow does before it runs it, one node at a time."""
    from promptflow._core.tools_manager import connections as connection_classes  # noqa: F401
    from promptflow.contracts.flow import Flow
    from promptflow.executor._errors import GetConnectionError
    from promptflow.executor._tool_resolver import ToolResolver
    from promptflow.executor.flow_validator import FlowValidator

    if not (flow_dir / FLOW_FILE).is_file():
        return {"ok": False, "error": {"code": "FlowFileMissing", "message": f"{FLOW_FILE} was not found."}}
    try:
        raw = load_yaml(flow_dir)
    except Exception as exc:
        if type(exc).__module__.startswith("yaml"):
            return {"ok": False, "error": yaml_error(exc)}
        return {"ok": False, "error": describe_error(exc, flow_dir)}
    try:
        flow = Flow.from_yaml(flow_dir / FLOW_FILE, working_dir=flow_dir)
        flow = flow._apply_default_node_variants()
        topology = FlowValidator._validate_nodes_topology(flow)
        FlowValidator._ensure_outputs_valid(topology)
    except Exception as exc:
        return {"ok": False, "error": describe_error(exc, flow_dir)}

    source = _ConnectionSource(connections)
    package_tool_keys = [n.source.tool for n in flow.nodes if n.source and n.source.tool]
    resolver = ToolResolver(flow_dir, source.provider, package_tool_keys, message_format=flow.message_format)
    tool_definitions = {}
    missing_connections = []
    with _quiet(), _change_dir(flow_dir):
        for node in flow.nodes:
            try:
                resolved = resolver.resolve_tool_by_node(node, convert_input_types=False)
                tool_definitions[node.name] = resolved.definition
            except Exception as exc:
                if not _is_connection_error(exc, GetConnectionError):
                    return {"ok": False, "error": describe_error(exc, flow_dir)}
        description = describe_flow(flow_dir, flow, raw, tool_definitions)
        for node in flow.nodes:
            try:
                resolver.resolve_tool_by_node(node, convert_input_types=True)
            except Exception as exc:
                if _is_connection_error(exc, GetConnectionError):
                    missing_connections.append(_node_of(exc) or node.name)
                    continue
                return {"ok": False, "error": describe_error(exc, flow_dir)}
    description["nodes_missing_connections"] = missing_connections
    return {"ok": True, "flow": description}


def _is_connection_error(exc: BaseException, connection_error_class: type) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, connection_error_class) or type(exc).__name__ in {"ConnectionNotFound"}:
            return True
        exc = getattr(exc, "inner_exception", None) or exc.__cause__
    return False


@contextlib.contextmanager
def _change_dir(path: Path):
    import os

    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _quiet():
    """Tools may print while they load; keep stdout for results only."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield buffer


# --- running ----------------------------------------------------------------------------------


def _serialise(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("<generator object"):
        return "(streamed: see the flow output)"
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _serialise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_serialise(v) for v in value]
    if hasattr(value, "__iter__") and hasattr(value, "__next__"):
        return "".join(str(chunk) for chunk in value)
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def _seconds(run_info) -> float | None:
    if run_info.start_time and run_info.end_time:
        return round((run_info.end_time - run_info.start_time).total_seconds(), 4)
    return None


def _error_of(run_info, flow_dir: Path) -> dict | None:
    error = run_info.error
    if not error:
        return None
    message = error.get("message") or error.get("code") or "The flow failed."
    node = run_info.node if hasattr(run_info, "node") else None
    return {
        "code": error.get("code", ""),
        "message": message,
        "node": node,
        "line": _yaml_line_of_node(flow_dir, node),
    }


class LineRunner:
    """Loads a flow once and executes lines through promptflow's FlowExecutor."""

    def __init__(self, flow_dir: Path, connections: dict):
        from promptflow.executor import FlowExecutor

        self.flow_dir = flow_dir
        with _quiet(), _change_dir(flow_dir):
            self.executor = FlowExecutor.create(
                flow_dir / FLOW_FILE, connections=connections, working_dir=flow_dir, raise_ex=False
            )

    def run(self, inputs: dict, index: int | None = None) -> dict:
        started = time.perf_counter()
        logs = io.StringIO()
        with contextlib.redirect_stdout(logs), _change_dir(self.flow_dir):
            try:
                result = self.executor.exec_line(inputs, index=index, allow_generator_output=False)
            except Exception as exc:
                return {
                    "status": "Failed",
                    "outputs": {},
                    "nodes": [],
                    "error": describe_error(exc, self.flow_dir),
                    "duration": round(time.perf_counter() - started, 4),
                    "stdout": logs.getvalue()[-20000:],
                }
        nodes = []
        for name, info in result.node_run_infos.items():
            nodes.append(
                {
                    "node": name,
                    "status": info.status.value,
                    "inputs": _serialise(info.inputs),
                    "output": _serialise(info.output),
                    "duration": _seconds(info),
                    "error": _error_of(info, self.flow_dir),
                }
            )
        flow_error = _error_of(result.run_info, self.flow_dir)
        if flow_error and not flow_error["node"]:
            failed = next((n for n in nodes if n["error"]), None)
            if failed:
                flow_error = failed["error"]
        return {
            "status": result.run_info.status.value,
            "outputs": _serialise(result.output or {}),
            "nodes": nodes,
            "error": flow_error,
            "duration": round(time.perf_counter() - started, 4),
            "stdout": logs.getvalue()[-20000:],
        }


def run(flow_dir: Path, connections: dict, inputs: dict) -> dict:
    try:
        runner = LineRunner(flow_dir, connections)
    except Exception as exc:
        return {"status": "Failed", "outputs": {}, "nodes": [], "error": describe_error(exc, flow_dir)}
    return runner.run(inputs)


def bulk(flow_dir: Path, connections: dict, data_file: Path) -> None:
    try:
        runner = LineRunner(flow_dir, connections)
    except Exception as exc:
        emit({"event": "failed", "error": describe_error(exc, flow_dir)})
        return
    # The flow is loaded: the studio's per-line timeout starts counting from here.
    emit({"event": "started"})
    with data_file.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                emit(
                    {
                        "event": "line",
                        "index": index,
                        "status": "Failed",
                        "inputs": {},
                        "outputs": {},
                        "error": {"code": "InvalidJson", "message": f"line {index + 1}: {exc}"},
                    }
                )
                continue
            inputs = {}
            for name, definition in runner.executor._flow.inputs.items():
                if name in row:
                    inputs[name] = row[name]
                elif definition.default is not None:
                    inputs[name] = definition.default
            result = runner.run(inputs, index=index)
            result.pop("stdout", None)
            emit({"event": "line", "index": index, "inputs": inputs, **result})
    emit({"event": "done"})


def main(argv: list[str]) -> int:
    logging.disable(logging.WARNING)
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    command, flow_dir = argv[1], Path(argv[2]).resolve()
    request = json.loads(sys.stdin.read() or "{}")
    connections = request.get("connections") or {}
    try:
        if command == "validate":
            emit(validate(flow_dir, connections))
        elif command == "run":
            emit(run(flow_dir, connections, request.get("inputs") or {}))
        elif command == "bulk":
            bulk(flow_dir, connections, Path(argv[3]))
        else:
            print(f"unknown command {command!r}", file=sys.stderr)
            return 2
    except Exception as exc:  # the studio must always get an answer it can show
        traceback.print_exc(file=sys.stderr)
        emit({"ok": False, "status": "Failed", "event": "failed", "error": describe_error(exc, flow_dir)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
