"""The live view of the bulk run: per async group, operations queued vs applied by the worker.

"Queued" is counted by the producer as its ``flush_async()`` calls return. "Applied" comes from
``engine.async_stats()``, whose counts live in MySQL and move in the same transaction as the
rows, so the bar shows what really landed, not what a worker says it did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

if TYPE_CHECKING:
    from beeorm_celery import Engine
    from beeorm_celery.asyncflush.stats import GroupStats

POLL_INTERVAL_S = 0.2


class ProgressTimeout(Exception):
    """The worker did not apply everything within the bounded wait."""


class QueuedVsApplied:
    """A context manager; call ``queued()`` after each flush, then ``wait_applied()``."""

    def __init__(
        self, console: Console, engine: Engine, totals: dict[str, int], baseline: dict[str, int]
    ) -> None:
        self.engine = engine
        self.totals = totals
        self.baseline = baseline  # applied_operations before the run (earlier sections)
        self.progress = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(bar_width=36),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}", style="dim"),
            console=console,
            refresh_per_second=8,  # the producer shares this CPU: keep the redraws cheap
        )
        self._queued_tasks: dict[str, TaskID] = {}
        self._applied_tasks: dict[str, TaskID] = {}
        self._queued = dict.fromkeys(totals, 0)
        self._applied = dict.fromkeys(totals, 0)
        self.last_stats: dict[str, GroupStats] = {}
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="demo-stats", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> QueuedVsApplied:
        for group, total in self.totals.items():
            add = self.progress.add_task
            self._queued_tasks[group] = add(f"{group} queued", total=total, note="")
            self._applied_tasks[group] = add(f"{group} applied", total=total, note="")
        self.progress.start()
        self._poller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._poller.join(timeout=5)
        self.progress.stop()

    def queued(self, counts: dict[str, int]) -> None:
        for group, count in counts.items():
            self._queued[group] += count
            self.progress.update(self._queued_tasks[group], completed=self._queued[group])

    def applied(self) -> dict[str, int]:
        return dict(self._applied)

    def _refresh(self) -> None:
        stats = self.engine.async_stats()
        for group, task in self._applied_tasks.items():
            figures = stats[group]
            self._applied[group] = figures.applied_operations - self.baseline.get(group, 0)
            note = (
                f"{figures.pending} batches pending, oldest {figures.oldest_pending_seconds:.2f}s"
                if figures.pending
                else "caught up"
            )
            self.progress.update(task, completed=self._applied[group], note=note)
        self.last_stats = stats

    def _poll(self) -> None:
        while not self._stop.wait(POLL_INTERVAL_S):
            try:
                self._refresh()
            except Exception as e:  # handed to the main thread, which reports it
                self._error = e
                return

    def wait_applied(self, timeout_s: float, check: Callable[[], None]) -> float:
        """Seconds until every group applied its total; ``check`` raises if the worker died."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self._error is not None:
                raise self._error
            check()
            if all(self._applied[g] >= total for g, total in self.totals.items()):
                self._refresh()  # the final figures, not those of the last poll
                return time.monotonic() - started
            time.sleep(0.05)
        missing = {g: total - self._applied[g] for g, total in self.totals.items()}
        raise ProgressTimeout(
            f"the worker had not applied everything after {timeout_s:.0f}s; operations still "
            f"missing per group: {missing}"
        )
