"""Failure isolation: what a drain does when a step fails.

A temporary MySQL error keeps the batch at the head and raises ``TemporaryApplyError`` (the
caller retries later). Any other error in a multi-batch step makes the following steps apply one
batch, one statement per operation, at a time up to the end of that step, to find the batch at
fault and the statement MySQL refused; a permanent error (or an unknown one older than
``unknown_error_dead_letter_after_s``) dead-letters that batch, drops its cache keys, and moves
the group's position past it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pymysql
import redis

from beeorm_celery.asyncflush import position
from beeorm_celery.asyncflush.batch import PAYLOAD_FIELD, SIGNATURE_FIELD, Batch
from beeorm_celery.asyncflush.deadletters import (
    DeadLetter,
    DeadLetters,
    cause_of,
    dead_letter_cause,
)
from beeorm_celery.asyncflush.holding import ExpiredCauses, Hold, hold_for, wait_or_give_up
from beeorm_celery.asyncflush.log import GroupLog, after
from beeorm_celery.asyncflush.mysql_errors import ErrorClass, classify, error_code, error_message
from beeorm_celery.asyncflush.report import DrainReport, Outcome
from beeorm_celery.errors import MalformedBatchError, TemporaryApplyError
from beeorm_celery.sql import operation_sql

if TYPE_CHECKING:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor

    from beeorm_celery.asyncflush.invalidate import Invalidation
    from beeorm_celery.asyncflush.log import HeadFailure
    from beeorm_celery.asyncflush.settings import AsyncFlushSettings

logger = logging.getLogger(__name__)


class Isolation:
    def __init__(
        self,
        group: str,
        settings: AsyncFlushSettings,
        log: GroupLog,
        dead_letters: DeadLetters,
        invalidation: Invalidation,
        expired: ExpiredCauses,
    ) -> None:
        self.group = group
        self._expired = expired  # causes that waited out their limit (holding.py)
        self.settings = settings
        self.log = log
        self.dead_letters = dead_letters
        self.invalidation = invalidation
        self._single_until: str | None = None  # isolating a failure: one batch per step until here

    @property
    def single(self) -> bool:
        """Whether steps apply one batch at a time (looking for the batch at fault)."""
        return self._single_until is not None

    def passed(self, batch_id: str) -> None:
        """The group's position moved to ``batch_id``: isolation ends once past its range."""
        if self._single_until is not None and not after(self._single_until, batch_id):
            self._single_until = None

    def failed(
        self,
        conn: Connection[Any],
        cursor: Cursor,
        chunk: list[Batch],
        payloads: dict[str, bytes],
        statement: str,
        error: pymysql.MySQLError,
        epoch: str,
        report: DrainReport,
    ) -> Outcome:
        error_class = classify(error)
        head = chunk[0]
        if error_class is ErrorClass.TEMPORARY:
            self.temporary(head.id, error)
        if self._single_until is None:
            # Find the batch at fault, one batch and one statement per operation at a time, so
            # the dead letter names the exact statement MySQL refused.
            self._single_until = str(chunk[-1].id)
            return Outcome.PROGRESS
        hold = hold_for(error)
        if hold is not None:  # schema lag (1054, 1146): the migration is coming, wait for it
            failure = self._wait_or_give_up(str(head.id), hold, error)
        else:
            failure = self.log.record_failure(str(head.id), error_code(error), error_message(error))
        if error_class is ErrorClass.UNKNOWN:
            age = failure.last_failed_at - failure.first_failed_at
            if age < self.settings.unknown_error_dead_letter_after_s:
                self.temporary(head.id, error, record=False)
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
            cause=cause_of(error),
        )

        def stored() -> None:
            logger.error(
                "async group %r: batch %s dead-lettered after %d attempt(s): %s %s",
                self.group,
                head.id,
                failure.attempts,
                dead.error_code,
                dead.error,
            )
            self.invalidation.dead_lettered(head.operations, str(head.id))

        return self._move_past(conn, cursor, dead, epoch, report, stored)

    def malformed(
        self,
        conn: Connection[Any],
        cursor: Cursor,
        entry_id: str,
        fields: dict[bytes, bytes],
        error: MalformedBatchError,
        epoch: str,
        report: DrainReport,
    ) -> None:
        """Dead-letter the head entry this worker cannot decode and move past it (replayable
        when the cause is one an operator fixes: schema lag, signature, a refused value)."""
        conn.rollback()
        now = datetime.now(UTC)
        first, attempts = now, 1
        hold = hold_for(error)
        if hold is not None:  # schema lag, a signature: the fix comes from outside, wait for it
            failure = self._wait_or_give_up(entry_id, hold, error)
            first = datetime.fromtimestamp(failure.first_failed_at, UTC)
            attempts = failure.attempts
        raw = fields.get(PAYLOAD_FIELD, b"")
        dead = DeadLetter(
            id=f"{self.group}/{entry_id}",
            group=self.group,
            batch_id=entry_id,
            sql=[],
            error_code=None,
            error=f"malformed batch: {error}" if hold is None else str(error),
            failed_at=now,
            first_failed_at=first,
            attempts=attempts,
            malformed=not error.replayable,
            payload=raw if isinstance(raw, bytes) else b"",
            cause=dead_letter_cause(error),
            signature=fields.get(SIGNATURE_FIELD),
        )

        def stored() -> None:
            logger.error(
                "async group %r: malformed batch %s dead-lettered: %s", self.group, entry_id, error
            )

        self._move_past(conn, cursor, dead, epoch, report, stored)

    def _wait_or_give_up(self, batch_id: str, hold: Hold, error: BaseException) -> HeadFailure:
        """Raises ``TemporaryApplyError`` while the head batch keeps waiting for its fix."""
        return wait_or_give_up(
            self.group,
            batch_id,
            hold,
            error,
            self.settings,
            self.log,
            self._expired,
            lambda: self.temporary(batch_id, error, record=False),
        )

    def _move_past(
        self,
        conn: Connection[Any],
        cursor: Cursor,
        dead: DeadLetter,
        epoch: str,
        report: DrainReport,
        stored: Callable[[], None],
    ) -> Outcome:
        """Store ``dead`` and move the group's position past its batch, as one step for every
        other worker: the dead letter is stored while this worker holds the group's row lock,
        and the position moves in the same transaction. A dead letter is never visible (and
        replayable) while another worker could still apply its batch: a replay could otherwise
        run next to the original (a duplicate key), or the original's failure be stored again
        after the replay took the dead letter away."""
        batch_id = dead.batch_id
        conn.begin()
        locked = position.lock(conn, cursor, self.group)
        if locked is None:
            return Outcome.BUSY  # whoever holds the group meets the batch and dead-letters it
        db_epoch, at = locked
        if db_epoch == epoch and not after(batch_id, at):
            conn.rollback()  # another worker moved past it already (and stored what it found)
        else:
            pending = max(0, self.log.last_length - 1)
            position.advance(cursor, self.group, epoch, batch_id, 0, 0, pending)
            try:
                self.dead_letters.store(dead)
                stored()
            except BaseException:
                conn.rollback()  # not past it: the next attempt meets the batch again
                raise
            conn.commit()
        self.log.trim_through(batch_id, hold_trigger=True)
        self.log.clear_failure()
        self.passed(batch_id)
        report.dead_lettered += 1
        return Outcome.PROGRESS

    def temporary(self, batch_id: str | None, error: BaseException, record: bool = True) -> None:
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
