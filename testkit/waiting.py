"""The one deadline wait of the tests: poll a condition until it holds, fail after a timeout.

Called on the test's own thread. Between looks it waits on an event nobody sets (so it never
sleeps as synchronisation: the condition, checked against the deadline, decides). Returns
the condition's truthy value; raises ``error`` naming ``what`` when the deadline passes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["poll"]

_T = TypeVar("_T")
_IDLE = threading.Event()  # never set: wait(interval) is the pause between looks


def poll(
    condition: Callable[[], _T | None],
    timeout: float,
    what: str = "",
    interval: float = 0.005,
    error: type[Exception] = AssertionError,
) -> _T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"condition not met within {timeout}s: {what or condition}")
        _IDLE.wait(interval)
