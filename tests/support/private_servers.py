"""Private Redis and MariaDB servers for the tests that restart, kill, fill or reconfigure one
(never the shared servers): started for a ``with`` block, stopped and deleted after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bench.chaos_mariadb import PrivateMariaDB
from bench.chaos_redis import PrivateRedis


@contextmanager
def private_redis(
    *, aof: bool = False, maxmemory: str | None = None, policy: str = "noeviction"
) -> Iterator[PrivateRedis]:
    """A running redis-server of this test's own (without ``aof``: a restart loses all)."""
    server = PrivateRedis(aof=aof, maxmemory=maxmemory, policy=policy)
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextmanager
def private_mariadb(database: str, extra_args: tuple[str, ...] = ()) -> Iterator[PrivateMariaDB]:
    """A running mariadbd of this test's own, with ``database`` created."""
    server = PrivateMariaDB(database=database, extra_args=extra_args)
    try:
        server.install()
        server.start()
        server.create_database()
        yield server
    finally:
        server.close()
