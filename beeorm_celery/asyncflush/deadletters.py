"""Dead letters: batches MySQL refused for good, kept in Redis for an operator to fix and replay.

Each group keeps a hash (batch id -> record) and a sorted set (batch id by failure time), so
storing the same failure twice keeps one entry, listing is in failure order, and the cap and the
age limit drop the oldest first.
"""

from __future__ import annotations

import base64
import builtins
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from beeorm_celery.asyncflush.batch import Batch, check_signature, decode_payload
from beeorm_celery.asyncflush.dead_history import DeadLetterEvent, merged, replay_record
from beeorm_celery.asyncflush.enqueue import enqueue_and_wake
from beeorm_celery.asyncflush.mysql_errors import PACKET_CODES, SCHEMA_LAG_CODES, error_code
from beeorm_celery.errors import (
    AsyncFlushError,
    DeadLetterNotFoundError,
    MalformedBatchError,
    SchemaLagError,
    SignatureError,
)
from beeorm_celery.failures import SAFE_TO_REPEAT, changing, reading

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.parts import AsyncParts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    """A batch that will not be applied as it is.

    ``id`` is ``"<group>/<batch id>"``; ``sql`` the batch's statements rendered (what would run);
    ``failing_statement`` the one MySQL refused; ``error_code`` the MySQL code (None for a
    batch that could not be decoded); ``failed_at`` / ``first_failed_at`` UTC datetimes.
    ``malformed``: the bytes are unreadable, the dead letter can only be removed. ``cause``:
    why a readable batch was not applied where an operator fixes it outside the data:
    ``"schema_lag"`` (upgrade workers / run update_schema, then retry), ``"signature"`` (fix
    the secret, then retry: the kept ``signature`` must verify), ``"decode"`` (this worker
    refused a value or a missing column), ``"packet"`` (raise max_allowed_packet), or None.
    A replay that fails again continues the history of the dead letter it replayed:
    ``first_failed_at`` stays, ``attempts`` adds up, ``history`` lists every failure and replay.
    """

    id: str
    group: str
    batch_id: str
    sql: list[str]
    error_code: int | None
    error: str
    failed_at: datetime
    first_failed_at: datetime
    attempts: int
    failing_statement: str | None = None
    malformed: bool = False
    replay_of: str | None = None
    payload: bytes = field(default=b"", repr=False)
    cause: str | None = None
    signature: bytes | None = field(default=None, repr=False)
    # every failure and replay, oldest first, once it was replayed (dead_history.py); empty:
    # its one failure is the record itself (``dead_history.events`` gives both forms)
    history: tuple[DeadLetterEvent, ...] = ()

    def to_json(self) -> bytes:
        data = {
            "group": self.group,
            "batch_id": self.batch_id,
            "sql": self.sql,
            "error_code": self.error_code,
            "error": self.error,
            "failed_at": self.failed_at.timestamp(),
            "first_failed_at": self.first_failed_at.timestamp(),
            "attempts": self.attempts,
            "failing_statement": self.failing_statement,
            "malformed": self.malformed,
            "replay_of": self.replay_of,
            "payload": base64.b64encode(self.payload).decode(),
            "cause": self.cause,
            "signature": self.signature.decode() if self.signature else None,
            "history": [event.as_json() for event in self.history],
        }
        return json.dumps(data, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> DeadLetter:
        data = json.loads(raw)
        return cls(
            id=f"{data['group']}/{data['batch_id']}",
            group=data["group"],
            batch_id=data["batch_id"],
            sql=list(data["sql"]),
            error_code=data["error_code"],
            error=data["error"],
            failed_at=datetime.fromtimestamp(data["failed_at"], UTC),
            first_failed_at=datetime.fromtimestamp(data["first_failed_at"], UTC),
            attempts=int(data["attempts"]),
            failing_statement=data.get("failing_statement"),
            malformed=bool(data.get("malformed")),
            replay_of=data.get("replay_of"),
            payload=base64.b64decode(data.get("payload", "")),
            cause=data.get("cause"),
            signature=data["signature"].encode() if data.get("signature") else None,
            history=tuple(DeadLetterEvent.from_json(e) for e in data.get("history") or ()),
        )


def dead_letter_cause(error: MalformedBatchError) -> str | None:
    """The ``DeadLetter.cause`` of a batch that could not be decoded (None: unreadable)."""
    if isinstance(error, SignatureError):
        return "signature"
    if isinstance(error, SchemaLagError):
        return "schema_lag"
    return "decode" if error.replayable else None


def cause_of(error: BaseException) -> str | None:
    """The ``DeadLetter.cause`` of a batch MySQL refused."""
    code = error_code(error)
    if code in SCHEMA_LAG_CODES:
        return "schema_lag"
    if code in PACKET_CODES:
        return "packet"
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def split_id(dead_letter_id: str) -> tuple[str, str]:
    group, sep, batch_id = str(dead_letter_id).rpartition("/")
    if not sep or not group or not batch_id:
        raise DeadLetterNotFoundError(
            f"{dead_letter_id!r} is not a dead letter id (they look like 'group/1700000000000-0')"
        )
    return group, batch_id


class DeadLetters:
    """``engine.dead_letters``: list, show, retry, remove dead letters."""

    def __init__(self, parts: AsyncParts) -> None:
        self.parts = parts
        self.client = parts.log_redis()
        self.keys = parts.keys

    def _groups(self, group: str | None) -> builtins.list[str]:
        return [group] if group is not None else sorted(self.parts.async_groups)

    # --- the public calls: Redis and MySQL failures reach the caller as BeeormError

    def _pool(self, group: str | None) -> str:
        return self.parts.async_groups.get(group or "", self.parts.log_pool)

    def count(self, group: str | None = None) -> int:
        with reading("dead_letters.count()", self._pool(group)):
            return self._count(group)

    def list(self, group: str | None = None, limit: int = 100) -> builtins.list[DeadLetter]:
        """Dead letters, oldest failure first, at most ``limit``."""
        with reading("dead_letters.list()", self._pool(group)):
            return self._list(group, limit)

    def get(self, dead_letter_id: str) -> DeadLetter:
        with reading(f"dead_letters.get({dead_letter_id!r})", self._pool(None)):
            return self._get(dead_letter_id)

    def retry(self, dead_letter_id: str) -> str:
        """Queue the batch again, at the end of its group; returns the new batch id.

        Fix the cause first (the conflicting row, the missing column or worker upgrade, the
        secret...). Only a batch whose bytes cannot be read is refused: remove it. Enqueued and
        woken like a flush (``enqueue_and_wake``), and removed from the dead letters in the same
        atomic step.
        """
        effect = "the replay may or may not be queued: see dead_letters.get() before retrying"
        with changing(f"dead_letters.retry({dead_letter_id!r})", self._pool(None), effect):
            return self._retry(dead_letter_id)

    def retry_all(self, group: str | None = None) -> int:
        """Replay every replayable dead letter (of ``group``); returns how many.

        The ids are taken once at the start, so a replay that fails again (a new dead letter)
        is not replayed a second time in the same call. Malformed dead letters, and those that
        no longer match the registered entities, stay where they are (logged).
        """
        with changing("dead_letters.retry_all()", self._pool(group), SAFE_TO_REPEAT):
            return self._retry_all(group)

    def remove(self, dead_letter_id: str) -> None:
        with changing(f"dead_letters.remove({dead_letter_id!r})", self._pool(None), SAFE_TO_REPEAT):
            self._remove(dead_letter_id)

    def clear(self, group: str | None = None) -> int:
        """Remove every dead letter (of ``group``); returns how many."""
        with changing("dead_letters.clear()", self._pool(group), SAFE_TO_REPEAT):
            return self._clear(group)

    # --- the calls themselves

    def _count(self, group: str | None = None) -> int:
        pipe = self.client.pipeline(transaction=False)
        for g in self._groups(group):
            pipe.hlen(self.keys.dead(g))
        return sum(int(n) for n in pipe.execute())

    def _list(self, group: str | None = None, limit: int = 100) -> builtins.list[DeadLetter]:
        found: builtins.list[DeadLetter] = []
        for g in self._groups(group):
            ids = cast(
                builtins.list[bytes],
                self.client.zrange(self.keys.dead_index(g), 0, max(0, limit - 1)),
            )
            if not ids:
                continue
            for raw in cast(builtins.list[bytes | None], self.client.hmget(self.keys.dead(g), ids)):
                if raw is not None:
                    found.append(DeadLetter.from_json(raw))
        found.sort(key=lambda d: d.failed_at)
        return found[:limit]

    def _get(self, dead_letter_id: str) -> DeadLetter:
        group, batch_id = split_id(dead_letter_id)
        raw = cast(bytes | None, self.client.hget(self.keys.dead(group), batch_id))
        if raw is None:
            raise DeadLetterNotFoundError(f"no dead letter {dead_letter_id!r}")
        return DeadLetter.from_json(raw)

    def _retry(self, dead_letter_id: str) -> str:
        dead = self._get(dead_letter_id)
        batch = self._replayable(dead)
        now = time.time()
        replay = Batch(dead.group, batch.operations, int(now * 1000), dead.id)
        # kept first: should the replay fail again, its dead letter continues this history
        self.client.set(
            self.keys.dead_replayed(dead.group, dead.batch_id),
            replay_record(dead, now),
            ex=max(1, int(self.parts.settings.dead_letter_max_age_s)),
        )
        (queued,) = enqueue_and_wake(
            self.parts,
            [replay],
            uuid.uuid4().hex,
            replaces_dead_letters=[dead.batch_id],
            check_backlog=False,  # as before the seam: a replay is not refused by the limit
        )
        assert queued.id is not None
        return queued.id

    def _replayable(self, dead: DeadLetter) -> Batch:
        """The batch ``dead`` replays, or ``AsyncFlushError`` saying why it cannot (yet)."""
        settings = self.parts.settings
        if dead.cause == "signature":
            try:
                check_signature(
                    f"dead letter {dead.id}", dead.payload, dead.signature, settings.secrets
                )
            except SignatureError as e:
                raise AsyncFlushError(
                    f"{e}; set the secret that signed it in signing_secret (a list keeps old "
                    "ones), then retry"
                ) from e
        elif dead.malformed and ("signature" in dead.error or "not signed" in dead.error):
            # recorded before signatures were kept: nothing left to verify it with
            raise AsyncFlushError(
                f"dead letter {dead.id} failed its signature check ({dead.error}); it cannot be "
                "replayed, only removed"
            )
        try:
            return decode_payload(self.parts, dead.group, dead.payload, dead.batch_id)
        except MalformedBatchError as e:
            if dead.malformed and not e.replayable:
                raise AsyncFlushError(
                    f"dead letter {dead.id} is a malformed batch ({dead.error}); it cannot be "
                    "replayed, only removed"
                ) from e
            raise AsyncFlushError(
                f"dead letter {dead.id} does not match this process's entities yet: {e}"
            ) from e

    def _retry_all(self, group: str | None = None) -> int:
        replayed = 0
        for g in self._groups(group):
            ids = [
                _text(i)
                for i in cast(
                    builtins.list[bytes], self.client.zrange(self.keys.dead_index(g), 0, -1)
                )
            ]
            for batch_id in ids:
                try:
                    self._retry(f"{g}/{batch_id}")
                except DeadLetterNotFoundError:
                    continue  # removed or replayed meanwhile
                except AsyncFlushError as e:
                    logger.warning("not replayed: %s", e)
                    continue
                replayed += 1
        return replayed

    def _remove(self, dead_letter_id: str) -> None:
        group, batch_id = split_id(dead_letter_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.keys.dead(group), batch_id)
        pipe.zrem(self.keys.dead_index(group), batch_id)
        removed, _ = pipe.execute()
        if not removed:
            raise DeadLetterNotFoundError(f"no dead letter {dead_letter_id!r}")

    def _clear(self, group: str | None = None) -> int:
        removed = 0
        for g in self._groups(group):
            pipe = self.client.pipeline(transaction=True)
            pipe.hlen(self.keys.dead(g))
            pipe.delete(self.keys.dead(g), self.keys.dead_index(g))
            count, _ = pipe.execute()
            removed += int(count)
        return removed

    # --- used by the applier

    def store(self, dead: DeadLetter) -> None:
        """Keep ``dead`` (replacing a previous record of the same batch), then apply the limits.

        A replay's failure continues the history of the dead letter it replayed (its first
        failure, its attempts, its replay times), if that record is still kept.
        """
        settings = self.parts.settings
        if dead.replay_of:
            group, replayed_batch = split_id(dead.replay_of)
            kept = cast(
                bytes | None, self.client.get(self.keys.dead_replayed(group, replayed_batch))
            )
            if kept is not None:
                dead = merged(dead, kept)
        dead_key, index_key = self.keys.dead(dead.group), self.keys.dead_index(dead.group)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(dead_key, dead.batch_id, dead.to_json())
        pipe.zadd(index_key, {dead.batch_id: dead.failed_at.timestamp()})
        pipe.execute()
        self._enforce_limits(
            dead.group, settings.dead_letter_max_per_group, settings.dead_letter_max_age_s
        )

    def _enforce_limits(self, group: str, max_count: int, max_age_s: float) -> None:
        dead_key, index_key = self.keys.dead(group), self.keys.dead_index(group)
        expired: builtins.list[Any] = self.client.zrangebyscore(
            index_key, 0, time.time() - max_age_s
        )
        excess = int(self.client.zcard(index_key)) - len(expired) - max_count
        if excess > 0:
            expired += self.client.zrange(index_key, len(expired), len(expired) + excess - 1)
        if expired:
            logger.warning(
                "dropping %d dead letters of group %r (limits: %d entries, %.0fs)",
                len(expired),
                group,
                max_count,
                max_age_s,
            )
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(dead_key, *expired)
            pipe.zrem(index_key, *expired)
            pipe.execute()
