"""A dead letter's history across replays: every failure and every replay, oldest first.

A replay is a new batch (a new id) and, if it fails again, a new dead letter. So that the new
one does not start from scratch, ``DeadLetters.retry`` keeps the record it replays under a key
named after the replayed batch (``Keys.dead_replayed``), and ``DeadLetters.store`` merges it
into the next failure of that replay: ``first_failed_at`` stays the first failure, ``attempts``
adds up, and ``history`` lists each failure (with its error and attempts) and each replay time.
The kept record expires after ``dead_letter_max_age_s``, the age at which a dead letter is
dropped anyway; merging twice gives the same result, so storing a failure again is harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.deadletters import DeadLetter

EventKind = Literal["failed", "replayed"]


@dataclass(frozen=True)
class DeadLetterEvent:
    """``failed``: a batch was dead-lettered after ``attempts`` failed attempts, the first at
    ``first_at`` and the last at ``at``. ``replayed``: an operator queued it again at ``at``."""

    kind: EventKind
    at: datetime
    batch_id: str
    attempts: int = 0
    first_at: datetime | None = None
    error_code: int | None = None
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at": self.at.timestamp(),
            "batch_id": self.batch_id,
            "attempts": self.attempts,
            "first_at": self.first_at.timestamp() if self.first_at is not None else None,
            "error_code": self.error_code,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeadLetterEvent:
        first_at = data.get("first_at")
        return cls(
            kind="replayed" if data.get("kind") == "replayed" else "failed",
            at=datetime.fromtimestamp(float(data["at"]), UTC),
            batch_id=str(data.get("batch_id", "")),
            attempts=int(data.get("attempts") or 0),
            first_at=datetime.fromtimestamp(float(first_at), UTC) if first_at else None,
            error_code=data.get("error_code"),
            error=str(data.get("error") or ""),
        )


def failure_event(dead: DeadLetter) -> DeadLetterEvent:
    """The failure that made ``dead``, as it was recorded (before any merge)."""
    return DeadLetterEvent(
        "failed",
        dead.failed_at,
        dead.batch_id,
        dead.attempts,
        dead.first_failed_at,
        dead.error_code,
        dead.error,
    )


def events(dead: DeadLetter) -> tuple[DeadLetterEvent, ...]:
    """``dead``'s history; a record without one (never replayed, or older) is its failure."""
    return dead.history or (failure_event(dead),)


def replay_record(dead: DeadLetter, replayed_at: float) -> bytes:
    """What ``retry`` keeps for the replay of ``dead``."""
    return json.dumps(
        {"replayed_at": replayed_at, "dead_letter": json.loads(dead.to_json())},
        ensure_ascii=False,
    ).encode()


def merged(current: DeadLetter, kept: bytes) -> DeadLetter:
    """``current`` (the replay's failure, as the applier recorded it) continuing the history of
    the dead letter it replayed (``kept``, from ``replay_record``)."""
    from beeorm_celery.asyncflush.deadletters import DeadLetter

    data = json.loads(kept)
    previous = DeadLetter.from_json(json.dumps(data["dead_letter"]).encode())
    replayed = DeadLetterEvent(
        "replayed", datetime.fromtimestamp(float(data["replayed_at"]), UTC), current.batch_id
    )
    own = failure_event(current)
    return replace(
        current,
        first_failed_at=min(previous.first_failed_at, current.first_failed_at),
        attempts=previous.attempts + current.attempts,
        history=(*events(previous), replayed, own),
    )
