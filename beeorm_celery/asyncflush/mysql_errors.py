"""MySQL / MariaDB error codes sorted into temporary, permanent and unknown.

Temporary: trying the same batch again later can succeed (a lock, the server, an operator).
Permanent: the same statements will fail again whatever happens (the data or schema is wrong).
Schema lag: the table or a column is missing in MySQL (update_schema() has not run yet): waits
like a temporary error up to a configured age, then dead-lettered replayably (law 13).
Unknown: neither list; retried like a temporary error until a configured age, then dead-lettered.
Packet: the statement was too large for the server's max_allowed_packet; it is split (law 14).
BeeORM's docs call 1031 "disk full"; 1031 is ER_ILLEGAL_HA (the engine can't do that), and
disk full is 1021 (ER_DISK_FULL), so 1021 is here and 1031 is left to "unknown".
"""

from __future__ import annotations

from enum import StrEnum

import pymysql
import redis


class ErrorClass(StrEnum):
    TEMPORARY = "temporary"
    PERMANENT = "permanent"
    SCHEMA_LAG = "schema_lag"
    UNKNOWN = "unknown"


TEMPORARY_CODES = frozenset(
    {
        1040,  # ER_CON_COUNT_ERROR: too many connections
        1205,  # ER_LOCK_WAIT_TIMEOUT (rolls back only the statement: we roll back ourselves)
        1213,  # ER_LOCK_DEADLOCK
        1021,  # ER_DISK_FULL
        1114,  # ER_RECORD_FILE_FULL: table full
        1037,  # ER_OUTOFMEMORY
        1038,  # ER_OUT_OF_SORTMEMORY
        1041,  # ER_OUT_OF_RESOURCES
        1053,  # ER_SERVER_SHUTDOWN
        1290,  # ER_OPTION_PREVENTS_STATEMENT: --read-only during a failover
        1836,  # ER_READ_ONLY_MODE
        1792,  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
        1927,  # ER_CONNECTION_KILLED (MariaDB)
        2002,  # CR_CONNECTION_ERROR (socket)
        2003,  # CR_CONN_HOST_ERROR: refused
        2006,  # CR_SERVER_GONE_ERROR
        2013,  # CR_SERVER_LOST (also: lost while committing: the ambiguous COMMIT)
        2055,  # CR_SERVER_LOST_EXTENDED
        4031,  # ER_CLIENT_INTERACTION_TIMEOUT: disconnected by the server
        1045,  # ER_ACCESS_DENIED_ERROR: fixed by an operator, then it goes through
        1044,  # ER_DBACCESS_DENIED_ERROR
        1142,  # ER_TABLEACCESS_DENIED_ERROR
    }
)

PERMANENT_CODES = frozenset(
    {
        1022,  # ER_DUP_KEY
        1062,  # ER_DUP_ENTRY
        1048,  # ER_BAD_NULL_ERROR
        1064,  # ER_PARSE_ERROR
        1051,  # ER_BAD_TABLE_ERROR
        1049,  # ER_BAD_DB_ERROR
        1264,  # ER_WARN_DATA_OUT_OF_RANGE
        1292,  # ER_TRUNCATED_WRONG_VALUE
        1366,  # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
        1406,  # ER_DATA_TOO_LONG
        1451,  # ER_ROW_IS_REFERENCED_2 (foreign key)
        1452,  # ER_NO_REFERENCED_ROW_2 (foreign key)
        1153,  # ER_NET_PACKET_TOO_LARGE (after a large statement: split first, see is_packet_error)
        1301,  # ER_WARN_ALLOWED_PACKET_OVERFLOWED (likewise)
        3140,  # ER_INVALID_JSON_TEXT
        1032,  # ER_KEY_NOT_FOUND; also the applier's "row N of T no longer exists" (row_guard)
    }
)


SCHEMA_LAG_CODES = frozenset(
    {
        1054,  # ER_BAD_FIELD_ERROR: unknown column (the migration is coming)
        1146,  # ER_NO_SUCH_TABLE (likewise)
    }
)

# The server refuses a packet larger than max_allowed_packet with 1153 and closes the
# connection, which the client often sees first, while still sending, as a lost link.
PACKET_CODES = frozenset({1153, 1301})
LINK_LOST_CODES = frozenset({2006, 2013, 2055})
# A lost link right after a statement this large is taken for a size refusal: the statement is
# split and tried again (a split costs little; retrying the same bytes would fail for ever).
PACKET_SUSPECT_BYTES = 1024 * 1024


def is_packet_error(error: BaseException, statement_bytes: int) -> bool:
    """Whether ``error``, raised by a statement of ``statement_bytes``, means "too large"."""
    code = error_code(error)
    if code in PACKET_CODES:
        return True
    if statement_bytes < PACKET_SUSPECT_BYTES:
        return False
    if code in LINK_LOST_CODES:
        return True
    # PyMySQL reports a socket broken while sending as an OperationalError without a code.
    return code is None and isinstance(error, pymysql.err.OperationalError | BrokenPipeError)


def error_code(error: BaseException) -> int | None:
    if isinstance(error, pymysql.MySQLError) and error.args and isinstance(error.args[0], int):
        return error.args[0]
    return None


def error_message(error: BaseException) -> str:
    if isinstance(error, pymysql.MySQLError) and len(error.args) > 1:
        return str(error.args[1])
    return f"{type(error).__name__}: {error}"


def classify(error: BaseException) -> ErrorClass:
    """Which class an error from applying a batch belongs to."""
    if isinstance(error, redis.RedisError | ConnectionError | TimeoutError):
        return ErrorClass.TEMPORARY  # the log or the lock is out of reach: nothing was decided
    code = error_code(error)
    if not code:  # None, or PyMySQL's 0 ("InterfaceError(0, '')": the connection is closed)
        if isinstance(error, pymysql.err.InterfaceError | pymysql.err.OperationalError):
            return ErrorClass.TEMPORARY  # a link broken before the server could answer
        return ErrorClass.UNKNOWN
    if code in TEMPORARY_CODES:
        return ErrorClass.TEMPORARY
    if code in PERMANENT_CODES:
        return ErrorClass.PERMANENT
    if code in SCHEMA_LAG_CODES:
        return ErrorClass.SCHEMA_LAG
    return ErrorClass.UNKNOWN
