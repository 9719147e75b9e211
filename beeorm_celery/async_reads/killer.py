"""The connection that kills: ``KILL QUERY <thread id>`` for cancels and timeouts.

A connection busy with a statement cannot stop itself, so each MySQL pool's lane keeps one more
connection for this, opened on the first kill.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any

import pymysql

from beeorm_celery.async_reads.statements import error_code

if TYPE_CHECKING:
    from pymysql.connections import Connection

    from beeorm_celery.mysql import MySQLPool

log = logging.getLogger(__name__)

ER_NO_SUCH_THREAD = 1094


class Killer:
    """One connection per MySQL pool, shared by its workers (under a lock)."""

    def __init__(self, pool: MySQLPool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._conn: Connection[Any] | None = None

    def kill(self, thread_id: int) -> None:
        with self._lock:
            for attempt in (1, 2):  # a stale killer connection gets one reconnect
                try:
                    if self._conn is None:
                        self._conn = self._pool.new_connection()
                    with self._conn.cursor() as cursor:
                        cursor.execute(f"KILL QUERY {int(thread_id)}")
                    return
                except pymysql.MySQLError as e:
                    if error_code(e) == ER_NO_SUCH_THREAD:  # it is gone already
                        return
                    self._close()
                    if attempt == 2:
                        log.warning(
                            "cannot kill query %s on pool %r: %s", thread_id, self._pool.name, e
                        )

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            close_quietly(conn)

    def close(self) -> None:
        with self._lock:
            self._close()


def close_quietly(conn: Connection[Any]) -> None:
    with contextlib.suppress(Exception):  # closing a broken socket may fail: it is gone anyway
        conn.close()
