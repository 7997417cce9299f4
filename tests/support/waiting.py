"""Polling with a deadline: the one way tests wait for something asynchronous to happen.

Tests never sleep a fixed time and hope; they poll a predicate with a generous deadline, so a slow,
shared 2-core machine makes them slower, not flaky."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """An AssertionError so pytest reports a missed deadline as a test failure, with the reason."""


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str | Callable[[], str] = "",
) -> T:
    """Call `predicate` until it returns something truthy and return that value.

    Raises WaitTimeout after `timeout` seconds; `message` (or what it returns, computed only on
    failure so it can show the latest state) says what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise WaitTimeout(f"timed out after {timeout:.1f} s waiting for {text or predicate!r}")
        time.sleep(interval)
