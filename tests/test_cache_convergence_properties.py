"""Property (law 10): whatever two producers do, in any interleaving (edits from stale copies,
deletes, renames racing for unique names, cache clears, drains), once the backlog is drained
the cache equals MySQL (``verify_cache`` is empty) and MySQL equals a model of the accepted
flushes. Bounded to about 30 s."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from beeorm_celery import DuplicateKeyError, ValidationError, consume_async_flush_events
from tests.support.models import ALL, Counter
from tests.support.sql import query

ROWS = 3
NAMES = ("a", "b", "c", "d")

_producer = st.integers(0, 1)
_row = st.integers(0, ROWS - 1)
operation = st.one_of(
    st.tuples(st.just("read"), _producer, _row),
    st.tuples(st.just("value"), _producer, _row, st.integers(0, 3)),
    st.tuples(st.just("rename"), _producer, _row, st.sampled_from(NAMES)),
    st.tuples(st.just("delete"), _producer, _row),
    st.tuples(st.just("clear"), _producer, _row),
    st.tuples(st.just("drain"), _producer),
)


@pytest.fixture
def producers(make_engine: Any) -> list[Any]:
    first = make_engine(*ALL)
    return [first, make_engine(*ALL, update_schema=False)]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=30))
@example(ops=[("rename", 0, 0, "d"), ("clear", 0, 0), ("value", 1, 0, 1), ("rename", 0, 1, "d")])
@example(ops=[("delete", 0, 2), ("clear", 0, 2), ("rename", 1, 2, "d"), ("rename", 0, 0, "d")])
@example(
    ops=[
        ("clear", 0, 2),
        ("rename", 0, 2, "d"),
        ("drain", 0),
        ("value", 1, 2, 1),
        ("rename", 0, 0, "d"),
    ]
)
def test_two_producers_converge_with_mysql(producers: list[Any], ops: list[Any]) -> None:
    engines = producers
    tag = f"x{uuid.uuid4().hex[:8]}-"  # each example its own rows and names
    ctx = engines[0].new_context()
    rows = [ctx.new_entity(Counter, name=f"{tag}{NAMES[n]}", value=0) for n in range(ROWS)]
    ctx.flush()
    ids = [r.id for r in rows]
    model: dict[int, dict[str, Any] | None] = {r.id: {"name": r.name, "value": 0} for r in rows}
    theirs = engines[1].new_context().get_by_ids(Counter, ids)
    copies: list[dict[int, Any]] = [
        dict(zip(ids, rows, strict=True)),
        dict(zip(ids, theirs, strict=True)),
    ]

    for op in ops:
        kind, p = op[0], op[1]
        engine = engines[p]
        if kind == "drain":
            consume_async_flush_events(engine)
            continue
        entity_id = ids[op[2]]
        if kind == "read":
            found = engine.new_context().get_by_id(Counter, entity_id)
            if found is not None:
                copies[p][entity_id] = found
            continue
        if kind == "clear":
            engine.clear_cache(Counter, entity_id)
            continue
        copy = copies[p].get(entity_id)
        if copy is None:
            continue
        ctx = engine.new_context()
        row = model[entity_id]
        if kind == "delete":
            ctx.delete(copy)
            change: dict[str, Any] | None = None
        else:
            field = "value" if kind == "value" else "name"
            new = op[3] if kind == "value" else f"{tag}{op[3]}"
            if getattr(copy, field) == new:
                continue  # nothing changes: nothing is flushed
            ctx.edit(copy).__setattr__(field, new)
            change = {field: new}
        try:
            ctx.flush_async()
        except (ValidationError, DuplicateKeyError) as e:
            # refused at once: nothing queued. Only for a reason the model confirms.
            if isinstance(e, DuplicateKeyError):
                holders = [i for i, r in model.items() if r and r["name"] == change["name"]]  # type: ignore[index]
                assert holders and holders != [entity_id], (e, model)
            continue
        copies[p].pop(entity_id, None)
        if row is None:
            continue  # the row is gone: the worker dead-letters this batch
        if change is None:
            model[entity_id] = None
        else:
            row.update(change)

    for engine in engines:
        consume_async_flush_events(engine)
    markers = engines[0].keys.pending(engines[0].schema(Counter))
    assert engines[0].redis("default").hmget(markers, ids) == [None] * ROWS  # all released:
    for engine in engines:  # ... so verify_cache skips none of the rows
        assert engine.verify_cache(Counter) == []
    rows_now = query(engines[0], "SELECT id, name, value FROM counter")
    in_mysql = {r[0]: {"name": r[1], "value": r[2]} for r in rows_now if r[0] in model}
    assert in_mysql == {i: r for i, r in model.items() if r is not None}
    seen = engines[1].new_context().get_by_ids(Counter, ids)
    assert {e.id: {"name": e.name, "value": e.value} for e in seen if e is not None} == in_mysql
