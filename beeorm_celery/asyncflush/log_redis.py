"""Is the Redis that holds the async flush logs fit to hold acknowledged writes?

Two questions, asked with ``INFO`` (managed Redis services disable ``CONFIG``):

- May it evict keys (``maxmemory-policy`` other than ``noeviction``)? An evicted log entry is an
  acknowledged write lost without a trace, so an evicting policy is a ``ConfigError`` for
  producers: at ``validate()``, or at the first ``flush_async()`` when Redis was not reachable
  then. Workers only log it at start: applying what is queued shrinks what can still be lost.
- Does it keep its data across a restart (AOF, or RDB snapshots)? Without either, a restart
  loses every pending batch. That is allowed (some run Redis that way on purpose, with
  replicas), with a WARNING at worker start and a line in ``beeorm-celery stats``. RDB's
  schedule is only visible through ``CONFIG GET save``; where CONFIG is disabled it is unknown.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from beeorm_celery.errors import ConfigError

logger = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"
DOCS = "docs/redis.md"


@dataclass(frozen=True)
class LogRedisInfo:
    pool: str
    policy: str
    aof: bool
    rdb: bool | None  # None: unknown (CONFIG is disabled on this server)

    @property
    def evicts(self) -> bool:
        return self.policy != SAFE_POLICY

    @property
    def persistent(self) -> bool | None:
        if self.aof or self.rdb:
            return True
        return None if self.rdb is None else False

    def policy_error(self) -> ConfigError:
        return ConfigError(
            f"Redis pool {self.pool!r} holds the async flush logs and its maxmemory-policy is "
            f"{self.policy!r}: it may evict queued batches, losing writes flush_async() already "
            f"acknowledged. Set 'maxmemory-policy {SAFE_POLICY}' on that server (redis.conf, or "
            "your provider's parameter group), or keep the logs on another Redis with "
            f"Registry(async_redis_pool=...). See {DOCS}"
        )

    def persistence_text(self) -> str:
        if self.aof:
            return "AOF"
        if self.rdb:
            return "RDB snapshots only (a crash loses the writes since the last snapshot)"
        if self.rdb is None:
            return "no AOF; RDB unknown (CONFIG is disabled)"
        return "none (a restart loses every pending batch)"

    def summary(self) -> str:
        return (
            f"log Redis (pool {self.pool!r}): maxmemory-policy {self.policy}, "
            f"persistence {self.persistence_text()}"
        )


def inspect(client: redis.Redis, pool: str) -> LogRedisInfo:
    """One round trip: INFO memory, INFO persistence, and CONFIG GET save where allowed."""
    pipe = client.pipeline(transaction=False)
    pipe.info("memory")
    pipe.info("persistence")
    pipe.config_get("save")
    memory, persistence, save = pipe.execute(raise_on_error=False)
    for reply in (memory, persistence):
        if isinstance(reply, Exception):
            raise reply
    policy = str(_field(memory, "maxmemory_policy") or "unknown")
    aof = str(_field(persistence, "aof_enabled")) == "1"
    rdb: bool | None = None
    if isinstance(save, dict):
        schedule = save.get("save", save.get(b"save", ""))
        text = schedule.decode() if isinstance(schedule, bytes) else str(schedule)
        rdb = bool(text.strip())
    return LogRedisInfo(pool, policy, aof, rdb)


def _field(info: Any, name: str) -> Any:
    return info.get(name) if isinstance(info, dict) else None


class LogRedisGuard:
    """Asks once per process, and again after a failed attempt (Redis unreachable).

    It asks on a short-lived connection of its own, with short timeouts and no retries, so that
    ``validate()`` at import time neither waits long for an unreachable Redis nor leaves a
    connection behind for a forked worker to inherit.
    """

    def __init__(self, pool: str, url: str) -> None:
        self.pool = pool
        self._url = url
        self._info: LogRedisInfo | None = None
        self._lock = threading.Lock()
        self._reported = False  # once per process: consume_async_flush_events may run in a loop

    def _ask(self) -> LogRedisInfo:
        client = redis.Redis.from_url(
            self._url, socket_connect_timeout=2, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )
        try:
            return inspect(client, self.pool)
        finally:
            client.close()

    @property
    def checked(self) -> bool:
        return self._info is not None

    def info(self) -> LogRedisInfo | None:
        """What the server says, or None when it cannot be asked right now."""
        if self._info is not None:
            return self._info
        with self._lock:
            if self._info is None:
                try:
                    self._info = self._ask()
                except (redis.RedisError, OSError):
                    return None
            return self._info

    def require_safe(self) -> None:
        """Producers: ConfigError if the log's Redis may evict; nothing when unreachable (the
        caller's own command will fail and say so, and the next call asks again)."""
        info = self.info()
        if info is not None and info.evicts:
            self._info = None  # ask again next time: a fixed server must not stay refused
            raise info.policy_error()

    def report_at_worker_start(self) -> None:
        """Workers: ERROR for an evicting policy, WARNING without persistence (once)."""
        if self._reported:
            return
        info = self.info()
        if info is None:
            logger.warning(
                "could not read the configuration of the async flush log's Redis (pool %r): "
                "unreachable at worker start",
                self.pool,
            )
            return
        self._reported = True
        if info.evicts:
            logger.error("%s (this worker keeps applying what is queued)", info.policy_error())
        if info.persistent is False:
            logger.warning(
                "Redis pool %r holds the async flush logs without persistence (no AOF, no RDB): "
                "a restart of that Redis loses every pending batch. See %s",
                info.pool,
                DOCS,
            )
