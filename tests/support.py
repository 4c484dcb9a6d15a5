"""Helpers the tests import by name (tests/ is on sys.path because tests/conftest.py lives there)."""

import time
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURE_FLOWS = Path(__file__).resolve().parent / "fixtures" / "flows"
LLM_KEY = "sk-local-test-key-7f3a9c"


def wait_for(predicate: Callable[[], object], timeout: float = 60, interval: float = 0.2, message: str = "") -> object:
    """Poll until predicate returns something truthy; fail the test with `message` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(message or f"condition not met within {timeout} s")
