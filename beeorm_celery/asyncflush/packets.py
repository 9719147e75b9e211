"""Statements the server takes whatever the backlog (law 14): byte caps and size refusals.

A backlog after an outage can hold any number of rows of any size, and consecutive INSERTs are
merged into one statement. The drain keeps each statement under the server's
``max_allowed_packet`` (read once per pool) and ``max_statement_bytes``. If the server still
refuses one for its size (the value changed, a proxy in between), the pool reads the limit again
and keeps later statements under half the refused size: the step is retried split, not retried
as it was for ever. A single row larger than the server takes cannot be split: it is a permanent
error (1153) whose message names ``max_allowed_packet``, so its batch becomes a dead letter the
operator replays after raising the limit.
"""

from __future__ import annotations

import contextlib
from enum import Enum
from typing import TYPE_CHECKING, Any

import pymysql

from beeorm_celery.asyncflush.mysql_errors import PACKET_CODES, error_code, is_packet_error
from beeorm_celery.sql import text_bytes

if TYPE_CHECKING:
    from pymysql.connections import Connection

    from beeorm_celery.mysql import MySQLPool
    from beeorm_celery.operations import Operation

PACKET_TOO_LARGE = 1153  # ER_NET_PACKET_TOO_LARGE
_PACKET_MARGIN = 1024  # the command byte, the header, slack: as MySQLPool.statement_limit


class StatementLimits:
    """The byte limits of one pool's statements, for one drain."""

    def __init__(self, pool: MySQLPool, max_statement_bytes: int) -> None:
        self.pool = pool
        self.max_statement_bytes = max_statement_bytes

    def merge_limit(self, conn: Connection[Any]) -> int:
        """How large a merged INSERT may grow (reads max_allowed_packet on ``conn`` once)."""
        return min(self.max_statement_bytes, self.pool.statement_limit(conn))

    def too_large(self, statement: str, carried: list[Operation]) -> pymysql.MySQLError | None:
        """The permanent error for a one-row statement the server cannot take (None: it can)."""
        packet = self.pool.known_max_allowed_packet
        if packet is None or len(carried) != 1 or len(statement) <= packet // 4 - _PACKET_MARGIN:
            return None  # even four bytes per character would fit
        size = text_bytes(statement)
        if size <= packet - _PACKET_MARGIN:
            return None
        return too_large_error(size, packet, carried[0])

    def refused(
        self, error: pymysql.MySQLError, statement: str, carried: list[Operation]
    ) -> Refusal:
        """What a failed statement means for its size (the server closes the connection on a
        packet it will not take: after SPLIT or TOO_LARGE, reconnect before going on)."""
        size = text_bytes(statement)
        if not carried or not is_packet_error(error, size):
            return Refusal.NONE
        self.pool.statement_refused(size)
        if len(carried) > 1:
            return Refusal.SPLIT
        if error_code(error) in PACKET_CODES:
            return Refusal.TOO_LARGE
        # A lost link after one large row: maybe the size, maybe the server. Retried; the next
        # attempt reads max_allowed_packet again and refuses the row before sending it if so.
        return Refusal.LINK_LOST

    def too_large_now(
        self, conn: Connection[Any], statement: str, carried: list[Operation]
    ) -> pymysql.MySQLError:
        """The permanent error for a one-row statement the server refused, naming the limit
        read again on ``conn`` (reconnected)."""
        with contextlib.suppress(pymysql.MySQLError):
            self.pool.statement_limit(conn)
        packet = self.pool.known_max_allowed_packet
        return too_large_error(text_bytes(statement), packet, carried[0])


class Refusal(Enum):
    NONE = "none"  # not about the size
    SPLIT = "split"  # several rows: the pool cuts smaller now; try the step again
    TOO_LARGE = "too_large"  # one row the server will never take: permanent
    LINK_LOST = "link_lost"  # one large row and a lost link: temporary, looked at again


def too_large_error(size: int, packet: int | None, op: Operation) -> pymysql.MySQLError:
    limit = f"{packet} bytes" if packet is not None else "refused by the server"
    return pymysql.err.OperationalError(
        PACKET_TOO_LARGE,
        f"{op.describe()}: its statement of {size} bytes is larger than the server's "
        f"max_allowed_packet ({limit}); raise max_allowed_packet on the server, then replay "
        "this dead letter",
    )
