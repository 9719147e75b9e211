"""``Harness``: the run's database, Redis keys, engine, Celery app and workers, and the clean-up.

The bench owns one database (created and dropped here) and every Redis key under its prefix,
in data and broker alike. A Redis lock keeps two bench runs from measuring each other.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import pymysql
import redis

from beeorm_celery import Context, Engine
from beeorm_celery.asyncflush.position import APPLIED_TABLE
from beeorm_celery.asyncflush.transport import Waker, WakeUp
from beeorm_celery.celery import install, queue_for
from bench import models
from bench.celery_app import build_app, build_engine, register_naive_task, register_peer_task
from bench.server_cpu import MySQLProcess, redis_seconds
from bench.settings import BenchSettings
from bench.workers import REPO, Worker, WorkerLauncher

T = TypeVar("T")

# Ids for 100,000 entities without a Redis round trip each (the default block is 1 id).
_ID_BLOCK_SIZE = 10_000
_LOCK_TTL_S = 1800
_DELETE_CHUNK = 1000


class BenchError(RuntimeError):
    """A measurement could not finish (a worker died, rows did not land in time)."""


def wait_until(
    predicate: Callable[[], T | None], timeout_s: float, interval_s: float, what: str
) -> T:
    """Poll ``predicate`` until it returns something truthy; BenchError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


class CountingWaker:
    """Counts the apply tasks flush_async() publishes (one per group that had none waiting)."""

    def __init__(self, inner: Waker) -> None:
        self.inner = inner
        self.count = 0

    def wake(self, wake: WakeUp) -> None:
        self.count += 1
        self.inner.wake(wake)


