"""A private Redis server for fault runs and tests: its own port and directory.

Tests that restart Redis, fill its memory or change its eviction policy must never touch the
shared server, which other developers' tests use at the same time. This one is started from
``redis-server`` with settings given on the command line (nothing from /etc/redis), owned by
this process: ``crash()`` is a SIGKILL of exactly its pid, and ``start()`` again reuses the same
directory, so an AOF written before the crash is loaded back.
"""

from __future__ import annotations

import shutil
import subprocess

import redis

from bench.private_server import PrivateServer

_READY_TIMEOUT_S = 30.0


class RedisUnavailable(RuntimeError):
    """redis-server is missing, or the private server would not start."""


class PrivateRedis(PrivateServer):
    """``PrivateRedis(aof=True, maxmemory="2mb", policy="noeviction")``; ``start()``, ``crash()``.

    ``aof``: appendonly with ``appendfsync everysec`` (the setting docs/redis.md recommends);
    without it the server keeps nothing across a restart (``save ""``, no AOF).
    """

    kind = "Redis"
    unavailable = RedisUnavailable

    def __init__(
        self,
        *,
        aof: bool = False,
        maxmemory: str | None = None,
        policy: str = "noeviction",
        extra: list[str] | None = None,
    ) -> None:
        found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin")
        if not found:
            raise RedisUnavailable("a private Redis needs redis-server on PATH")
        self._binary = found
        super().__init__("beeorm-private-redis-")
        self.log_path = self.base_dir / "redis.log"
        self.aof = aof
        self.maxmemory = maxmemory
        self.policy = policy
        self.extra = list(extra or [])

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _args(self) -> list[str]:
        args = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.base_dir),
            "--save",
            "",
            "--maxmemory-policy",
            self.policy,
            "--logfile",
            str(self.log_path),
        ]
        if self.maxmemory is not None:
            args += ["--maxmemory", self.maxmemory]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        return args + self.extra

    def start(self) -> None:
        if self.running:
            return
        self.process = subprocess.Popen(
            self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self.wait_ready(_READY_TIMEOUT_S)

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_connect_timeout=2)

    def answers(self) -> bool:
        """Up and done loading its data (a loading server answers PING with an error)."""
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def restart_empty(self) -> None:
        """Kill it and start it again with no data at all (a Redis without persistence)."""
        self.crash()
        for path in self.base_dir.iterdir():
            if path != self.log_path:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        self.start()
