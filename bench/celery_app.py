"""The bench's engine and Celery app, built the same way in the bench and in its workers.

The baselines' tasks live here too, on the same broker as the async flush's apply task: the
naive one (one autocommit INSERT per task, published once per row) and the peer (one task per
flush carrying its rows, ``executemany`` in one transaction, see peer.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pymysql
from celery import Celery

from beeorm_celery import Engine, Registry
from beeorm_celery.celery import recommended_settings
from bench import models

NAIVE_QUEUE = "bench.naive"
NAIVE_TASK = "bench.naive_insert"
PEER_QUEUE = "bench.peer"
PEER_TASK = "bench.peer_write"
_INSERT_SQL = (
    f"INSERT INTO `{{table}}` ({', '.join(f'`{c}`' for c in models.COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(models.COLUMNS))})"
)
_NAIVE_SQL = _INSERT_SQL.format(table=models.NAIVE_TABLE)
_PEER_SQL = _INSERT_SQL.format(table=models.PEER_TABLE)


def build_engine(mysql_url: str, redis_url: str, prefix: str, id_block_size: int = 1) -> Engine:
    registry = Registry(key_prefix=prefix, id_block_size=id_block_size)
    registry.register_mysql(mysql_url)
    registry.register_redis(redis_url)
    registry.register_entity(*models.ENTITIES)
    return registry.validate()


def build_app(broker_url: str, prefix: str) -> Celery:
    """A Celery app configured like celeryconfig.py, with every broker key under ``prefix``."""
    app = Celery("beeorm_bench")
    app.conf.update(
        recommended_settings(events=False),
        broker_url=broker_url,
        broker_transport_options={"global_keyprefix": f"{prefix}:q:", "visibility_timeout": 600},
        worker_hijack_root_logger=False,
    )
    return app


def _per_process_connection(
    mysql_url: str, autocommit: bool
) -> Callable[[], pymysql.connections.Connection[Any]]:
    connections: dict[int, pymysql.connections.Connection[Any]] = {}

    def connection() -> pymysql.connections.Connection[Any]:
        # one connection per pool process, opened after fork
        conn = connections.get(os.getpid())
        if conn is None:
            p = urlparse(mysql_url)
            conn = pymysql.connect(
                host=p.hostname or "127.0.0.1",
                port=p.port or 3306,
                user=p.username or "root",
                password=p.password or "",
                database=p.path.lstrip("/"),
                charset="utf8mb4",
                autocommit=autocommit,
            )
            connections[os.getpid()] = conn
        return conn

    return connection


def register_naive_task(app: Celery, mysql_url: str) -> Any:
    """The write-behind that issue 5 compares against: a task per row, one INSERT each."""
    connection = _per_process_connection(mysql_url, autocommit=True)

    # Celery's defaults for a plain task (ack on receipt) and prefetch 4 on its worker (see
    # naive.py): the baseline as a developer would first write it, not handicapped by the
    # settings the long-running apply task needs.
    @app.task(name=NAIVE_TASK, acks_late=False, ignore_result=True)  # type: ignore[untyped-decorator]
    def naive_insert(row: list[Any]) -> None:
        with connection().cursor() as cursor:
            cursor.execute(_NAIVE_SQL, row)

    return naive_insert


def register_peer_task(app: Celery, mysql_url: str) -> Any:
    """The hand-written write-behind (peer.py): a task per flush, its rows in one transaction."""
    connection = _per_process_connection(mysql_url, autocommit=False)

    @app.task(name=PEER_TASK, acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def peer_write(rows: list[list[Any]]) -> None:
        conn = connection()
        try:
            with conn.cursor() as cursor:
                cursor.executemany(_PEER_SQL, rows)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    return peer_write
