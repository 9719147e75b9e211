"""A drain step runs with Python's cyclic collector held off, and leaves it as it found it.

A step decodes thousands of rows, each a few new objects: with the collector on, that is a
collection of the young generation every 700 of them and now and then of the whole worker's
heap, for objects that hold no cycles (``asyncflush/gc_pause.py``).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from beeorm_celery import consume_async_flush_events
from beeorm_celery.asyncflush.gc_pause import collector_paused
from beeorm_celery.asyncflush.worker import GroupWorker
from tests.support.models import Category, Counter, Note, Product
from tests.support.sql import scalar


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of every collection that starts while the test runs."""
    started: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        yield started
    finally:
        gc.callbacks.remove(seen)


def test_the_collector_is_off_inside_and_as_it_was_after() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()

    with pytest.raises(KeyError), collector_paused():
        raise KeyError("inside")
    assert gc.isenabled()  # on again after an error

    gc.disable()  # a process that turned it off itself keeps it off
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()

    @collector_paused()
    def step() -> bool:
        return gc.isenabled()

    assert (step(), step(), gc.isenabled()) == (False, False, True)  # each call, as a decorator


@pytest.mark.services
def test_a_drain_of_thousands_of_rows_starts_no_collection(
    make_engine: Any, collections: list[int]
) -> None:
    engine = make_engine(Product, Category)  # Product refers to Category
    rows = 6000
    for first in range(0, rows, 200):
        ctx = engine.new_context()
        for n in range(first, first + 200):
            ctx.new_entity(Product, name=f"p{n}", price=Decimal(n % 1000) / 100, stock=n)
        ctx.flush_async()
    gc.collect()
    collections.clear()
    consume_async_flush_events(engine, False)
    assert scalar(engine, "SELECT COUNT(*) FROM product") == rows
    # Without the pause: thirty here (the young generation, every 700 new objects).
    # A few may start between steps (the Redis and MySQL calls around them).
    assert len(collections) <= 5, collections
    assert gc.isenabled()


class _NoWakes:
    def wake(self, wake: Any) -> None:
        pass


@pytest.mark.services
def test_joint_transactions_of_several_groups_start_no_collection(
    make_engine: Any, collections: list[int]
) -> None:
    engine = make_engine(Counter, Note)
    # one batch each first: a group needs its row in the position table to be applied jointly
    ctx = engine.new_context()
    ctx.new_entity(Counter, name="first", value=0)
    ctx.new_entity(Note, text="first")
    ctx.flush_async()
    consume_async_flush_events(engine, False)
    rows = 3000
    for first in range(0, rows, 100):
        ctx = engine.new_context()
        for n in range(first, first + 100):
            ctx.new_entity(Counter, name=f"c{n}", value=n)
            ctx.new_entity(Note, text=f"note {n}")
        ctx.flush_async()
    time.sleep(0.05)  # both groups' oldest batches older than adopt_after_s: taken on together
    gc.collect()
    collections.clear()
    GroupWorker(engine.async_parts, _NoWakes()).handle("counters")
    assert scalar(engine, "SELECT COUNT(*) FROM counter") == rows + 1
    assert scalar(engine, "SELECT COUNT(*) FROM note") == rows + 1
    assert len(collections) <= 5, collections
    assert gc.isenabled()
