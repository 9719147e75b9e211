"""Schema sync: the SQL that makes MySQL's tables match the registered entities.

Compares ``information_schema`` with each schema and produces CREATE TABLE for a new table and
one ALTER TABLE per changed table (add / modify / drop columns and indexes). Types are
normalised so MariaDB (``bigint(20) unsigned``) and MySQL 8 (``bigint unsigned``) both compare
equal to what the entity asks for, and a second run finds nothing to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from beeorm_celery.schema import EntitySchema, Index

if TYPE_CHECKING:
    from pymysql.connections import Connection

TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
_INT_WIDTH = re.compile(r"^(tinyint|smallint|mediumint|int|bigint)\(\d+\)")


def normalize_type(column_type: str) -> str:
    t = column_type.strip()
    if t.lower().startswith(("enum(", "set(")):
        # the members keep their case: renaming 'Up' to 'UP' is a change to apply
        head, _, members = t.partition("(")
        return f"{head.lower()}({members}"
    t = t.lower()
    if t.startswith("tinyint(1)"):
        return t  # the one display width that means something: BOOL
    return _INT_WIDTH.sub(r"\1", t)


@dataclass(frozen=True)
class ExistingColumn:
    name: str
    type: str
    nullable: bool
    charset: str | None


def create_table_sql(schema: EntitySchema) -> str:
    lines = [f"  {c.sql_definition()}" for c in schema.columns]
    lines.append("  PRIMARY KEY (`id`)")
    lines.extend(f"  {_index_definition(i)}" for i in schema.indexes.values())
    return f"CREATE TABLE `{schema.table}` (\n" + ",\n".join(lines) + f"\n) {TABLE_OPTIONS}"


def _index_definition(index: Index) -> str:
    kind = "UNIQUE KEY" if index.unique else "KEY"
    cols = ", ".join(f"`{c}`" for c in index.columns)
    return f"{kind} `{index.name}` ({cols})"


def _fetch(conn: Connection[Any], sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(sql, args)
        return list(cursor.fetchall())


def alters_for(conn: Connection[Any], schema: EntitySchema) -> list[str]:
    """The statements that bring ``schema.table`` in line with ``schema`` (empty: in line)."""
    table = schema.table
    found = _fetch(
        conn,
        "SELECT TABLE_COLLATION FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (table,),
    )
    if not found:
        return [create_table_sql(schema)]
    statements: list[str] = []
    collation = str(found[0][0] or "")
    if not collation.startswith("utf8mb4"):
        statements.append(
            f"ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
    existing = {
        row[0]: ExistingColumn(row[0], normalize_type(row[1]), row[2] == "YES", row[3])
        for row in _fetch(
            conn,
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
            "ORDER BY ORDINAL_POSITION",
            (table,),
        )
    }
    index_rows = _fetch(
        conn,
        "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        (table,),
    )
    existing_indexes: dict[str, Index] = {}
    for name, non_unique, column in index_rows:
        if name == "PRIMARY":
            continue
        prev = existing_indexes.get(name)
        cols = (prev.columns if prev else ()) + (column,)
        existing_indexes[name] = Index(name, cols, not int(non_unique))
    converting = bool(statements)  # CONVERT TO already moves every text column to utf8mb4
    changes = _column_changes(schema, existing, converting) + _index_changes(
        schema, existing_indexes
    )
    if changes:
        statements.append(f"ALTER TABLE `{table}` " + ", ".join(changes))
    return statements


def _column_changes(
    schema: EntitySchema, existing: dict[str, ExistingColumn], converting: bool = False
) -> list[str]:
    changes: list[str] = []
    previous = None
    for column in schema.columns:
        position = f" AFTER `{previous}`" if previous else " FIRST"
        previous = column.name
        have = existing.get(column.name)
        if have is None:
            changes.append(f"ADD COLUMN {column.sql_definition()}{position}")
            continue
        wanted_type = normalize_type(column.type.sql_type())
        wrong_charset = (
            not converting and have.charset is not None and not have.charset.startswith("utf8mb4")
        )
        if have.type != wanted_type or have.nullable != column.nullable or wrong_charset:
            changes.append(f"MODIFY COLUMN {column.sql_definition()}")
    wanted = set(schema.columns_by_name)
    changes.extend(f"DROP COLUMN `{name}`" for name in existing if name not in wanted)
    return changes


def _index_changes(schema: EntitySchema, existing: dict[str, Index]) -> list[str]:
    changes: list[str] = []
    for name, have in existing.items():
        want = schema.indexes.get(name)
        if want is None or want != have:
            changes.append(f"DROP INDEX `{name}`")
    for name, want in schema.indexes.items():
        if existing.get(name) != want:
            changes.append(f"ADD {_index_definition(want)}")
    return changes
