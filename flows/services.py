"""Use cases of the flows app: start and carry out test runs and bulk test runs."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F

from flows.execution import (
    EnvironmentBuildError,
    RunnerError,
    flow_environment,
    run_bulk,
    run_line,
    scratch_copy,
)
from flows.models import BulkRun, BulkRunLine, FlowVersion, RunStatus, TestRun
from workspace import notifications
from workspace.connections import promptflow_connections

logger = logging.getLogger(__name__)

MAX_BULK_LINES = 10_000


# --- inputs -----------------------------------------------------------------------------------


def coerce_input(name: str, spec: dict, value):
    """A value typed in a form or JSON, checked against the flow input's type; errors name the input."""
    kind = spec.get("type", "string")
    if value is None or (value == "" and kind != "string"):
        if spec.get("default") is not None:
            return spec["default"]
        raise ValidationError({name: f"Input '{name}' is required."})
    try:
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "double":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in {"true", "1", "yes", "on"}:
                return True
            if str(value).lower() in {"false", "0", "no", "off"}:
                return False
            raise ValueError
        if kind in {"list", "object"}:
            parsed = json.loads(value) if isinstance(value, str) else value
            expected = list if kind == "list" else dict
            if not isinstance(parsed, expected):
                raise ValueError
            return parsed
    except (ValueError, TypeError, json.JSONDecodeError):
        article = {"int": "a whole number", "double": "a number", "bool": "true or false"}.get(
            kind, f"JSON {'list' if kind == 'list' else 'object'}"
        )
        raise ValidationError({name: f"Input '{name}' must be {article}."}) from None
    return value if isinstance(value, str) else json.dumps(value)


def coerce_inputs(flow_version: FlowVersion, values: dict) -> dict:
    unknown = sorted(set(values) - set(flow_version.inputs))
    if unknown:
        raise ValidationError({unknown[0]: f"The flow has no input named '{unknown[0]}'."})
    inputs, errors = {}, {}
    for name, spec in flow_version.inputs.items():
        try:
            inputs[name] = coerce_input(name, spec, values.get(name))
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return inputs


# --- single test runs -------------------------------------------------------------------------


def chat_history(flow_version: FlowVersion, chat_session: uuid.UUID) -> list[dict]:
    """promptflow's chat_history: the earlier completed turns of this chat, oldest first."""
    turns = TestRun.objects.filter(
        flow_version=flow_version, chat_session=chat_session, status=RunStatus.COMPLETED
    ).order_by("created_at")
    history = []
    for turn in turns:
        turn_inputs = {k: v for k, v in turn.inputs.items() if k != flow_version.chat_history}
        history.append({"inputs": turn_inputs, "outputs": turn.outputs})
    return history


