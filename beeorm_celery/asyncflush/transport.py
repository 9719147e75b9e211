"""The seam between the async core and a task queue: ``Waker`` and the slot that holds it.

The core never publishes anything itself. When a group needs a worker (a flush created its
trigger flag, a drain stopped with work left, a sweep found a backlog) it hands a ``WakeUp`` to
the ``Waker`` an adapter attached; the adapter turns it into a message on queue ``beeorm.<group>``
and, when that message arrives, calls ``GroupWorker.handle(group)``. The log is the truth and the
message only a trigger, so a waker may lose or repeat wake-ups: that delays, never loses.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from beeorm_celery.errors import ConfigError


class WakeReason(Enum):
    NEW_BATCH = "new batch"  # a flush created the group's trigger flag
    REPLAY = "replay"  # a dead letter was queued again
    BACKLOG = "backlog"  # a drain handed over (time budget, another group waiting) with work left
    SWEEP = "sweep"  # a sweep found pending batches nobody is on


@dataclass(frozen=True)
class WakeUp:
    """One request for a worker to drain ``group``.

    ``batch_id`` is the batch that caused it (NEW_BATCH, REPLAY), None otherwise; ``summary`` is
    a short text for people (Flower's argsrepr): ``catalog#1699-0: INSERT category 1``.
    """

    group: str
    reason: WakeReason
    summary: str
    batch_id: str | None = None


class Waker(Protocol):
    """What an adapter implements: make some worker call ``GroupWorker.handle(wake.group)``.

    Called from producers (inside ``flush_async``) and from workers; it should only enqueue a
    message. An exception is logged by the caller, which then leaves the group to the sweep.
    """

    def wake(self, wake: WakeUp) -> None: ...


class WakerSlot:
    """The waker producers and dead-letter replay use; owned by the core, empty until an
    adapter's ``install()`` attaches one.

    While it is empty, a flush does not set the group's trigger flag (nobody would publish), so
    a running worker's periodic sweep sees the group as waiting and wakes it.
    """

    def __init__(self) -> None:
        self._waker: Waker | None = None
        self._lock = threading.Lock()

    @property
    def waker(self) -> Waker | None:
        return self._waker

    def attach(self, waker: Waker) -> None:
        """Make ``waker`` the one wake-ups go to. A second, different waker is refused: two
        adapters waking one engine's groups is a configuration mistake; ``detach`` first."""
        with self._lock:
            if self._waker is not None and self._waker is not waker:
                raise ConfigError(
                    f"this engine's async flush already wakes workers through {self._waker!r}; "
                    "install one adapter per engine (or detach the first waker)"
                )
            self._waker = waker

    def detach(self, waker: Waker) -> None:
        with self._lock:
            if self._waker is waker:
                self._waker = None
