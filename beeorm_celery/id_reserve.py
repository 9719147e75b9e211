"""The high-water mark of entity ids: the most any process may have handed out, kept in MySQL.

The id counters live in Redis, and a Redis can lose them (restarted without persistence, an
evicting cache pool). Seeding a lost counter from ``MAX(id)`` and the queued log alone is not
enough: ids handed out before the loss may still land after it (a process's reserved block, a
batch a worker is committing right now), and a counter seeded below them hands them out again.

So no id is handed out above the counter's ceiling, and the ceiling only rises after MySQL has
recorded it here (``_beeorm_id_reserved``, one row per table, in the entity's MySQL pool). The
ceiling rises by ``leap`` ids at a time, so MySQL is written once per ``leap`` new ids, not per
id, and ``flush_async()`` keeps working through a MySQL outage until the ceiling is reached. A
lost counter is seeded at or above the recorded ceiling: above every id that may still land, at
the price of a gap of at most ``leap`` ids after each loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pymysql

from beeorm_celery.ddl import TABLE_OPTIONS

if TYPE_CHECKING:
    from pymysql.connections import Connection

    from beeorm_celery.mysql import MySQLPool

RESERVED_TABLE = "_beeorm_id_reserved"
RESERVED_TABLE_SQL = (
    f"CREATE TABLE IF NOT EXISTS `{RESERVED_TABLE}` (\n"
    "  `table_name` VARCHAR(191) NOT NULL,\n"
    "  `reserved_upto` BIGINT UNSIGNED NOT NULL DEFAULT 0,\n"
    "  `updated_at` DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),\n"
    "  PRIMARY KEY (`table_name`)\n"
    f") {TABLE_OPTIONS}"
)
_RECORD_SQL = (
    f"INSERT INTO `{RESERVED_TABLE}` (`table_name`, `reserved_upto`) VALUES (%s, %s) "
    "ON DUPLICATE KEY UPDATE `reserved_upto` = GREATEST(`reserved_upto`, VALUES(`reserved_upto`)), "
    "`updated_at` = NOW(6)"
)
_READ_SQL = f"SELECT `reserved_upto` FROM `{RESERVED_TABLE}` WHERE `table_name` = %s"
_TABLE_EXISTS_SQL = (
    "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s"
)
_NO_SUCH_TABLE = 1146


def recorded_ceiling(pool: MySQLPool, table: str) -> int:
    """The highest id any process may have handed out for ``table`` (0: none recorded)."""
    try:
        rows = pool.read_all(_READ_SQL, (table,))
    except pymysql.err.ProgrammingError as e:
        if e.args and e.args[0] == _NO_SUCH_TABLE:
            return 0  # never recorded: this table's ids all came before the mark existed
        raise
    return int(rows[0][0]) if rows else 0


def record_ceiling(pool: MySQLPool, table: str, upto: int) -> None:
    """Record that ids up to ``upto`` may be handed out (never lowers the mark)."""
    with pool.connection() as conn, conn.cursor() as cursor:
        try:
            cursor.execute(_RECORD_SQL, (table, upto))
        except pymysql.err.ProgrammingError as e:
            if not (e.args and e.args[0] == _NO_SUCH_TABLE):
                raise
            cursor.execute(RESERVED_TABLE_SQL)  # before update_schema(): made on first use
            cursor.execute(_RECORD_SQL, (table, upto))


def table_alters(conn: Connection[Any]) -> list[str]:
    """What ``update_schema()`` runs for this table: create it when missing."""
    with conn.cursor() as cursor:
        cursor.execute(_TABLE_EXISTS_SQL, (RESERVED_TABLE,))
        found = cursor.fetchone()
    return [] if found else [RESERVED_TABLE_SQL]
