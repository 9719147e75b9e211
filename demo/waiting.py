"""Bounded waits: everything the demo waits for has a deadline and a message for when it passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DemoFailed(Exception):
    """Something the demo shows did not happen; the message says what."""


def wait_for(
    condition: Callable[[], T | None],
    timeout_s: float,
    failure: str,
    check: Callable[[], None] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy; DemoFailed after ``timeout_s``.

    ``check`` runs before each poll and raises when waiting longer is pointless (a dead worker).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if check is not None:
            check()
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise DemoFailed(f"{failure} (waited {timeout_s:.0f}s)")
        time.sleep(0.02)
