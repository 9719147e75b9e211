"""A step's statements in few round trips: multi-statement packets.

A batch of edits is one UPDATE per row, and a joint step over many groups is an INSERT per
table: sent one by one, each costs a round trip to MySQL, which on a busy machine costs more
than the statement. The applier's connections accept several statements in one packet
(``CLIENT_MULTI_STATEMENTS``, only on the connections the applier takes from the pool), so the
step sends consecutive statements joined by ``;``, each packet under the same byte limit as one
statement (law 14), and reads the results in order: the matched rows of every UPDATE and DELETE
are still checked one by one (``row_guard``).

The server stops at the first statement that fails; the statements before it ran inside the
step's transaction, which the caller rolls back. ``PacketRun.statement`` / ``carried`` then
name the statement to blame, as a step sending one statement at a time would: the one that
failed, or the whole packet for an error about its size or the link (the pool cuts smaller
packets then, as it does statements).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pymysql

from beeorm_celery.asyncflush.mysql_errors import is_packet_error
from beeorm_celery.asyncflush.row_guard import check_matched
from beeorm_celery.sql import text_bytes

if TYPE_CHECKING:
    from pymysql.cursors import Cursor

    from beeorm_celery.operations import Operation

Statement = tuple[str, list["Operation"]]  # the SQL and the operations it carries

_SEPARATOR = ";"


@dataclass(frozen=True)
class Packet:
    """Statements sent together: their text joined, and each with its operations."""

    text: str
    parts: list[Statement]

    @property
    def carried(self) -> list[Operation]:
        return [op for _, ops in self.parts for op in ops]


def packets(planned: Sequence[Statement], max_bytes: int) -> list[Packet]:
    """``planned`` in order, consecutive statements joined while a packet stays within
    ``max_bytes``; a statement that alone is larger goes alone (its caller refuses it)."""
    out: list[Packet] = []
    parts: list[Statement] = []
    size = 0
    for statement in planned:
        length = text_bytes(statement[0])
        if parts and size + len(_SEPARATOR) + length > max_bytes:
            out.append(_packet(parts))
            parts, size = [], 0
        size += length + (len(_SEPARATOR) if parts else 0)
        parts.append(statement)
    if parts:
        out.append(_packet(parts))
    return out


def _packet(parts: list[Statement]) -> Packet:
    text = parts[0][0] if len(parts) == 1 else _SEPARATOR.join(sql for sql, _ in parts)
    return Packet(text, parts)


class PacketRun:
    """Runs a step's statements on one cursor; after a failure, ``statement`` and ``carried``
    name what to blame (see the module's docstring)."""

    def __init__(self) -> None:
        self._blame: Packet | Statement | None = None

    @property
    def statement(self) -> str:
        blame = self._blame
        if blame is None:
            return ""
        return blame.text if isinstance(blame, Packet) else blame[0]

    @property
    def carried(self) -> list[Operation]:
        # a packet's operations are listed only when asked, after a failure: not per step
        blame = self._blame
        if blame is None:
            return []
        return blame.carried if isinstance(blame, Packet) else blame[1]

    def run_all(
        self, cursor: Cursor, planned: Sequence[Statement], max_bytes: int, packed: bool
    ) -> None:
        """``planned`` in order: in packets when ``packed``, else one statement per round trip
        (isolation, or a connection that takes no packets: the very statement MySQL refused is
        named, and the last one stays named after a success, as it always did)."""
        if packed:
            for packet in packets(planned, max_bytes):
                self.run(cursor, packet)
            return
        for statement in planned:
            self._blame = statement
            check_matched(statement[1], cursor.execute(statement[0]))

    def run(self, cursor: Cursor, packet: Packet) -> None:
        """Send ``packet`` and check every statement's result; raises the first error (an
        UPDATE / DELETE that matched no row included), with the results after it discarded."""
        self._blame = packet
        try:
            matched = cursor.execute(packet.text)
        except pymysql.MySQLError as e:
            if not is_packet_error(e, text_bytes(packet.text)):
                self._blame = packet.parts[0]
            raise
        try:
            for n, part in enumerate(packet.parts):
                self._blame = part
                if n:
                    cursor.nextset()  # raises the error of this statement, if it failed
                    matched = cursor.rowcount
                check_matched(part[1], matched)
        except pymysql.MySQLError:
            _discard_results(cursor)
            raise
        self._blame = None


def _discard_results(cursor: Cursor) -> None:
    """Read what the server still sends for the packet, so the ROLLBACK that follows is sent.

    PyMySQL reads pending results before its next command and would raise a later
    statement's error from inside ``rollback()`` instead of rolling back; the server stops at
    the first failed statement, so nothing follows an error read here."""
    while True:
        try:
            if not cursor.nextset():
                return
        except pymysql.MySQLError:
            return
