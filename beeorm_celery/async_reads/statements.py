"""How a SELECT gets a server-side time limit, and how MySQL's errors become ours."""

from __future__ import annotations

import math
import re

import pymysql

from beeorm_celery.errors import QueryError, QueryTimeoutError, QueryUnavailableError
from beeorm_celery.failures import is_mysql_unavailable

ER_QUERY_INTERRUPTED = 1317  # KILL QUERY (ours: cancel or the timeout backstop; or someone's)
ER_STATEMENT_TIMEOUT = 1969  # MariaDB: max_statement_time exceeded
ER_QUERY_TIMEOUT = 3024  # MySQL: MAX_EXECUTION_TIME exceeded
TIMEOUT_CODES = frozenset({ER_STATEMENT_TIMEOUT, ER_QUERY_TIMEOUT})

# Client-side codes after which the connection cannot be trusted (lost, gone, broken packet).
BROKEN_CONNECTION_CODES = frozenset({2006, 2013, 2014, 2045, 2055})

# The smallest limit the servers take: 0 means "no limit" to both of them.
_MIN_MARIADB_S = 0.000_001
_MIN_MYSQL_MS = 1

_LEADING_SELECT = re.compile(r"\s*SELECT\b", re.IGNORECASE)


def with_time_limit(sql: str, seconds: float, mariadb: bool) -> tuple[str, bool]:
    """``(statement, enforced)``: ``sql`` limited to ``seconds`` by the server where it can be.

    MariaDB's ``SET STATEMENT ... FOR`` wraps any statement. MySQL's hint only counts right after
    a statement's first ``SELECT``; for other shapes (``WITH ...``, ``(SELECT ...) UNION ...``)
    ``enforced`` is False and the runner's watchdog kills the query at the deadline instead.
    """
    if mariadb:
        limit = max(seconds, _MIN_MARIADB_S)
        return f"SET STATEMENT max_statement_time={limit:.6f} FOR {sql}", True
    match = _LEADING_SELECT.match(sql)
    if match is None:
        return sql, False
    ms = max(_MIN_MYSQL_MS, math.ceil(seconds * 1000))
    head = match.end()
    return f"{sql[:head]} /*+ MAX_EXECUTION_TIME({ms}) */{sql[head:]}", True


def error_code(error: BaseException) -> int | None:
    if isinstance(error, pymysql.MySQLError) and error.args and isinstance(error.args[0], int):
        return error.args[0]
    return None


def is_broken_connection(error: BaseException) -> bool:
    if isinstance(error, pymysql.err.InterfaceError):
        return True
    return error_code(error) in BROKEN_CONNECTION_CODES


def query_error(error: BaseException, pool: str, sql: str, timeout_s: float | None) -> QueryError:
    """Our error for a MySQL one, chained to it (``__cause__``)."""
    code = error_code(error)
    message = str(error.args[1]) if code is not None and len(error.args) > 1 else str(error)
    result: QueryError
    if code in TIMEOUT_CODES:
        result = QueryTimeoutError(
            f"query on MySQL pool {pool!r} ran past its timeout of {timeout_s}s and was stopped "
            f"by the server ({code}: {message}): {_short(sql)}",
            code,
        )
    elif is_broken_connection(error) or is_mysql_unavailable(error):
        result = QueryUnavailableError(
            f"MySQL pool {pool!r} is unavailable ({code}: {message}); the query did not run "
            f"to the end and wrote nothing, it can be repeated: {_short(sql)}",
            code,
        )
    else:
        result = QueryError(
            f"query on MySQL pool {pool!r} failed ({code}: {message}): {_short(sql)}", code
        )
    result.__cause__ = error
    return result


def killed_by_timeout(
    pool: str, sql: str, timeout_s: float | None, how: str = "was killed"
) -> QueryTimeoutError:
    return QueryTimeoutError(
        f"query on MySQL pool {pool!r} ran past its timeout of {timeout_s}s and {how}: "
        f"{_short(sql)}",
        ER_QUERY_INTERRUPTED,
    )


def _short(sql: str, limit: int = 300) -> str:
    return sql if len(sql) <= limit else sql[:limit] + "..."
