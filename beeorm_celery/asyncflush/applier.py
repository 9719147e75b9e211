"""``Applier``: applies one async group's log to MySQL, in order and exactly once.

One step is one MySQL transaction:

1. lock the group's row in ``_beeorm_async_applied`` (``FOR UPDATE SKIP LOCKED``: if another
   worker holds it, this one steps back; the holder ends with the trigger protocol, see log.py);
2. read the log's epoch and its first entries; skip what the row says is already applied (a
   redelivered task, a replay after an ambiguous COMMIT);
3. run the statements of up to ``max_batches_per_transaction`` batches (consecutive INSERTs into
   one table as one multi-row INSERT), move the row's position to the last batch, COMMIT;
4. only then trim the applied entries from the log.

A temporary MySQL error rolls back (explicitly: a lock wait timeout rolls back only the statement)
and raises ``TemporaryApplyError``; the batch stays at the head and the caller retries later.
Any other error in a multi-batch step makes the following steps apply one batch at a time up to
the end of that step, to find the batch at fault; a permanent error (or an unknown one older than
the configured age) dead-letters that batch, drops its cache keys, and moves the position past it.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

import pymysql
import redis

from beeorm_celery.asyncflush.batch import PAYLOAD_FIELD, SIGNATURE_FIELD, Batch, decode_entry
from beeorm_celery.asyncflush.deadletters import DeadLetter, DeadLetters, dead_letter_cause
from beeorm_celery.asyncflush.log import Entry, GroupLog, after
from beeorm_celery.asyncflush.mysql_errors import ErrorClass, classify, error_code, error_message
from beeorm_celery.cache import invalidate_operation
from beeorm_celery.ddl import APPLIED_TABLE, APPLIED_TABLE_SQL
from beeorm_celery.errors import ConfigError, MalformedBatchError, TemporaryApplyError
from beeorm_celery.operations import Operation
from beeorm_celery.sql import operation_sql, statements

if TYPE_CHECKING:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor

    from beeorm_celery.engine import Engine

logger = logging.getLogger(__name__)

# How often a long drain asks whether another group is waiting for this worker.
_YIELD_CHECK_INTERVAL_S = 0.25

_LOCK_SQL = (
    f"SELECT `epoch`, `last_batch_id` FROM `{APPLIED_TABLE}` "
    "WHERE `async_group` = %s FOR UPDATE SKIP LOCKED"
)
_ADVANCE_SQL = (
    f"UPDATE `{APPLIED_TABLE}` SET `epoch` = %s, `last_batch_id` = %s, "
    "`applied_batches` = `applied_batches` + %s, `applied_operations` = `applied_operations` + %s, "
    "`updated_at` = NOW(6) WHERE `async_group` = %s"
)


class Step(Enum):
    PROGRESS = "progress"  # something was applied, skipped or dead-lettered
    EMPTY = "empty"  # nothing pending
    BUSY = "busy"  # another worker holds the group


@dataclass
class DrainReport:
    group: str
    applied_batches: int = 0
    applied_operations: int = 0
    dead_lettered: int = 0
    busy: bool = False
    more: bool = False  # stopped by the time budget with batches left: trigger again

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Applier:
    def __init__(self, engine: Engine, group: str) -> None:
        pool_name = engine.async_groups.get(group)
        if pool_name is None:
            raise ConfigError(f"async group {group!r} is not registered with this engine")
        self.engine = engine
        self.group = group
        self.settings = engine.async_settings
        self.pool = engine.mysql[pool_name]
        self.log = GroupLog(engine, group)
        self.dead_letters = DeadLetters(engine)
        self._secret = self.settings.secrets
        self._single_until: str | None = None  # isolating a failure: one batch per step until here
        self._tainted: set[tuple[str, int]] = set()  # rows a dead letter touched
        self._caught_up = False  # the last step applied everything the log held

    # --- the loop

    def drain(
        self,
        budget_s: float | None = None,
        linger_s: float | None = None,
        should_yield: Callable[[], bool] | None = None,
    ) -> DrainReport:
        """Apply the group's pending batches until none is left or the budget is spent.

        Ends with the trigger protocol (release the flag, look again) unless another worker
        holds the group (``busy``), or the budget ran out or ``should_yield`` said another group
        is waiting for this worker (``more``: the caller triggers this group again).
        """
        budget = self.settings.drain_budget_s if budget_s is None else budget_s
        linger = self.settings.linger_s if linger_s is None else linger_s
        coalesce = self.settings.coalesce_s
        deadline = time.monotonic() + budget
        next_yield_check = time.monotonic() + _YIELD_CHECK_INTERVAL_S
        report = DrainReport(self.group)
        conn = None
        broken = False
        try:
            conn = self._connect()
            while True:
                outcome = self._step(conn, report)
                if outcome is Step.BUSY:
                    report.busy = True
                    return report
                now = time.monotonic()
                remaining = deadline - now
                if outcome is Step.PROGRESS:
                    if remaining <= 0:
                        report.more = True
                        return report
                    if should_yield is not None and now >= next_yield_check:
                        next_yield_check = now + _YIELD_CHECK_INTERVAL_S
                        if should_yield():
                            report.more = True
                            return report
                    if self._caught_up and coalesce > 0:
                        # Caught up with the producers: let a few more batches gather, so the
                        # next transaction carries many of them instead of one.
                        time.sleep(min(coalesce, remaining))
                    continue
                if (
                    linger > 0
                    and remaining > 0
                    and self.log.wait_for_entries(min(linger, remaining))
                ):
                    if coalesce > 0:
                        time.sleep(min(coalesce, max(0.0, deadline - time.monotonic())))
                    continue
                if self.log.release_trigger_if_idle():
                    return report
                if not self.log.claim_trigger():
                    return report  # a producer set the flag after our look: its task is coming
        except TemporaryApplyError:
            broken = True
            raise
        except (pymysql.MySQLError, redis.RedisError, OSError) as e:
            broken = True
            self._temporary(None, e)
            raise AssertionError("unreachable") from e  # _temporary always raises
        finally:
            if conn is not None:
                self.pool.release(conn, broken=broken)

    def _connect(self) -> Connection[Any]:
        conn = self.pool.acquire()
        try:
            with conn.cursor() as cursor:
                timeout_s = int(self.settings.lock_wait_timeout_s)
                cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {timeout_s}")
        except BaseException:
            self.pool.release(conn, broken=True)
            raise
        return conn

    # --- one transaction

    def _step(self, conn: Connection[Any], report: DrainReport) -> Step:
        cursor = conn.cursor()
        conn.begin()
        locked = self._lock(conn, cursor)
        if locked is None:
            return Step.BUSY
        db_epoch, position = locked
        single = self._single_until is not None
        max_batches = 1 if single else self.settings.max_batches_per_transaction
        log_epoch, entries = self.log.read(max_batches)
        self._caught_up = len(entries) < max_batches
        if log_epoch is None:
            if not entries:
                conn.rollback()
                return Step.EMPTY
            log_epoch = self.log.set_epoch_if_missing(uuid.uuid4().hex)
        if log_epoch != db_epoch:
            if db_epoch:
                logger.warning(
                    "async group %r: its log was recreated (Redis lost it?); applying the new "
                    "log from its first entry",
                    self.group,
                )
            position = "0-0"
        if entries and not after(entries[0][0], position):
            conn.rollback()  # applied before, trim missed (e.g. the worker died after COMMIT)
            self.log.trim_through(position, hold_trigger=True)
            return Step.PROGRESS
        if not entries:
            conn.rollback()
            return Step.EMPTY
        chunk, payloads = self._decode_chunk(conn, cursor, entries, log_epoch, report)
        if not chunk:
            return Step.PROGRESS  # the head was malformed and is dead-lettered
        return self._apply(conn, cursor, chunk, payloads, log_epoch, single, report)

    def _lock(self, conn: Connection[Any], cursor: Cursor) -> tuple[str, str] | None:
        cursor.execute(_LOCK_SQL, (self.group,))
        row = cursor.fetchone()
        if row is not None:
            return str(row[0]), str(row[1])
        conn.rollback()
        # No row: either another worker holds it (SKIP LOCKED) or the group is new.
        try:
            cursor.execute(
                f"SELECT 1 FROM `{APPLIED_TABLE}` WHERE `async_group` = %s", (self.group,)
            )
        except pymysql.err.ProgrammingError as e:
            if error_code(e) != 1146:
                raise
            cursor.execute(APPLIED_TABLE_SQL)
            cursor.execute(
                f"SELECT 1 FROM `{APPLIED_TABLE}` WHERE `async_group` = %s", (self.group,)
            )
        if cursor.fetchone() is not None:
            return None
        cursor.execute(
            f"INSERT IGNORE INTO `{APPLIED_TABLE}` (`async_group`) VALUES (%s)", (self.group,)
        )
        conn.begin()
        cursor.execute(_LOCK_SQL, (self.group,))
        row = cursor.fetchone()
        if row is None:
            conn.rollback()
            return None
        return str(row[0]), str(row[1])

    def _decode_chunk(
        self,
        conn: Connection[Any],
        cursor: Cursor,
        entries: list[Entry],
        epoch: str,
        report: DrainReport,
    ) -> tuple[list[Batch], dict[str, bytes]]:
        chunk: list[Batch] = []
        payloads: dict[str, bytes] = {}
        operations = 0
        for entry_id, fields in entries:
            try:
                batch = decode_entry(self.engine, self.group, entry_id, fields, self._secret)
            except MalformedBatchError as e:
                if chunk:
                    break  # apply what came before; the bad entry becomes the head next step
                self._dead_letter_malformed(conn, cursor, entry_id, fields, e, epoch, report)
                return [], {}
            if (
                chunk
                and operations + len(batch.operations)
                > self.settings.max_operations_per_transaction
            ):
                break
            chunk.append(batch)
            payloads[entry_id] = fields.get(PAYLOAD_FIELD, b"")
            operations += len(batch.operations)
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
    ) -> Step:
        ops = [op for batch in chunk for op in batch.operations]
        planned = [(operation_sql(op), [op]) for op in ops] if single else statements(ops)
        last_id = str(chunk[-1].id)
        statement = ""
        try:
            for statement, _ in planned:
                cursor.execute(statement)
            cursor.execute(_ADVANCE_SQL, (epoch, last_id, len(chunk), len(ops), self.group))
            conn.commit()
        except pymysql.MySQLError as e:
            _rollback(conn)
            return self._failed(conn, cursor, chunk, payloads, statement, e, epoch, report)
        self.log.trim_through(last_id, hold_trigger=True, clear_failure=True)
        if self._single_until is not None and not after(self._single_until, last_id):
            self._single_until = None
        self._after_commit(chunk)
        report.applied_batches += len(chunk)
        report.applied_operations += len(ops)
        return Step.PROGRESS

    def _after_commit(self, chunk: list[Batch]) -> None:
        # A replayed dead letter, or a row a dead letter touched, may be cached in a state MySQL
        # never had: drop those keys now that MySQL holds the truth.
        stale = [
            op
            for batch in chunk
            for op in batch.operations
            if batch.replay_of or (op.table, op.id) in self._tainted
        ]
        if stale:
            self._invalidate(stale)

    # --- failures

    def _failed(
        self,
        conn: Connection[Any],
        cursor: Cursor,
        chunk: list[Batch],
        payloads: dict[str, bytes],
        statement: str,
        error: pymysql.MySQLError,
        epoch: str,
        report: DrainReport,
    ) -> Step:
        error_class = classify(error)
        head = chunk[0]
        if error_class is ErrorClass.TEMPORARY:
            self._temporary(head.id, error)
        if self._single_until is None:
            # Find the batch at fault, one batch and one statement per operation at a time, so
            # the dead letter names the exact statement MySQL refused.
            self._single_until = str(chunk[-1].id)
            return Step.PROGRESS
        failure = self.log.record_failure(str(head.id), error_code(error), error_message(error))
        if error_class is ErrorClass.UNKNOWN:
            age = failure.last_failed_at - failure.first_failed_at
            if age < self.settings.unknown_error_dead_letter_after_s:
                self._temporary(head.id, error, record=False)
        dead = DeadLetter(
            id=f"{self.group}/{head.id}",
            group=self.group,
            batch_id=str(head.id),
            sql=[operation_sql(op) for op in head.operations],
            error_code=error_code(error),
            error=error_message(error),
            failed_at=datetime.fromtimestamp(failure.last_failed_at, UTC),
            first_failed_at=datetime.fromtimestamp(failure.first_failed_at, UTC),
            attempts=failure.attempts,
            failing_statement=statement or None,
            replay_of=head.replay_of,
            payload=payloads.get(str(head.id), b""),
        )
        logger.error(
            "async group %r: batch %s dead-lettered after %d attempt(s): %s %s",
            self.group,
            head.id,
            failure.attempts,
            dead.error_code,
            dead.error,
        )
        self.dead_letters.store(dead)
        self._invalidate(head.operations)
        return self._move_past(conn, cursor, str(head.id), epoch, report)

    def _dead_letter_malformed(
        self,
        conn: Connection[Any],
        cursor: Cursor,
        entry_id: str,
        fields: dict[bytes, bytes],
        error: MalformedBatchError,
        epoch: str,
        report: DrainReport,
    ) -> None:
        conn.rollback()
        now = datetime.now(UTC)
        raw = fields.get(PAYLOAD_FIELD, b"")
        logger.error(
            "async group %r: malformed batch %s dead-lettered: %s", self.group, entry_id, error
        )
        self.dead_letters.store(
            DeadLetter(
                id=f"{self.group}/{entry_id}",
                group=self.group,
                batch_id=entry_id,
                sql=[],
                error_code=None,
                error=f"malformed batch: {error}",
                failed_at=now,
                first_failed_at=now,
                attempts=1,
                malformed=not error.replayable,
                payload=raw if isinstance(raw, bytes) else b"",
                cause=dead_letter_cause(error),
                signature=fields.get(SIGNATURE_FIELD),
            )
        )
        self._move_past(conn, cursor, entry_id, epoch, report)

    def _move_past(
        self, conn: Connection[Any], cursor: Cursor, batch_id: str, epoch: str, report: DrainReport
    ) -> Step:
        conn.begin()
        locked = self._lock(conn, cursor)
        if locked is None:
            return Step.BUSY  # the dead letter is stored; whoever holds the group moves on
        db_epoch, position = locked
        if db_epoch == epoch and not after(batch_id, position):
            conn.rollback()
        else:
            cursor.execute(_ADVANCE_SQL, (epoch, batch_id, 0, 0, self.group))
            conn.commit()
        self.log.trim_through(batch_id, hold_trigger=True)
        self.log.clear_failure()
        if self._single_until is not None and not after(self._single_until, batch_id):
            self._single_until = None
        report.dead_lettered += 1
        return Step.PROGRESS

    def _temporary(self, batch_id: str | None, error: BaseException, record: bool = True) -> None:
        """Remember the failure, keep the group's flag (the retry is the waiting task), raise."""
        code, message = error_code(error), error_message(error)
        try:
            if record:
                head = batch_id or self._head_id()
                if head is not None:
                    self.log.record_failure(head, code, message)
            hold = self.settings.trigger_ttl_s + self.settings.retry_backoff_max_s
            self.log.hold_trigger(hold)
            self.log.count_retry()
        except redis.RedisError:
            logger.warning(
                "async group %r: Redis unreachable while recording a failure", self.group
            )
        raise TemporaryApplyError(
            f"async group {self.group!r}: temporary error ({code}: {message}); "
            "the head batch stays queued and is retried",
            code=code,
            group=self.group,
        ) from error

    def _head_id(self) -> str | None:
        _, entries = self.log.read(1)
        return entries[0][0] if entries else None

    def _invalidate(self, ops: list[Operation]) -> None:
        by_pool: dict[str, list[Operation]] = {}
        for op in ops:
            self._tainted.add((op.table, op.id))
            if op.schema.options.redis_cache is not None:
                by_pool.setdefault(op.schema.options.redis_cache, []).append(op)
        for pool, pool_ops in by_pool.items():
            pipe = self.engine.redis(pool).pipeline(transaction=False)
            for op in pool_ops:
                invalidate_operation(pipe, self.engine.keys, op)
            pipe.execute()
        message = self.engine.invalidation_message(ops)
        if message is not None:
            self.engine.redis(self.engine.invalidation_pool).publish(
                self.engine.keys.invalidation_channel, message
            )
        for op in ops:
            local = self.engine.local_cache(op.schema)
            if local is not None:
                local.drop([op.id])


def _rollback(conn: Connection[Any]) -> None:
    # If the connection is gone, the server rolls back on its own.
    with contextlib.suppress(pymysql.MySQLError):
        conn.rollback()
