"""Looking at MySQL directly, behind the ORM's back."""

from __future__ import annotations

from typing import Any

from beeorm_celery import Engine


def query(engine: Engine, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        cursor.execute(sql, args)
        return list(cursor.fetchall())


def scalar(engine: Engine, sql: str, args: tuple[Any, ...] = ()) -> Any:
    rows = query(engine, sql, args)
    return rows[0][0] if rows else None


def execute(engine: Engine, sql: str, args: tuple[Any, ...] = ()) -> int:
    with engine.mysql["default"].connection() as conn, conn.cursor() as cursor:
        return int(cursor.execute(sql, args))
