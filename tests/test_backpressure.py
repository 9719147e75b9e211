"""max_pending_batches: over it flush_async() raises BacklogFullError, nothing queued or cached."""

from __future__ import annotations

import pytest

from beeorm_celery import (
    AsyncFlushSettings,
    BacklogFullError,
    ConfigError,
    consume_async_flush_events,
)
from tests.support.models import Counter, Note
from tests.support.sql import scalar


def _pending(engine, group: str) -> int:
    return int(engine.redis("default").xlen(engine.keys.log(group)))


def test_a_full_group_refuses_the_whole_flush_and_accepts_again_once_applied(make_engine):
    engine = make_engine(
        Counter, Note, async_flush=AsyncFlushSettings(max_pending_batches={"counters": 3})
    )
    ctx = engine.new_context()
    counter = ctx.new_entity(Counter, name="c", value=0)
    ctx.flush_async()
    for value in (1, 2):
        counter = ctx.edit(counter)
        counter.value = value
        ctx.flush_async()
    assert _pending(engine, "counters") == 3

    counter = ctx.edit(counter)
    counter.value = 99
    note = ctx.new_entity(Note, text="rides along in another group")
    with pytest.raises(BacklogFullError) as info:
        ctx.flush_async()
    error = info.value
    assert (error.group, error.pending, error.limit, error.written) == ("counters", 3, 3, False)
    assert "nothing was queued or cached" in str(error)
    # Nothing of that flush anywhere: not in either log, not in the cache.
    assert _pending(engine, "counters") == 3
    assert _pending(engine, "notes") == 0
    assert engine.new_context().get_by_id(Counter, counter.id).value == 2

    # Groups without a limit are not limited.
    other = engine.new_context()
    for n in range(5):
        other.new_entity(Note, text=f"n{n}")
        other.flush_async()
    assert _pending(engine, "notes") == 5

    consume_async_flush_events(engine)
    assert _pending(engine, "counters") == 0
    ctx.flush_async()  # the refused unit of work is still tracked: it goes through now
    consume_async_flush_events(engine)
    assert scalar(engine, "SELECT value FROM counter WHERE id = %s", (counter.id,)) == 99
    assert scalar(engine, "SELECT COUNT(*) FROM note WHERE id = %s", (note.id,)) == 1


def test_one_limit_for_every_group(make_engine):
    engine = make_engine(Note, async_flush=AsyncFlushSettings(max_pending_batches=1))
    ctx = engine.new_context()
    ctx.new_entity(Note, text="a")
    ctx.flush_async()
    ctx.new_entity(Note, text="b")
    with pytest.raises(BacklogFullError, match="max_pending_batches=1"):
        ctx.flush_async()
    assert _pending(engine, "notes") == 1


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, {"g": 0}])
def test_the_limit_is_checked(bad) -> None:
    with pytest.raises(ConfigError, match="max_pending_batches"):
        AsyncFlushSettings(max_pending_batches=bad)
