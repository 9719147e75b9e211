"""The history a dead letter keeps across replays (dead_history.py), as pure logic."""

from __future__ import annotations

from datetime import UTC, datetime

from beeorm_celery.asyncflush.dead_history import events, merged, replay_record
from beeorm_celery.asyncflush.deadletters import DeadLetter


def at(second: int) -> datetime:
    return datetime(2026, 11, 21, 6, 0, second, tzinfo=UTC)


def dead(batch_id: str, first: int, last: int, attempts: int, replay_of: str | None) -> DeadLetter:
    return DeadLetter(
        id=f"catalog/{batch_id}",
        group="catalog",
        batch_id=batch_id,
        sql=["INSERT ..."],
        error_code=1062,
        error=f"Duplicate entry ({batch_id})",
        failed_at=at(last),
        first_failed_at=at(first),
        attempts=attempts,
        replay_of=replay_of,
    )


def test_a_record_from_before_histories_reads_as_its_one_failure() -> None:
    raw = dead("1-0", 1, 3, 2, None).to_json().replace(b', "history": []', b"")
    assert b"history" not in raw

    [only] = events(DeadLetter.from_json(raw))

    assert (only.kind, only.batch_id, only.attempts) == ("failed", "1-0", 2)
    assert (only.first_at, only.at) == (at(1), at(3))


def test_merging_keeps_the_first_failure_adds_attempts_and_is_idempotent() -> None:
    original = dead("1-0", 1, 3, 2, None)
    kept = replay_record(original, at(10).timestamp())
    replay_failed = dead("2-0", 11, 12, 1, "catalog/1-0")

    once = merged(replay_failed, kept)
    twice = merged(replay_failed, kept)

    assert once == twice
    assert once.first_failed_at == at(1)
    assert once.failed_at == at(12)
    assert once.attempts == 3
    assert [(e.kind, e.batch_id, e.at) for e in once.history] == [
        ("failed", "1-0", at(3)),
        ("replayed", "2-0", at(10)),
        ("failed", "2-0", at(12)),
    ]
    assert DeadLetter.from_json(once.to_json()) == once  # survives Redis
