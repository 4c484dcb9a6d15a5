"""A job's hold on its deployment, shared by the provisioning state machine and the providers it drives.

A job (provisioning, deletion) holds the deployment's claim (Deployment.claimed_by) and keeps its heartbeat
fresh; `Job.check()` beats and raises Cancelled when the deployment is being deleted or the claim was lost.
docs/reliability.md describes the protocol.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from django.db import connections

from endpoints.models import Deployment, DeploymentState

HEARTBEAT_EVERY = 5.0
CHECK_EVERY = 1.0  # how often a waiting job looks whether it was cancelled


class ProvisioningFailed(Exception):
    """A reason to show the user, as is."""


class Cancelled(Exception):
    """The job must stop: its deployment is being deleted (deleting=True), or another holder took its claim."""

    def __init__(self, deleting: bool):
        super().__init__("the deployment is being deleted" if deleting else "the job lost its claim")
        self.deleting = deleting


class Job:
    """A provisioning job's hold on its deployment: `check()` beats the heartbeat and raises Cancelled."""

    def __init__(self, deployment: Deployment, holder: str, on_advance: Callable[[str], None] | None = None):
        self.deployment = deployment
        self.holder = holder
        self.on_advance = on_advance  # told each phase's message (the provisioning notification shows it)
        self._checked = 0.0

    def check(self, every: float = 0.0) -> None:
        """Beat, and raise Cancelled if the deployment is being deleted or the claim is lost.

        With `every`, inside a polling loop, at most one check per that many seconds.
        """
        if every and time.monotonic() - self._checked < every:
            return
        self._checked = time.monotonic()
        state = self.deployment.keep_claim(self.holder)
        if state is None:
            raise Cancelled(deleting=False)
        if state == DeploymentState.DELETING:
            raise Cancelled(deleting=True)

    def beat(self) -> None:
        """Only the heartbeat, whatever the state: for work that must finish once begun (a drain)."""
        self.deployment.keep_claim(self.holder)

    def cancelled(self) -> Cancelled:
        """Why a conditional write of this job matched no row."""
        row = Deployment.objects.filter(pk=self.deployment.pk).values("state", "claimed_by").first()
        deleting = bool(row) and row["state"] == DeploymentState.DELETING and row["claimed_by"] == self.holder
        return Cancelled(deleting=deleting)

    def advance(self, phase: str, message: str) -> None:
        """The job's next phase and its event; Cancelled when the job may no longer write."""
        if not self.deployment.advance(self.holder, phase, message):
            raise self.cancelled()
        if self.on_advance is not None:
            self.on_advance(message)


def beating(beat: Callable[[], None], function: Callable[..., Any], *args: Any) -> Any:
    """Run `function` in a thread and call `beat` every HEARTBEAT_EVERY seconds until it returns.

    If `beat` raises (the job was cancelled), the exception goes up at once; the thread finishes on its own
    (an environment build stays useful to the next job). The thread's database connection is closed.
    """

    def run() -> Any:
        try:
            return function(*args)
        finally:
            connections.close_all()

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(run)
    try:
        while True:
            try:
                return future.result(timeout=HEARTBEAT_EVERY)
            except FutureTimeout:
                beat()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
