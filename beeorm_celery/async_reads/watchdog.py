"""One thread that calls functions at deadlines: the backstop for query timeouts.

The server enforces ``timeout=`` itself; this only fires when it did not (a statement shape
MySQL's hint does not cover, a server that ignored the limit), and then kills the query.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_COMPACT_AT = 10_000


class Alarm:
    __slots__ = ("action", "active")

    def __init__(self, action: Callable[[], float | None]) -> None:
        self.action = action
        self.active = True

    def disarm(self) -> None:
        self.active = False  # the heap entry stays until due, then is skipped


class Watchdog:
    """``arm(delay, action)``; an action may return a delay to be called again (re-kill)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._heap: list[tuple[float, int, Alarm]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def arm(self, delay_s: float, action: Callable[[], float | None]) -> Alarm:
        alarm = Alarm(action)
        self._push(time.monotonic() + delay_s, alarm)
        return alarm

    def _push(self, when: float, alarm: Alarm) -> None:
        with self._cond:
            if self._stopped:
                return
            if len(self._heap) >= _COMPACT_AT:
                # Disarmed alarms wait for their deadline to be dropped; with long timeouts
                # and many quick queries they pile up: drop them all now and then.
                self._heap = [entry for entry in self._heap if entry[2].active]
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, (when, next(self._seq), alarm))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    while self._heap and not self._heap[0][2].active:
                        heapq.heappop(self._heap)
                    if self._heap and self._heap[0][0] <= now:
                        alarm = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                else:
                    return
            try:
                again = alarm.action()
            except Exception:
                log.exception("query watchdog action failed")
                again = None
            if again is not None and alarm.active:
                self._push(time.monotonic() + again, alarm)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
