"""A private Redis server for fault runs and tests: its own port and directory.

Tests that restart Redis, fill its memory or change its eviction policy must never touch the
shared server, which other developers' tests use at the same time. This one is started from
``redis-server`` with settings given on the command line (nothing from /etc/redis), owned by
this process: ``crash()`` is a SIGKILL of exactly its pid, and ``start()`` again reuses the same
directory, so an AOF written before the crash is loaded back.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from bench.chaos_mariadb import free_port

_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 30.0


class RedisUnavailable(RuntimeError):
    """redis-server is missing, or the private server would not start."""


class PrivateRedis:
    """``PrivateRedis(aof=True, maxmemory="2mb", policy="noeviction")``; ``start()``, ``crash()``.

    ``aof``: appendonly with ``appendfsync everysec`` (the setting docs/redis.md recommends);
    without it the server keeps nothing across a restart (``save ""``, no AOF).
    """

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
        self.base_dir = Path(tempfile.mkdtemp(prefix="beeorm-private-redis-"))
        self.port = free_port()
        self.aof = aof
        self.maxmemory = maxmemory
        self.policy = policy
        self.extra = list(extra or [])
        self.process: subprocess.Popen[bytes] | None = None

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
            str(self.base_dir / "redis.log"),
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
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not self.answers():
            if self.process.poll() is not None:
                raise RedisUnavailable(f"the private Redis exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RedisUnavailable(f"the private Redis did not answer:\n{self.log_tail()}")
            time.sleep(0.02)

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_connect_timeout=2)

    def answers(self) -> bool:
        """Up and done loading its data (a loading server answers PING with an error)."""
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def crash(self) -> None:
        """SIGKILL: no shutdown save; what the AOF had not written yet is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=_STOP_TIMEOUT_S)

    def restart_empty(self) -> None:
        """Kill it and start it again with no data at all (a Redis without persistence)."""
        self.crash()
        for path in self.base_dir.iterdir():
            if path.name != "redis.log":
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        self.start()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.base_dir / "redis.log").read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def close(self) -> None:
        try:
            self.crash()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
