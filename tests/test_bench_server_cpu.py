"""The bench's reading of the servers' CPU time (bench/server_cpu.py), against the real servers.

The throughput figures split a row's cost between the producer, the workers, Redis and MySQL;
these check that the two server readings move when the server works, and that MySQL's is left
out (None), not made up, where its process cannot be read.
"""

from __future__ import annotations

import time
from pathlib import Path

import pymysql
import redis

from bench.server_cpu import MySQLProcess, redis_seconds
from tests.support import services


def test_redis_cpu_grows_with_the_work_it_does(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    before = redis_seconds(client)
    key = f"{key_prefix}:cpu"
    deadline = time.monotonic() + 5
    # Enough work for the server's own clock (microseconds) to see it, with a bound in time.
    while redis_seconds(client) - before < 0.01 and time.monotonic() < deadline:
        pipe = client.pipeline(transaction=False)
        for n in range(500):
            pipe.zadd(key, {f"m{n}": n})
        pipe.execute()
    assert redis_seconds(client) - before >= 0.01


def _pid_file(conn: pymysql.connections.Connection) -> Path | None:  # type: ignore[type-arg]
    with conn.cursor() as cursor:
        cursor.execute("SELECT @@pid_file")
        row = cursor.fetchone()
    path = Path(str(row[0])) if row and row[0] else None
    return path if path is not None and path.is_file() else None


def test_mysql_cpu_grows_with_a_busy_query_or_is_left_out(mysql_server_url: str) -> None:
    conn = services.server_connection(mysql_server_url)
    try:
        server = MySQLProcess(conn)
        before = server.seconds()
        if _pid_file(conn) is None:
            # another machine (a container): the figure is left out, not guessed
            assert before is None
            return
        assert before is not None
        with conn.cursor() as cursor:
            cursor.execute("SELECT BENCHMARK(3000000, SHA2('beeorm', 256))")
        after = server.seconds()
    finally:
        conn.close()
    assert after is not None
    assert after - before >= 0.05
