"""One drain step: one MySQL transaction that applies the head of a group's log.

1. lock the group's row in the position table (``FOR UPDATE SKIP LOCKED``: if another worker
   holds it, this one steps back; the holder ends with the trigger protocol, see log.py);
2. read the log's epoch and its first entries; skip what the row says is already applied (a
   redelivered task, a replay after an ambiguous COMMIT);
3. run the statements of up to ``max_batches_per_transaction`` batches (consecutive INSERTs into
   one table as one multi-row INSERT), move the row's position to the last batch, COMMIT;
4. only then trim the applied entries from the log.

A failed COMMIT is handed to ``Isolation``; dropped cache keys to ``Invalidation``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pymysql

from beeorm_celery.asyncflush import future_ids, log_loss, position
from beeorm_celery.asyncflush.batch import PAYLOAD_FIELD, Batch, SchemaLookup, decode_entry
from beeorm_celery.asyncflush.gc_pause import collector_paused
from beeorm_celery.asyncflush.log import Entry, GroupLog, after
from beeorm_celery.asyncflush.mysql_errors import error_message
from beeorm_celery.asyncflush.packed import PacketRun
from beeorm_celery.asyncflush.packets import Refusal, StatementLimits
from beeorm_celery.asyncflush.report import DrainReport, Outcome
from beeorm_celery.errors import MalformedBatchError
from beeorm_celery.mysql import accepts_packets
from beeorm_celery.operations import Operation
from beeorm_celery.sql import operation_sql, statements

if TYPE_CHECKING:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor

    from beeorm_celery.asyncflush.invalidate import Invalidation
    from beeorm_celery.asyncflush.isolate import Isolation
    from beeorm_celery.asyncflush.log_loss import PendingMemory
    from beeorm_celery.asyncflush.settings import AsyncFlushSettings

logger = logging.getLogger(__name__)


class TransactionStep:
    def __init__(
        self,
        group: str,
        schemas: SchemaLookup,
        settings: AsyncFlushSettings,
        log: GroupLog,
        isolation: Isolation,
        invalidation: Invalidation,
        pending_memory: PendingMemory,
        limits: StatementLimits,
        reconnect: Callable[[Connection[Any], BaseException], None],
    ) -> None:
        self.group = group
        self.limits = limits  # statement byte caps (packets.py)
        self.reconnect = reconnect  # after a size refusal the server has closed the connection
        self.pending_memory = pending_memory  # what this process saw pending, per group
        self.schemas = schemas
        self.settings = settings
        self.log = log
        self.isolation = isolation
        self.invalidation = invalidation
        self._secret = settings.secrets
        self.caught_up = False  # the last step applied everything the log held

    @collector_paused()  # its rows hold no cycles: no collections of the heap for them
    def run(self, conn: Connection[Any], report: DrainReport) -> Outcome:
        cursor = conn.cursor()
        conn.begin()
        locked = position.lock(conn, cursor, self.group)
        if locked is None:
            return Outcome.BUSY
        db_epoch, at = locked
        single = self.isolation.single
        max_batches = 1 if single else self.settings.max_batches_per_transaction
        log_epoch, entries = self.log.read(max_batches)
        self.caught_up = len(entries) < max_batches
        if log_epoch is None:
            if not entries and not db_epoch:
                conn.rollback()
                return Outcome.EMPTY
            # No epoch where MySQL knows one: the log was lost, even if nothing came since.
            log_epoch = self.log.set_epoch_if_missing(uuid.uuid4().hex)
        if log_epoch != db_epoch:
            if db_epoch:
                remembered = self.pending_memory.get(self.group)
                log_loss.record_loss(cursor, self.group, log_epoch, at, remembered)
                conn.commit()
                return Outcome.PROGRESS
            at = "0-0"
        self.pending_memory.saw(self.group, self.log.last_length)
        if entries and not after(entries[0][0], at):
            conn.rollback()  # applied before, trim missed (e.g. the worker died after COMMIT)
            self.log.trim_through(at, hold_trigger=True)
            return Outcome.PROGRESS
        if not entries:
            conn.rollback()
            return Outcome.EMPTY
        chunk, payloads = self._decode_chunk(conn, cursor, entries, log_epoch, at, report)
        if not chunk:
            return Outcome.PROGRESS  # the head was malformed and is dead-lettered
        return self._apply(conn, cursor, chunk, payloads, log_epoch, single, report)

    def _decode_chunk(
        self,
        conn: Connection[Any],
        cursor: Cursor,
        entries: list[Entry],
        epoch: str,
        at: str,
        report: DrainReport,
    ) -> tuple[list[Batch], dict[str, bytes]]:
        chunk: list[Batch] = []
        payloads: dict[str, bytes] = {}
        operations = 0
        size = 0
        previous = at
        now_ms = time.time() * 1000
        for entry_id, fields in entries:
            try:
                if future_ids.jumped_ahead(entry_id, previous, now_ms):
                    raise MalformedBatchError(future_ids.reason(entry_id))
                previous = entry_id
                batch = decode_entry(self.schemas, self.group, entry_id, fields, self._secret)
            except MalformedBatchError as e:
                if chunk:
                    break  # apply what came before; the bad entry becomes the head next step
                self.isolation.malformed(conn, cursor, entry_id, fields, e, epoch, report)
                return [], {}
            payload = fields.get(PAYLOAD_FIELD, b"")
            if chunk and (
                operations + len(batch.operations) > self.settings.max_operations_per_transaction
                or size + len(payload) > self.settings.max_transaction_bytes
            ):
                break
            chunk.append(batch)
            payloads[entry_id] = payload
            operations += len(batch.operations)
            size += len(payload)
        return chunk, payloads

    def _apply(
        self,
        conn: Connection[Any],
        cursor: Cursor,
        chunk: list[Batch],
        payloads: dict[str, bytes],
        epoch: str,
        single: bool,
        report: DrainReport,
    ) -> Outcome:
        ops = [op for batch in chunk for op in batch.operations]
        limit = self.limits.merge_limit(conn)
        planned = [(operation_sql(op), [op]) for op in ops] if single else statements(ops, limit)
        last_id = str(chunk[-1].id)
        statement = ""
        carried: list[Operation] = []
        try:
            for statement, carried in planned:
                too_large = self.limits.too_large(statement, carried)
                if too_large is not None:
                    raise too_large
            run = PacketRun()
            try:
                run.run_all(cursor, planned, limit, packed=not single and accepts_packets(conn))
            finally:
                statement, carried = run.statement, run.carried
            carried = []
            pending = max(0, self.log.last_length - len(chunk))
            position.advance(cursor, self.group, epoch, last_id, len(chunk), len(ops), pending)
            conn.commit()
        except pymysql.MySQLError as e:
            _rollback(conn)
            error: pymysql.MySQLError = e
            refusal = self.limits.refused(e, statement, carried)
            if refusal in (Refusal.SPLIT, Refusal.TOO_LARGE):
                self.reconnect(conn, e)  # the server drops a connection that sent too much
                if refusal is Refusal.SPLIT:
                    logger.warning(
                        "async group %r: a statement of %d rows was too large for the server "
                        "(%s); splitting it",
                        self.group,
                        len(carried),
                        error_message(e),
                    )
                    return Outcome.PROGRESS  # the same step again, in smaller statements
                error = self.limits.too_large_now(conn, statement, carried)
            return self.isolation.failed(
                conn, cursor, chunk, payloads, statement, error, epoch, report
            )
        self.log.trim_through(last_id, hold_trigger=True, clear_failure=True)
        self.isolation.passed(last_id)
        self.invalidation.committed(chunk, last_id)
        report.applied_batches += len(chunk)
        report.applied_operations += len(ops)
        return Outcome.PROGRESS


def _rollback(conn: Connection[Any]) -> None:
    # If the connection is gone, the server rolls back on its own.
    with contextlib.suppress(pymysql.MySQLError):
        conn.rollback()
