"""The bench's engine and Celery app, built the same way in the bench and in its workers.

The naive baseline's task lives here too: one autocommit INSERT per task, published once per
row, on the same broker as the async flush's apply task.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

import pymysql
from celery import Celery

from beeorm_celery import Engine, Registry
from beeorm_celery.celery import recommended_settings
from bench import models

NAIVE_QUEUE = "bench.naive"
NAIVE_TASK = "bench.naive_insert"
_NAIVE_SQL = (
    f"INSERT INTO `{models.NAIVE_TABLE}` ({', '.join(f'`{c}`' for c in models.COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(models.COLUMNS))})"
)


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


def register_naive_task(app: Celery, mysql_url: str) -> Any:
    """The write-behind that issue 5 compares against: a task per row, one INSERT each."""
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
                autocommit=True,
            )
            connections[os.getpid()] = conn
        return conn

    # Celery's defaults for a plain task (ack on receipt) and prefetch 4 on its worker (see
    # naive.py): the baseline as a developer would first write it, not handicapped by the
    # settings the long-running apply task needs.
    @app.task(name=NAIVE_TASK, acks_late=False, ignore_result=True)  # type: ignore[untyped-decorator]
    def naive_insert(row: list[Any]) -> None:
        with connection().cursor() as cursor:
            cursor.execute(_NAIVE_SQL, row)

    return naive_insert