def start_test_run(flow_version: FlowVersion, values: dict, user, chat_session: uuid.UUID | None = None) -> TestRun:
    """Check the inputs, create the run, and queue it once the row is committed."""
    if chat_session and flow_version.chat_history:
        values = {**values, flow_version.chat_history: chat_history(flow_version, chat_session)}
    inputs = coerce_inputs(flow_version, values)
    with transaction.atomic():
        run = TestRun.objects.create(
            flow_version=flow_version,
            inputs=inputs,
            chat_session=chat_session,
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        transaction.on_commit(lambda: _dispatch("execute_test_run", run))
    return run


def _dispatch(task_name: str, run) -> None:
    from flows import tasks

    result = getattr(tasks, task_name).delay(str(run.pk))
    type(run).objects.filter(pk=run.pk).update(task_id=result.id or "")


def execute_test_run(run_id: str) -> None:
    """Safe to call twice: only the caller that claims the run executes it."""
    run = TestRun.objects.select_related("flow_version").get(pk=run_id)
    if not run.claim():
        return
    version = run.flow_version
    try:
        env = flow_environment(version.requirements)
        connections = promptflow_connections(version.connection_names(), version.flow.project_id)
        with scratch_copy(version.snapshot_dir) as flow_dir:
            result = run_line(env, flow_dir, connections, run.inputs, settings.FLOWDEPLOY_TEST_RUN_TIMEOUT)
    except (EnvironmentBuildError, RunnerError) as exc:
        run.finish(RunStatus.FAILED, error={"code": type(exc).__name__, "message": str(exc)})
        return
    status = RunStatus.COMPLETED if result.get("status") == "Completed" else RunStatus.FAILED
    run.finish(
        status,
        outputs=result.get("outputs") or {},
        node_runs=result.get("nodes") or [],
        error=result.get("error"),
        duration=result.get("duration"),
    )


# --- bulk test runs ---------------------------------------------------------------------------


def read_jsonl(flow_version: FlowVersion, data: bytes) -> list[dict]:
    """Every line a JSON object that gives each required input; errors name the line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError({"data": "The data file must be UTF-8 text."}) from None
    required = [
        name
        for name, spec in flow_version.inputs.items()
        if spec.get("default") is None and name != flow_version.chat_history
    ]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationError({"data": f"Line {number} is not valid JSON: {exc.msg}."}) from None
        if not isinstance(row, dict):
            raise ValidationError({"data": f"Line {number} must be a JSON object of input names to values."})
        missing = [name for name in required if name not in row]
        if missing:
            raise ValidationError({"data": f"Line {number} has no value for input '{missing[0]}'."})
        rows.append(row)
    if not rows:
        raise ValidationError({"data": "The data file has no lines."})
    if len(rows) > MAX_BULK_LINES:
        raise ValidationError({"data": f"The data file has more than {MAX_BULK_LINES} lines."})
    if not any(set(row) & set(flow_version.inputs) for row in rows):
        names = ", ".join(flow_version.inputs)
        raise ValidationError({"data": f"No line has a column named after an input of the flow ({names})."})
    return rows


def start_bulk_run(flow_version: FlowVersion, data: bytes, data_file_name: str, user) -> BulkRun:
    rows = read_jsonl(flow_version, data)
    with transaction.atomic():
        run = BulkRun.objects.create(
            flow_version=flow_version,
            name=f"{flow_version} on {data_file_name}",
            data_file_name=data_file_name,
            total_lines=len(rows),
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        run.data_path.parent.mkdir(parents=True, exist_ok=True)
        run.data_path.write_bytes(data)
        if run.created_by:
            note = notifications.notify(
                run.created_by,
                "Bulk test run",
                f"{run.name}: queued, {run.total_lines} lines.",
                link=run.get_absolute_url(),
                level="running",
            )
            BulkRun.objects.filter(pk=run.pk).update(notification_id=note.pk)
            run.notification_id = note.pk
        transaction.on_commit(lambda: _dispatch("execute_bulk_run", run))
    return run


def start_bulk_run_from_flow_data(flow_version: FlowVersion, user) -> BulkRun:
    path = flow_version.snapshot_dir / "data.jsonl"
    if not path.is_file():
        raise ValidationError({"data": "This flow has no data.jsonl; upload a data file."})
    return start_bulk_run(flow_version, path.read_bytes(), "data.jsonl", user)


def _tell(run: BulkRun, body: str, level: str) -> None:
    if run.notification_id:
        notifications.update(run.notification_id, body=body, level=level)


def execute_bulk_run(run_id: str) -> None:
    run = BulkRun.objects.select_related("flow_version").get(pk=int(run_id))
    if not run.claim():
        return
    _tell(run, f"{run.name}: running, 0 of {run.total_lines} lines.", "running")
    version = run.flow_version
    failure: dict | None = None

    def on_event(event: dict) -> None:
        nonlocal failure
        if event.get("event") == "failed":
            failure = event.get("error") or {"message": "The flow could not start."}
            return
        if event.get("event") != "line":
            return
        status = RunStatus.COMPLETED if event.get("status") == "Completed" else RunStatus.FAILED
        _, created = BulkRunLine.objects.update_or_create(
            run=run,
            index=event["index"],
            defaults={
                "inputs": event.get("inputs") or {},
                "outputs": event.get("outputs") or {},
                "status": status,
                "error": event.get("error"),
                "duration": event.get("duration"),
            },
        )
        if created:
            counter = "completed_lines" if status == RunStatus.COMPLETED else "failed_lines"
            BulkRun.objects.filter(pk=run.pk).update(**{counter: F(counter) + 1})
        run.beat()

    try:
        # A retried run starts over: earlier lines are replaced, not counted twice.
        BulkRunLine.objects.filter(run=run).delete()
        BulkRun.objects.filter(pk=run.pk).update(completed_lines=0, failed_lines=0)
        env = flow_environment(version.requirements)
        connections = promptflow_connections(version.connection_names(), version.flow.project_id)
        with scratch_copy(version.snapshot_dir) as flow_dir:
            run_bulk(
                env,
                flow_dir,
                Path(run.data_path),
                connections,
                on_event,
                line_timeout=settings.FLOWDEPLOY_BULK_LINE_TIMEOUT,
                run_timeout=settings.FLOWDEPLOY_BULK_RUN_TIMEOUT,
                on_wait=run.beat,
            )
    except (EnvironmentBuildError, RunnerError) as exc:
        failure = {"code": type(exc).__name__, "message": str(exc)}
    run.refresh_from_db()
    if failure:
        run.finish(RunStatus.FAILED, error=failure)
        _tell(run, f"{run.name}: failed. {failure.get('message', '')}"[:500], "error")
        return
    status = RunStatus.COMPLETED if run.failed_lines == 0 else RunStatus.FAILED
    error = None if status == RunStatus.COMPLETED else {"message": f"{run.failed_lines} lines failed."}
    run.finish(status, error=error)
    summary = f"{run.completed_lines} of {run.total_lines} lines completed"
    _tell(run, f"{run.name}: {summary}.", "success" if status == RunStatus.COMPLETED else "error")


def bulk_results(run: BulkRun) -> list[dict]:
    return [
        {
            "line_number": line.index + 1,
            "status": line.status,
            "inputs": line.inputs,
            "outputs": line.outputs,
            "error": (line.error or {}).get("message"),
        }
        for line in run.lines.all()
    ]


def fail_stale_runs() -> int:
    """Runs whose worker stopped beating are failed with a reason, so no page waits forever."""
    reason = {
        "code": "WorkerLost",
        "message": "The worker running this stopped sending heartbeats. Start the run again.",
    }
    count = 0
    for model in (TestRun, BulkRun):
        for run in model.objects.stale():
            run.finish(RunStatus.FAILED, error=reason)
            count += 1
    return count


def stored_upload(upload: IO[bytes]) -> bytes:
    data = upload.read(settings.FLOWDEPLOY_MAX_UPLOAD_BYTES + 1)
    if len(data) > settings.FLOWDEPLOY_MAX_UPLOAD_BYTES:
        limit = settings.FLOWDEPLOY_MAX_UPLOAD_BYTES // (1024 * 1024)
        raise ValidationError({"data": f"The data file is larger than {limit} MB."})
    return data
