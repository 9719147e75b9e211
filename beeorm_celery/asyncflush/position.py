"""The applied-position table ``_beeorm_async_applied``: the only module with its SQL.

One row per async group in the group's MySQL pool: the log's epoch, the id of the last batch
applied, and totals. A drain locks the row (``FOR UPDATE SKIP LOCKED``: one holder per group),
moves it in the same transaction as the batches' statements (law 3), and reads it after an
ambiguous COMMIT to know what landed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pymysql

from beeorm_celery.asyncflush.mysql_errors import error_code
from beeorm_celery.ddl import TABLE_OPTIONS

if TYPE_CHECKING:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor

    from beeorm_celery.mysql import MySQLPool

APPLIED_TABLE = "_beeorm_async_applied"
APPLIED_TABLE_SQL = (
    f"CREATE TABLE IF NOT EXISTS `{APPLIED_TABLE}` (\n"
    "  `async_group` VARCHAR(191) NOT NULL,\n"
    "  `epoch` VARCHAR(40) NOT NULL DEFAULT '',\n"
    "  `last_batch_id` VARCHAR(41) NOT NULL DEFAULT '0-0',\n"
    "  `applied_batches` BIGINT UNSIGNED NOT NULL DEFAULT 0,\n"
    "  `applied_operations` BIGINT UNSIGNED NOT NULL DEFAULT 0,\n"
    "  `log_losses` BIGINT UNSIGNED NOT NULL DEFAULT 0,\n"
    "  `pending_seen` BIGINT UNSIGNED NOT NULL DEFAULT 0,\n"
    "  `updated_at` DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),\n"
    "  PRIMARY KEY (`async_group`)\n"
    f") {TABLE_OPTIONS}"
)

LOCK_SQL = (
    f"SELECT `epoch`, `last_batch_id` FROM `{APPLIED_TABLE}` "
    "WHERE `async_group` = %s FOR UPDATE SKIP LOCKED"
)
ADVANCE_SQL = (
    f"UPDATE `{APPLIED_TABLE}` SET `epoch` = %s, `last_batch_id` = %s, "
    "`applied_batches` = `applied_batches` + %s, `applied_operations` = `applied_operations` + %s, "
    "`pending_seen` = %s, `updated_at` = NOW(6) WHERE `async_group` = %s"
)
# Columns added after the table's first release: added where missing (update_schema, or the
# first worker of a process, see log_loss.ColumnsCheck).
ADDED_COLUMNS = {
    "log_losses": "BIGINT UNSIGNED NOT NULL DEFAULT 0",  # logs found lost (log_loss.py)
    "pending_seen": "BIGINT UNSIGNED NOT NULL DEFAULT 0",  # the backlog at the last move
}
_COLUMNS_SQL = (
    "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
    "AND TABLE_NAME = %s"
)
_PENDING_SEEN_SQL = f"SELECT `pending_seen` FROM `{APPLIED_TABLE}` WHERE `async_group` = %s"
_RECORD_LOSS_SQL = (
    f"UPDATE `{APPLIED_TABLE}` SET `epoch` = %s, `last_batch_id` = '0-0', "
    "`log_losses` = `log_losses` + 1, `pending_seen` = 0, `updated_at` = NOW(6) "
    "WHERE `async_group` = %s"
)
_EXISTS_SQL = f"SELECT 1 FROM `{APPLIED_TABLE}` WHERE `async_group` = %s"
_CREATE_ROW_SQL = f"INSERT IGNORE INTO `{APPLIED_TABLE}` (`async_group`) VALUES (%s)"
_COUNTS_SQL = (
    f"SELECT `async_group`, `applied_batches`, `applied_operations` FROM `{APPLIED_TABLE}`"
)
_ROWS_SQL = f"SELECT * FROM `{APPLIED_TABLE}`"
_NO_SUCH_TABLE = 1146
_TABLE_EXISTS_SQL = (
    "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s"
)


def lock(conn: Connection[Any], cursor: Cursor, group: str) -> tuple[str, str] | None:
    """Lock ``group``'s row in the open transaction: (epoch, last batch id), or None when
    another worker holds it. Creates the table and the row on first use."""
    cursor.execute(LOCK_SQL, (group,))
    row = cursor.fetchone()
    if row is not None:
        return str(row[0]), str(row[1])
    conn.rollback()
    # No row: either another worker holds it (SKIP LOCKED) or the group is new.
    try:
        cursor.execute(_EXISTS_SQL, (group,))
    except pymysql.err.ProgrammingError as e:
        if error_code(e) != _NO_SUCH_TABLE:
            raise
        cursor.execute(APPLIED_TABLE_SQL)
        cursor.execute(_EXISTS_SQL, (group,))
    if cursor.fetchone() is not None:
        return None
    cursor.execute(_CREATE_ROW_SQL, (group,))
    conn.begin()
    cursor.execute(LOCK_SQL, (group,))
    row = cursor.fetchone()
    if row is None:
        conn.rollback()
        return None
    return str(row[0]), str(row[1])


def advance(
    cursor: Cursor,
    group: str,
    epoch: str,
    batch_id: str,
    batches: int,
    operations: int,
    pending: int = 0,
) -> None:
    """Move the locked row to ``batch_id`` (commit with the batches' statements); ``pending``:
    the batches left in the log after these (reported if the log is lost later)."""
    cursor.execute(ADVANCE_SQL, (epoch, batch_id, batches, operations, pending, group))


def record_loss(cursor: Cursor, group: str, new_epoch: str) -> int:
    """The locked row's log was lost: count it, point the position at the new log's start.
    Returns the batches the row last saw pending (commit follows)."""
    cursor.execute(_PENDING_SEEN_SQL, (group,))
    row = cursor.fetchone()
    cursor.execute(_RECORD_LOSS_SQL, (new_epoch, group))
    return int(row[0]) if row is not None else 0


def missing_column_alters(conn: Connection[Any]) -> list[str]:
    """ALTER TABLE statements adding ``ADDED_COLUMNS`` where an existing table lacks them."""
    with conn.cursor() as cursor:
        cursor.execute(_COLUMNS_SQL, (APPLIED_TABLE,))
        present = {str(row[0]) for row in cursor.fetchall()}
    if not present:
        return []  # no table yet: it is created with every column
    return [
        f"ALTER TABLE `{APPLIED_TABLE}` ADD COLUMN `{name}` {definition}"
        for name, definition in ADDED_COLUMNS.items()
        if name not in present
    ]


def lock_many(cursor: Cursor, groups: list[str]) -> dict[str, tuple[str, str]]:
    """Lock the rows of ``groups`` that no other worker holds, in one statement: group ->
    (epoch, last batch id). A group missing from the answer is held elsewhere or has no row
    yet (``lock`` creates it)."""
    marks = ", ".join(["%s"] * len(groups))
    cursor.execute(
        f"SELECT `async_group`, `epoch`, `last_batch_id` FROM `{APPLIED_TABLE}` "
        f"WHERE `async_group` IN ({marks}) FOR UPDATE SKIP LOCKED",
        groups,
    )
    return {str(g): (str(e), str(b)) for g, e, b in cursor.fetchall()}


def existing(cursor: Cursor, groups: list[str]) -> set[str]:
    """Which of ``groups`` have a row, without locking anything (a group ``lock_many`` did not
    return is then held by another worker, not new)."""
    marks = ", ".join(["%s"] * len(groups))
    cursor.execute(
        f"SELECT `async_group` FROM `{APPLIED_TABLE}` WHERE `async_group` IN ({marks})", groups
    )
    return {str(g) for (g,) in cursor.fetchall()}


def advance_many(cursor: Cursor, moves: list[tuple[str, str, str, int, int, int]]) -> None:
    """``advance`` for several locked rows in one statement: (group, epoch, batch id, batches,
    operations, pending) each. (A join with the moves as a derived table: MySQL and MariaDB
    alike.)"""
    row = "SELECT %s AS `g`, %s AS `e`, %s AS `b`, %s AS `nb`, %s AS `no`, %s AS `np`"
    cursor.execute(
        f"UPDATE `{APPLIED_TABLE}` AS `a` JOIN ({' UNION ALL '.join([row] * len(moves))}) AS `m` "
        "ON `a`.`async_group` = `m`.`g` SET `a`.`epoch` = `m`.`e`, "
        "`a`.`last_batch_id` = `m`.`b`, `a`.`applied_batches` = `a`.`applied_batches` + `m`.`nb`, "
        "`a`.`applied_operations` = `a`.`applied_operations` + `m`.`no`, "
        "`a`.`pending_seen` = `m`.`np`, `a`.`updated_at` = NOW(6)",
        [value for move in moves for value in move],
    )


def applied_counts(
    pools: Mapping[str, MySQLPool], groups: Mapping[str, str]
) -> dict[str, tuple[int, int]]:
    """Per group of ``groups`` (group -> pool): batches and operations applied so far."""
    counts: dict[str, tuple[int, int]] = {}
    for pool_name in set(groups.values()):
        try:
            with pools[pool_name].connection() as conn, conn.cursor() as cursor:
                cursor.execute(_COUNTS_SQL)
                for group, batches, operations in cursor.fetchall():
                    if groups.get(group) == pool_name:
                        counts[group] = (int(batches), int(operations))
        except pymysql.err.ProgrammingError:
            continue  # the table does not exist yet: nothing applied
    return counts


def applied_rows(
    pools: Mapping[str, MySQLPool], groups: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """The table's rows by group of ``groups`` (group -> pool), read with ``SELECT *`` so that
    columns added later (``log_losses``) are picked up without a second query."""
    rows: dict[str, dict[str, Any]] = {}
    for pool_name in sorted(set(groups.values())):
        try:
            with pools[pool_name].connection() as conn, conn.cursor() as cursor:
                cursor.execute(_ROWS_SQL)
                names = [d[0] for d in cursor.description or ()]
                for values in cursor.fetchall():
                    row = dict(zip(names, values, strict=True))
                    group = row.get("async_group")
                    if groups.get(str(group)) == pool_name:
                        rows[str(group)] = row
        except pymysql.err.ProgrammingError as e:
            if error_code(e) == _NO_SUCH_TABLE:
                continue  # no worker has applied anything on this pool yet
            raise
    return rows


def table_alters(conn: Connection[Any]) -> list[str]:
    """What ``update_schema()`` runs for this table: create it when missing."""
    with conn.cursor() as cursor:
        cursor.execute(_TABLE_EXISTS_SQL, (APPLIED_TABLE,))
        found = cursor.fetchone()
    return missing_column_alters(conn) if found else [APPLIED_TABLE_SQL]
