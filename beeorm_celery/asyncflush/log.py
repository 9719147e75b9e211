"""One async group's state in Redis: its log of pending batches and the trigger flag.

The log is a stream: entry ids are the batch ids (ordered as ``flush_async`` returned), carry
the time they were queued, and XLEN is the backlog. Entries are trimmed only after the MySQL
transaction that applied them committed (and moved the group's position past them).

The trigger flag means "a wake-up is on its way, or a worker is applying this group": producers
with a waker attached wake a worker only when their SET NX creates it (producers without one do
not set it: nobody would publish, and the flag would make the sweep skip the group). A worker
ends with DEL flag, then a last look at the log; a batch that lands after that look finds no flag
and wakes a worker anew, so no batch waits for a wake-up that never comes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import redis

    from beeorm_celery.asyncflush.parts import AsyncParts
    from beeorm_celery.keys import Keys
    from beeorm_celery.schema import EntitySchema

Entry = tuple[str, dict[bytes, bytes]]
# field of the group's counters hash (Keys.counters) that counts temporary errors retried
RETRIES_FIELD = "retries"


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def after(a: str, b: str) -> bool:
    """Whether stream id ``a`` comes after ``b``."""
    return parse_id(a) > parse_id(b)


def successor(entry_id: str) -> str:
    ms, seq = parse_id(entry_id)
    return f"{ms}-{seq + 1}"


@dataclass(frozen=True)
class HeadFailure:
    batch_id: str
    attempts: int
    first_failed_at: float
    last_failed_at: float
    error_code: int | None
    error: str


class GroupLog:
    def __init__(self, parts: AsyncParts, group: str) -> None:
        self.group = group
        self.client = parts.log_redis()
        keys = parts.keys
        self.log_key = keys.log(group)
        self.epoch_key = keys.epoch(group)
        self.trigger_key = keys.trigger(group)
        self.failure_key = keys.head_failure(group)
        self.counters_key = keys.counters(group)
        self.trigger_ttl_ms = int(parts.settings.trigger_ttl_s * 1000)
        self.last_length = 0

    # --- reading

    def read(self, count: int) -> tuple[str | None, list[Entry]]:
        """The log's epoch and its first ``count`` entries."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.epoch_key)
        pipe.xrange(self.log_key, "-", "+", count=count)
        pipe.xlen(self.log_key)
        epoch, entries, length = pipe.execute()
        self.last_length = int(length)  # how many were pending: reported if this log is lost
        return (epoch.decode() if epoch else None), _entries(entries)

    def length(self) -> int:
        return int(self.client.xlen(self.log_key))

    @staticmethod
    def oldest_of(parts: AsyncParts, groups: list[str]) -> list[int | None]:
        """The queue time (ms) of each group's oldest pending batch, in one round trip."""
        pipe = parts.log_redis().pipeline(transaction=False)
        for group in groups:
            pipe.xrange(parts.keys.log(group), "-", "+", count=1)
        result: list[int | None] = []
        for raw in pipe.execute():
            entries = _entries(raw)
            result.append(parse_id(entries[0][0])[0] if entries else None)
        return result

    def wait_for_entries(self, timeout_s: float) -> bool:
        """Block until the log has an entry, at most ``timeout_s``."""
        timeout_ms = max(1, int(timeout_s * 1000))
        found = self.client.xread({self.log_key: "0-0"}, count=1, block=timeout_ms)
        return bool(found)

    # --- moving on

    def trim_through(self, position: str, hold_trigger: bool, clear_failure: bool = False) -> None:
        """Drop entries up to ``position`` (applied), and keep the trigger flag while working.

        ``clear_failure``: the head batch got through, so its failure record goes too (only the
        holder of the group, which just moved past the head, may say so).
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.xtrim(self.log_key, minid=successor(position), approximate=False)
        if hold_trigger:
            pipe.set(self.trigger_key, b"1", px=self.trigger_ttl_ms)
        if clear_failure:
            pipe.delete(self.failure_key)
        pipe.execute()

    def set_epoch_if_missing(self, token: str) -> str:
        self.client.set(self.epoch_key, token, nx=True)
        current = self.client.get(self.epoch_key)
        return _text(current) if current else token

    # --- trigger protocol

    def hold_trigger(self, ttl_s: float | None = None) -> None:
        ttl_ms = int(ttl_s * 1000) if ttl_s is not None else self.trigger_ttl_ms
        self.client.set(self.trigger_key, b"1", px=max(ttl_ms, 1))

    def release_trigger_if_idle(self) -> bool:
        """DEL the flag, then look again: True if the log is empty and the group is released.

        False means batches arrived meanwhile; then the caller should keep applying if it got
        the flag back, which ``claim_trigger`` tells.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.trigger_key)
        pipe.xlen(self.log_key)
        _, length = pipe.execute()
        return int(length) == 0

    def claim_trigger(self) -> bool:
        return bool(self.client.set(self.trigger_key, b"1", nx=True, px=self.trigger_ttl_ms))

    # --- failures of the head batch

    def record_failure(self, batch_id: str, error_code: int | None, error: str) -> HeadFailure:
        now = time.time()
        previous = self.failure()
        if previous is not None and previous.batch_id == batch_id:
            failure = HeadFailure(
                batch_id, previous.attempts + 1, previous.first_failed_at, now, error_code, error
            )
        else:
            failure = HeadFailure(batch_id, 1, now, now, error_code, error)
        self.client.hset(
            self.failure_key,
            mapping={
                "batch_id": failure.batch_id,
                "attempts": failure.attempts,
                "first_failed_at": repr(failure.first_failed_at),
                "last_failed_at": repr(failure.last_failed_at),
                "error_code": "" if error_code is None else str(error_code),
                "error": error[:2000],
            },
        )
        return failure

    def failure(self) -> HeadFailure | None:
        raw = cast(dict[bytes, bytes], self.client.hgetall(self.failure_key))
        if not raw:
            return None
        try:
            code = raw.get(b"error_code", b"")
            return HeadFailure(
                _text(raw[b"batch_id"]),
                int(raw[b"attempts"]),
                float(raw[b"first_failed_at"]),
                float(raw[b"last_failed_at"]),
                int(code) if code else None,
                _text(raw.get(b"error", b"")),
            )
        except (KeyError, ValueError):
            return None

    def clear_failure(self) -> None:
        self.client.delete(self.failure_key)

    def count_retry(self) -> None:
        """One more temporary error retried (``beeorm_async_retries_total``)."""
        self.client.hincrby(self.counters_key, RETRIES_FIELD, 1)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(raw: Any) -> list[Entry]:
    """XRANGE's reply as (id, fields) pairs (redis-py types it loosely)."""
    return [(_text(entry_id), cast(dict[bytes, bytes], fields)) for entry_id, fields in raw or []]


def max_queued_insert_id(client: redis.Redis, keys: Keys, schema: EntitySchema) -> int:
    """The highest id an INSERT into ``schema`` still waiting in its group's log uses.

    Only read when an id counter is (re)seeded, so a lost counter can't hand out an id that a
    queued INSERT already holds.
    """
    import json

    from beeorm_celery.asyncflush.batch import PAYLOAD_FIELD

    key = keys.log(schema.options.async_group)
    highest = 0
    last = "-"
    while True:
        entries = _entries(client.xrange(key, last if last == "-" else "(" + last, "+", count=1000))
        if not entries:
            return highest
        for entry_id, fields in entries:
            last = entry_id
            try:
                data = json.loads(fields.get(PAYLOAD_FIELD, b"{}"))
                for op in data.get("ops", []):
                    if op[0] == "i" and op[1] == schema.table and isinstance(op[2], int):
                        highest = max(highest, op[2])
            except (ValueError, TypeError, IndexError, AttributeError):
                continue
