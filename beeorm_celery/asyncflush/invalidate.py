"""Cache invalidation after a drain step: which cached rows MySQL never had, and dropping them.

A dead-lettered batch's cache writes never reach MySQL, and a replayed dead letter may be cached
in a state MySQL never had: their keys go, so reads fall back to MySQL's truth (law 6). A later
batch touching a row a dead letter touched is dropped too once it commits, since the cache may
hold the dead letter's state on top of it. Either way the rows' pending markers are released
(``cache_patch``), so readers may fill them from MySQL again.

A batch whose producer cached a table under another column layout (another release, during a
rolling deploy) patched that release's cache entries, not this worker's: once it commits, this
worker's entries of its rows are marked stale, so the next read loads MySQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.batch import Batch
    from beeorm_celery.operations import Operation


class Invalidation:
    def __init__(
        self,
        drop: Callable[[Sequence[Operation]], None],
        release_pending: Callable[[Sequence[tuple[Sequence[Operation], str]]], None],
        mark_stale: Callable[[Sequence[Operation]], None],
    ) -> None:
        self._drop = drop
        self._release_pending = release_pending
        self._mark_stale = mark_stale
        self._tainted: set[tuple[str, int]] = set()  # rows a dead letter touched

    def dead_lettered(self, ops: Sequence[Operation], batch_id: str) -> None:
        self.drop(ops)
        self._release_pending([(ops, batch_id)])

    def committed(self, chunk: Sequence[Batch], last_id: str, released: bool = False) -> None:
        """``chunk`` committed through ``last_id``; ``released``: its pending markers were
        released already (a joint step releases every group's in one call)."""
        if not released:
            # MySQL has these rows now: readers may fill them again (cache_patch's markers)
            self._release_pending([([op for batch in chunk for op in batch.operations], last_id)])
        stale = [
            op
            for batch in chunk
            for op in batch.operations
            if batch.replay_of or (op.table, op.id) in self._tainted
        ]
        if stale:
            self.drop(stale)
        foreign = [
            op
            for batch in chunk
            if batch.foreign_tables
            for op in batch.operations
            if op.table in batch.foreign_tables
        ]
        if foreign:
            self._mark_stale(foreign)

    def drop(self, ops: Sequence[Operation]) -> None:
        for op in ops:
            self._tainted.add((op.table, op.id))
        self._drop(ops)
