"""What a worker checks when it starts, so that a mistake is said at once, with its fix.

Transport-free: an adapter calls ``check_at_worker_start`` with the queues its worker consumes
(the Celery adapter from a worker bootstep); it logs each problem and raises ``ConfigError`` when
the worker must not start. ``startup_problems`` returns them without logging. The checks, each
one round trip:

- the worker consumes none of the engine's async-group queues: it would say "ready" and apply
  nothing while the backlog grows (a WARNING: the app may have other work);
- Redis (the pool holding the async flush logs) does not answer (a WARNING: it may be
  restarting, the worker carries on and applies once it is back);
- a MySQL pool that async groups write to does not answer (a WARNING, likewise), refuses the
  login or names a database that does not exist (a refusal: no batch could ever be applied);
- tables of async entities that do not exist yet (a WARNING: their batches wait, as for a
  schema that lags the code, and are dead-lettered once ``schema_lag_dead_letter_after_s``
  runs out, so ``update_schema()`` is due).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pymysql
import redis

from beeorm_celery.errors import BeeormError, ConfigError

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine

# MySQL error codes that no waiting fixes: the login is refused, or the database is missing
_ACCESS_DENIED = (1044, 1045)
_UNKNOWN_DATABASE = 1049

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartupProblem:
    """One thing wrong, said with its fix. ``fatal``: no batch could be applied at all."""

    message: str
    fatal: bool = False

    @property
    def level(self) -> int:
        return logging.ERROR if self.fatal else logging.WARNING


def startup_problems(
    engine: Engine, consumed_queues: Collection[str] | None, queue_prefix: str
) -> list[StartupProblem]:
    """Every problem found, in the order a reader should fix them.

    ``consumed_queues``: the names of the queues the worker consumes (``None``: unknown, not
    checked); group ``G``'s queue is ``queue_prefix + G``.
    """
    problems: list[StartupProblem] = []
    if consumed_queues is not None:
        problems += _queue_problems(engine, consumed_queues, queue_prefix)
    problems += _redis_problems(engine)
    problems += _mysql_problems(engine)
    return problems


def refuses_to_start(problems: Collection[StartupProblem]) -> bool:
    return any(p.fatal for p in problems)


def check_at_worker_start(
    engine: Engine, consumed_queues: Collection[str] | None, queue_prefix: str
) -> list[StartupProblem]:
    """Log every problem (WARNING, or ERROR for those that stop the worker); raise
    ``ConfigError`` with them when the worker cannot apply anything, else return them."""
    problems = startup_problems(engine, consumed_queues, queue_prefix)
    for problem in problems:
        logger.log(problem.level, "beeorm worker start: %s", problem.message)
    if refuses_to_start(problems):
        raise ConfigError(
            "this worker cannot apply any batch: "
            + "; ".join(p.message for p in problems if p.fatal)
        )
    return problems


def _queue_problems(engine: Engine, consumed: Collection[str], prefix: str) -> list[StartupProblem]:
    groups = sorted(engine.async_groups)
    if not groups or any(prefix + g in consumed for g in groups):
        return []
    wanted = ",".join(prefix + g for g in groups)
    listening = ", ".join(sorted(consumed)) or "none"
    return [
        StartupProblem(
            f"this worker consumes no async flush queue (it consumes: {listening}), so it will "
            f"apply no batch while the backlog grows; start it with -Q {wanted} (Dramatiq: "
            f"--queues {wanted.replace(',', ' ')}), or give those queues to other workers"
        )
    ]


def _redis_problems(engine: Engine) -> list[StartupProblem]:
    pool = engine.async_redis_pool
    try:
        engine.async_parts.log_redis().ping()
    except BeeormError as e:  # the pool is not registered: validate() says so already
        return [StartupProblem(str(e), fatal=True)]
    except (redis.RedisError, OSError) as e:
        return [
            StartupProblem(
                f"Redis pool {pool!r}, which holds the async flush logs, does not answer "
                f"({type(e).__name__}: {e}); nothing can be applied until it does: start it, or "
                "fix its URL in registry.register_redis(...)"
            )
        ]
    return []


def _mysql_problems(engine: Engine) -> list[StartupProblem]:
    problems: list[StartupProblem] = []
    for pool_name in sorted(set(engine.async_groups.values())):
        pool = engine.mysql[pool_name]
        url = pool.config.safe_url
        try:
            with pool.connection() as conn, conn.cursor() as cursor:
                cursor.execute(
                    "SELECT `TABLE_NAME` FROM information_schema.`TABLES` "
                    "WHERE `TABLE_SCHEMA` = DATABASE()"
                )
                existing = {str(row[0]).lower() for row in cursor.fetchall()}
        except pymysql.MySQLError as e:
            problems.append(_connection_problem(pool_name, url, pool.config.database, e))
            continue
        missing = sorted(
            s.table
            for s in engine.schemas
            if s.options.mysql_pool == pool_name and s.table.lower() not in existing
        )
        if missing:
            problems.append(
                StartupProblem(
                    f"MySQL pool {pool_name!r} ({url}) has no table "
                    f"{', '.join(repr(t) for t in missing)}: batches for them will wait and "
                    "then be dead-lettered; create them with engine.update_schema() (or "
                    "'engine.schema_alters()' to see the SQL) before the workers start"
                )
            )
    return problems


def _connection_problem(
    pool_name: str, url: str, database: str, error: pymysql.MySQLError
) -> StartupProblem:
    code = error.args[0] if error.args and isinstance(error.args[0], int) else None
    if code == _UNKNOWN_DATABASE:
        return StartupProblem(
            f"MySQL pool {pool_name!r} ({url}): database {database!r} does not exist, so no "
            f"batch can be applied; create it (CREATE DATABASE `{database}`) and its tables "
            "(engine.update_schema()), or fix the URL in registry.register_mysql(...)",
            fatal=True,
        )
    if code in _ACCESS_DENIED:
        return StartupProblem(
            f"MySQL pool {pool_name!r} ({url}) refuses the login ({error.args[-1]}), so no "
            "batch can be applied; fix the user or password in registry.register_mysql(...) "
            "or grant that user access",
            fatal=True,
        )
    return StartupProblem(
        f"MySQL pool {pool_name!r} ({url}) does not answer ({type(error).__name__}: {error}); "
        "batches wait and are retried until it does: start it, or fix the URL in "
        "registry.register_mysql(...)"
    )
