"""Redis and MySQL failures turned into errors callers can act on.

Every public call that touches a server (flushes, reads, new ids) lets its ``redis`` and
``pymysql`` exceptions through one of these functions, so the caller sees a ``BeeormError``
that says which server failed, why, and whether anything was written (``written``). The raw
exception stays attached as ``__cause__``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pymysql
import redis
from redis.exceptions import OutOfMemoryError

from beeorm_celery.errors import (
    BeeormError,
    CacheFullError,
    CacheUnavailableError,
    DatabaseUnavailableError,
    MissingTableError,
    QueryError,
)

# Client and server codes meaning "MySQL is not there for us right now".
MYSQL_UNAVAILABLE = frozenset(
    {
        1040,  # too many connections
        1053,  # server shutdown in progress
        1927,  # connection killed (MariaDB)
        2002,  # can't connect through the socket
        2003,  # can't connect to the host (refused)
        2005,  # unknown host
        2006,  # server has gone away
        2013,  # lost connection during the query
        2055,  # lost connection (extended)
        4031,  # disconnected by the server for inactivity
    }
)
_NO_SUCH_TABLE = 1146
_TABLE_NAME = re.compile(r"Table '([^']+)' doesn't exist")

NOTHING_WRITTEN = "nothing was written"
SAFE_TO_REPEAT = "it may have been done in part; it is safe to run it again"


def mysql_code(error: BaseException) -> int | None:
    if isinstance(error, pymysql.MySQLError) and error.args and isinstance(error.args[0], int):
        return error.args[0]
    return None


def _mysql_message(error: pymysql.MySQLError) -> str:
    return str(error.args[1]) if len(error.args) > 1 else str(error)


def missing_table(error: pymysql.MySQLError, pool: str) -> MissingTableError:
    found = _TABLE_NAME.search(_mysql_message(error))
    table = found.group(1) if found else None
    return MissingTableError(
        f"MySQL pool {pool!r} has no table {table or '(unknown)'}: run engine.update_schema() "
        "to create the tables of the registered entities (engine.schema_alters() lists the SQL)",
        table=table,
    )


def mysql_unavailable(
    error: pymysql.MySQLError, pool: str, doing: str, written: bool | None, effect: str
) -> DatabaseUnavailableError:
    code = mysql_code(error)
    return DatabaseUnavailableError(
        f"MySQL pool {pool!r} is unavailable while {doing} ({code}: {_mysql_message(error)}); "
        f"{effect}",
        written=written,
    )


def is_mysql_unavailable(error: BaseException) -> bool:
    if isinstance(error, pymysql.err.InterfaceError):
        return True  # the connection object is closed or broken
    return isinstance(error, pymysql.MySQLError) and mysql_code(error) in MYSQL_UNAVAILABLE


def read_error(
    error: pymysql.MySQLError,
    pool: str,
    doing: str,
    written: bool | None = False,
    effect: str = NOTHING_WRITTEN,
) -> BeeormError:
    """What a failed read raises (``written``/``effect``: what the whole call left behind)."""
    if mysql_code(error) == _NO_SUCH_TABLE:
        return missing_table(error, pool)
    if is_mysql_unavailable(error):
        return mysql_unavailable(error, pool, doing, written, effect)
    return QueryError(
        f"MySQL pool {pool!r} refused a read while {doing} "
        f"({mysql_code(error)}: {_mysql_message(error)})",
        code=mysql_code(error),
    )


def redis_failed_before_sending(error: redis.RedisError) -> bool:
    """True when the command never reached Redis (the connection could not be opened)."""
    text = str(error).lower()
    return isinstance(error, redis.ConnectionError | redis.TimeoutError) and "connecting" in text


def redis_error(
    error: redis.RedisError,
    doing: str,
    written: bool | None,
    effect: str,
    lost: tuple[bool | None, str] | None = None,
) -> CacheUnavailableError:
    """``written``/``effect``: what the call left behind when Redis refused or was unreachable.

    A refusal (out of memory, read-only, loading) means the command did not run, like a
    connection that could not be opened. A link lost after sending may have run it: ``lost``
    gives ``written``/``effect`` for that case (default: the same as a refusal).
    """
    text = str(error).strip()
    if isinstance(error, OutOfMemoryError) or (
        isinstance(error, redis.ResponseError) and "OOM" in text.split(" ", 2)[:2]
    ):
        return CacheFullError(
            f"Redis is out of memory while {doing} ({text}); {effect}. Give Redis more "
            "memory (maxmemory), or let the workers catch up (see async_stats())",
            written=written,
        )
    unsent = redis_failed_before_sending(error) or isinstance(
        error, redis.ResponseError | redis.BusyLoadingError | redis.ReadOnlyError
    )
    if not unsent and lost is not None:
        written, effect = lost
    return CacheUnavailableError(
        f"Redis is unavailable while {doing} ({type(error).__name__}: {text}); {effect}",
        written=written,
    )


@contextmanager
def reading(doing: str, pool: str) -> Iterator[None]:
    """Around a read: Redis and MySQL failures become ``BeeormError`` (nothing written)."""
    try:
        yield
    except redis.RedisError as e:
        raise redis_error(e, doing, False, NOTHING_WRITTEN) from e
    except pymysql.MySQLError as e:
        raise read_error(e, pool, doing) from e


@contextmanager
def changing(doing: str, pool: str, effect: str) -> Iterator[None]:
    """Around an operator's change made of several steps (``clear_cache``, dead-letter
    ``retry``/``remove``/``clear``): a failure may come after some steps ran, so ``written`` is
    None and ``effect`` says what that means (they are all safe to run again, bar ``retry``)."""
    try:
        yield
    except redis.RedisError as e:
        raise redis_error(e, doing, None, effect) from e
    except pymysql.MySQLError as e:
        raise read_error(e, pool, doing, None, effect) from e
