"""The CPU time the servers spend: Redis (``INFO cpu``), MariaDB (its process, by its pid file).

The throughput phases report the CPU per row of the producer and the workers; on a machine of
two cores the servers share those cores, so their CPU per row is part of what a rate costs
(at 64 groups, MariaDB writes 64 tables). Redis says its own CPU time, wherever it runs;
MariaDB's is read from its process, so only where the server runs on this machine and its pid
file is readable: otherwise ``None``, and the figure is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    import pymysql
    import redis


def redis_seconds(client: redis.Redis) -> float:
    """CPU time (user + system) the Redis server has used since it started."""
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class MySQLProcess:
    """The MariaDB (or MySQL) server process behind ``conn``, when it runs on this machine."""

    def __init__(self, conn: pymysql.connections.Connection[Any]) -> None:
        self._process = _server_process(conn)

    def seconds(self) -> float | None:
        """CPU time (user + system) of the server process so far; None when not readable."""
        if self._process is None:
            return None
        try:
            times = self._process.cpu_times()
        except psutil.Error:
            return None
        return float(times.user + times.system)


def _server_process(conn: pymysql.connections.Connection[Any]) -> psutil.Process | None:
    with conn.cursor() as cursor:
        cursor.execute("SELECT @@pid_file")
        row = cursor.fetchone()
    if row is None or not row[0]:
        return None
    try:
        pid = int(Path(str(row[0])).read_text().split()[0])
        process = psutil.Process(pid)
        process.cpu_times()
    except (OSError, ValueError, IndexError, psutil.Error):
        return None  # another machine's path, or not ours to read
    return process