class Harness:
    def __init__(self, settings: BenchSettings) -> None:
        self.settings = settings
        self.scratch = Path(tempfile.mkdtemp(prefix="beeorm-bench-"))
        self.redis = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
        self.broker = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=5)
        self._lock_key = f"{settings.prefix}.lock"  # outside the prefix pattern that is deleted
        self._lock_token = f"{os.getpid()}@{time.time():.0f}"
        self._locked = False  # only the run holding the lock may clean up
        self._db: pymysql.connections.Connection[Any] | None = None
        self._mysql_process: MySQLProcess | None = None
        self.engine: Engine | None = None
        profile_dir = REPO / "bench" / "profiles" if settings.profile else None
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
        self.profile_dir = profile_dir
        self.launcher = WorkerLauncher(self._worker_env(), self.scratch, profile_dir)

    # --- set up and tear down

    def open(self) -> None:
        if not self.redis.set(self._lock_key, self._lock_token, nx=True, ex=_LOCK_TTL_S):
            raise SystemExit(
                f"bench: another bench run holds {self._lock_key} in {self.settings.redis_url} "
                f"(if none is running: redis-cli -n {self._redis_db()} del {self._lock_key})"
            )
        self._locked = True
        self._delete_keys()
        self._recreate_database()
        engine = build_engine(
            self.settings.mysql_url, self.settings.redis_url, self.settings.prefix, _ID_BLOCK_SIZE
        )
        self.engine = engine
        engine.update_schema()
        with self.db().cursor() as cursor:
            for table in (models.RAW_TABLE, models.NAIVE_TABLE, models.PEER_TABLE):
                cursor.execute(
                    f"CREATE TABLE `{table}` LIKE `{models.ROWS[0].__beeorm_options__.table}`"
                )
        self.app = build_app(self.settings.broker_url, self.settings.prefix)
        install(self.app, engine, sweep=False)  # flush_async publishes through this app
        # Count the wake-ups: put a counting waker in front of the one install() attached.
        wakers = engine.async_parts.wakers
        celery_waker = wakers.waker
        assert celery_waker is not None
        wakers.detach(celery_waker)
        self.publisher = CountingWaker(celery_waker)
        wakers.attach(self.publisher)
        self.naive_task = register_naive_task(self.app, self.settings.mysql_url)
        self.peer_task = register_peer_task(self.app, self.settings.mysql_url)

    def close(self, keep_logs: bool = False) -> None:
        """Stop every worker, drop the database and the keys. Safe after a partial open.

        The workers' logs stay in ``scratch`` with ``keep_logs`` (a phase failed).
        """
        self.launcher.stop_all()
        if not keep_logs:
            shutil.rmtree(self.scratch, ignore_errors=True)
        if self.engine is not None:
            self.engine.close()
        if not self._locked:  # another run owns the database and the keys
            self.redis.close()
            self.broker.close()
            return
        try:
            with self.admin_connection() as conn, conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{self.settings.database}`")
        finally:
            if self._db is not None:
                self._db.close()
            self._delete_keys()
            if self.redis.get(self._lock_key) == self._lock_token.encode():
                self.redis.delete(self._lock_key)
            self.redis.close()
            self.broker.close()

    def server_cpu_seconds(self) -> tuple[float, float | None]:
        """CPU seconds the Redis server of data and logs (the broker's too where it is the same
        server, as by default) and the MySQL server have used so far; MySQL's is None where its
        process cannot be read (``server_cpu.py``)."""
        if self._mysql_process is None:
            self._mysql_process = MySQLProcess(self.db())
        return redis_seconds(self.redis), self._mysql_process.seconds()

    def refresh_lock(self) -> None:
        self.redis.set(self._lock_key, self._lock_token, ex=_LOCK_TTL_S)

    def _redis_db(self) -> str:
        return urlparse(self.settings.redis_url).path.lstrip("/") or "0"

    def _worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            BENCH_MYSQL_URL=self.settings.mysql_url,
            BENCH_REDIS_URL=self.settings.redis_url,
            BENCH_BROKER_URL=self.settings.broker_url,
            BENCH_PREFIX=self.settings.prefix,
            PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        )
        return env

    @contextmanager
    def admin_connection(self) -> Iterator[pymysql.connections.Connection[Any]]:
        p = urlparse(self.settings.mysql_server_url)
        conn = pymysql.connect(
            host=p.hostname or "127.0.0.1",
            port=p.port or 3306,
            user=p.username or "root",
            password=p.password or "",
            charset="utf8mb4",
            autocommit=True,
        )
        try:
            yield conn
        finally:
            conn.close()

    def _recreate_database(self) -> None:
        name = self.settings.database
        with self.admin_connection() as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cursor.execute(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )

    def _delete_keys(self, pattern: str | None = None) -> int:
        """Delete the run's keys (data and broker) matching ``pattern`` (default: all of them)."""
        deleted = 0
        match = pattern or f"{self.settings.prefix}:*"
        for client in {id(self.redis): self.redis, id(self.broker): self.broker}.values():
            chunk: list[bytes] = []
            for key in client.scan_iter(match=match, count=_DELETE_CHUNK):
                chunk.append(key)
                if len(chunk) >= _DELETE_CHUNK:
                    deleted += int(client.unlink(*chunk))
                    chunk = []
            if chunk:
                deleted += int(client.unlink(*chunk))
        return deleted

    # --- helpers for the measurements

    def db(self) -> pymysql.connections.Connection[Any]:
        """The bench's own autocommit connection to its database (for polling and resets)."""
        if self._db is None:
            self._db = self.connect(autocommit=True)
        return self._db

    def connect(self, autocommit: bool) -> pymysql.connections.Connection[Any]:
        """A new plain PyMySQL connection to the bench's database (no pool, no engine); the
        caller closes it."""
        p = urlparse(self.settings.mysql_url)
        return pymysql.connect(
            host=p.hostname or "127.0.0.1",
            port=p.port or 3306,
            user=p.username or "root",
            password=p.password or "",
            database=self.settings.database,
            charset="utf8mb4",
            autocommit=autocommit,
        )

    def scalar(self, sql: str) -> int:
        with self.db().cursor() as cursor:
            cursor.execute(sql)
            row = cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def applied_operations(self) -> int:
        """Rows the workers have committed so far, over every group (moved with each COMMIT)."""
        return self.scalar(f"SELECT SUM(`applied_operations`) FROM `{APPLIED_TABLE}`")

    def count(self, table: str) -> int:
        return self.scalar(f"SELECT COUNT(*) FROM `{table}`")

    def reset_rows(self, entities: tuple[type[models.RowFields], ...] = models.ROWS) -> None:
        """Empty the row tables and their cache keys, and check no batch is still queued."""
        engine = self.require_engine()
        for entity in entities:
            schema = engine.schema(entity)
            pending = int(self.redis.xlen(engine.keys.log(schema.options.async_group)))
            if pending:
                raise BenchError(f"group {schema.options.async_group} still has {pending} batches")
            with self.db().cursor() as cursor:
                cursor.execute(f"TRUNCATE TABLE `{schema.table}`")
            self._delete_keys(f"{self.settings.prefix}:{{{schema.table}}}:e:*")

    def require_engine(self) -> Engine:
        if self.engine is None:
            raise BenchError("the harness is not open")
        return self.engine

    def start_worker(
        self, groups: list[str], concurrency: int, *, label: str, wait: bool = True
    ) -> Worker:
        return self.launcher.start(
            [queue_for(g) for g in groups], concurrency, label=label, wait=wait
        )

    def new_contexts(
        self, entities: tuple[type[models.RowFields], ...], rows: int, flush_size: int
    ) -> list[Context]:
        """``rows`` new entities in contexts of ``flush_size``, the groups taking turns."""
        engine = self.require_engine()
        contexts: list[Context] = []
        for n, start in enumerate(range(0, rows, flush_size)):
            entity = entities[n % len(entities)]
            ctx = engine.new_context()
            for i in range(start, min(start + flush_size, rows)):
                ctx.new_entity(entity, **models.row_values(i))
            contexts.append(ctx)
        return contexts


def timed_drain(
    harness: Harness, worker: Worker, operations: int, *, timeout_s: float, what: str
) -> tuple[float, float]:
    """Seconds, and the worker's CPU seconds, from now until the workers have committed
    ``operations`` in all (the position table's counters)."""
    started = time.perf_counter()
    cpu = worker.cpu_seconds()
    wait_until(
        lambda: harness.applied_operations() >= operations,
        timeout_s=timeout_s,
        interval_s=0.05,
        what=what,
    )
    return time.perf_counter() - started, worker.cpu_seconds() - cpu


@contextmanager
def stopped_after(worker: Worker) -> Iterator[Worker]:
    """Stop ``worker`` when the block ends; a ``BenchError`` in it carries the worker's log."""
    try:
        yield worker
    except BenchError as e:
        raise BenchError(f"{e}\nworker log:\n{worker.log_tail()}") from None
    finally:
        worker.stop()


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the garbage collector off objects that exist before a timed section.

    The bench creates its entities before the clock starts; without this, collections of that
    pre-built heap (which a real producer would not hold) would be charged to the flushes.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
