"""A lost log is loud: found, logged at ERROR, and counted in MySQL.

Each log has an epoch (a token made with the stream, stored in Redis next to it, and in MySQL
with the group's applied position). A worker that reads an epoch other than the one MySQL holds,
or none where MySQL holds one, knows the log it was applying is gone: Redis restarted without
its data, or someone deleted the keys. Every batch that log still held is lost. The worker then

- counts the loss in the position table (``log_losses``) in the same transaction that moves
  the position to the new log, so the count survives the Redis that lost the log, and a loss is
  counted once however many workers notice it (they hold the group's row in turn);
- logs an ERROR naming the group, the last batch id it had applied, and how many batches it had
  last seen pending: the position table's ``pending_seen`` (written with every position move,
  from the log length read in the same pipeline as the batches) or this process's memory,
  whichever is larger. At least that many acknowledged batches are lost.

The SQL lives in ``position.py``; this module holds the per-process parts.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import pymysql

from beeorm_celery.asyncflush import position

if TYPE_CHECKING:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor

logger = logging.getLogger(__name__)

_DUPLICATE_COLUMN = 1060


class PendingMemory:
    """The most recent log length each group's steps saw in this process."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def saw(self, group: str, pending: int) -> None:
        self._seen[group] = pending

    def get(self, group: str) -> int:
        return self._seen.get(group, 0)


class ColumnsCheck:
    """Adds the position table's newer columns once per process and pool, so a worker that runs
    before ``update_schema()`` never fails on them (it creates the table itself, too)."""

    def __init__(self) -> None:
        self._done: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, pool_name: str, conn: Connection[Any]) -> None:
        """Outside any transaction: an ALTER TABLE commits it."""
        if pool_name in self._done:
            return
        with self._lock:
            if pool_name in self._done:
                return
            with conn.cursor() as cursor:
                for statement in position.missing_column_alters(conn):
                    try:
                        cursor.execute(statement)
                    except pymysql.MySQLError as e:
                        if not (e.args and e.args[0] == _DUPLICATE_COLUMN):
                            raise  # (1060: another worker added it at the same moment)
            self._done.add(pool_name)


def record_loss(
    cursor: Cursor, group: str, new_epoch: str, last_applied: str, remembered: int
) -> None:
    """In the open transaction holding the group's row: count the loss, move to the new log,
    and say so (the caller commits)."""
    stored = position.record_loss(cursor, group, new_epoch)
    seen = max(stored, remembered)
    logger.error(
        "async group %r: its log was lost and recreated (the log's Redis restarted without its "
        "data, or its keys were deleted). The last batch applied was %s; %d batch(es) were "
        "pending when a worker last looked: at least that many acknowledged writes are lost "
        "and will not reach MySQL. Counted in async_stats()[%r]['log_losses']; see "
        "docs/redis.md to run that Redis with persistence",
        group,
        last_applied,
        seen,
        group,
    )
