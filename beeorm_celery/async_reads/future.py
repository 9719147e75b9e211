"""``QueryFuture``: a ``concurrent.futures.Future`` whose ``cancel()`` also works while it runs.

The standard ``Future.cancel()`` returns False once the work has started; a query that is
already running in MySQL is exactly the one worth cancelling. Here ``cancel()`` marks the future
cancelled and calls a stop hook that the worker installs (it sends ``KILL QUERY``).

The worker never sets a result on a cancelled future: it first *claims* the future, and a
claimed future can no longer be cancelled (cancel() returns False, as for a finished one).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import TypeVar

T = TypeVar("T")


class QueryFuture(Future[T]):
    """What ``search_async`` / ``count_async`` / ``paginate_async`` return.

    Use it as any ``concurrent.futures.Future`` (``result(timeout)``, ``add_done_callback``,
    ``concurrent.futures.wait``) or await it with ``asyncio.wrap_future``. ``pool`` is the MySQL
    pool the query runs on.
    """

    def __init__(self, pool: str, on_cancel: Callable[[], object] | None = None) -> None:
        super().__init__()
        self.pool = pool
        self._claimed = False
        self._on_cancel = on_cancel  # counts it, before cancel() returns
        # Installed by the worker before the future turns RUNNING; stops the running statement.
        self._stop: Callable[[], object] | None = None

    def cancel(self) -> bool:
        """Cancel the query; a running one is killed in MySQL before this returns.

        Returns False only when the result is already decided (finished, or being set).
        """
        with self._condition:
            state = self._state
            if state == FINISHED or (state == RUNNING and self._claimed):
                return False
            if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            if state == PENDING:
                # The worker notifies waiters when it dequeues it (set_running_or_notify_cancel).
                self._state = CANCELLED
            else:
                # Running: nobody will call set_running_or_notify_cancel again, notify here.
                self._state = CANCELLED_AND_NOTIFIED
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
            self._condition.notify_all()
            stop = self._stop if state == RUNNING else None
        if stop is not None:
            stop()  # outside the lock: it waits for the worker, which may need this lock
        if self._on_cancel is not None:
            self._on_cancel()
        self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def set_stopper(self, stop: Callable[[], object]) -> None:
        """For the worker, before the future turns RUNNING: how to stop its statement."""
        self._stop = stop

    def claim(self) -> bool:
        """For the worker: True if this future may now be given its result or error.

        After a successful claim ``cancel()`` returns False; after a cancel, claim is False.
        """
        with self._condition:
            if self._state != RUNNING or self._claimed:
                return False
            self._claimed = True
            return True

    def __repr__(self) -> str:
        return f"<QueryFuture pool={self.pool!r} state={self._state}>"
