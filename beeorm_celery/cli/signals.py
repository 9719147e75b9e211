"""Stop long-running commands (``stats --watch``, ``consume --block``) on SIGINT / SIGTERM.

The first signal only sets an event: the loop finishes its current step (a MySQL transaction,
a refresh) and returns normally, so the command can print its report and exit 0. A second one
interrupts at once (exit 130).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        # only the main thread may install handlers (e.g. a CLI embedded in a test thread)
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            # a second signal: the loop is stuck (a long transaction, a retry); give up now
            raise KeyboardInterrupt
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    for sig in STOP_SIGNALS:
        previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
