"""MariaDB stopped (cleanly, then by SIGKILL) and started again mid-run: nothing lost or doubled.

The server is a private one (its own data directory and port), so stopping it disturbs nothing
else on the machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from beeorm_celery import DatabaseUnavailableError
from bench.chaos_mariadb import PrivateMariaDB
from tests.support.models import Counter, Note
from tests.support.private_servers import private_mariadb
from tests.support.services import wait_until
from tests.support.sql import query, scalar
from tests.support.workers import CeleryHarness


@pytest.fixture
def restart_mariadb() -> Iterator[PrivateMariaDB]:
    with private_mariadb("restart") as server:
        yield server


def test_mariadb_stopped_and_started_mid_run_loses_nothing(
    restart_mariadb, redis_url, broker_url, key_prefix, tmp_path
):
    h = CeleryHarness(
        restart_mariadb.url,
        redis_url,
        broker_url,
        key_prefix,
        tmp_path,
        {"retry_backoff_s": 1, "retry_backoff_max_s": 2, "max_batches_per_transaction": 10},
    )
    try:
        h.start_worker(concurrency=2)
        ctx = h.engine.new_context()
        counter = ctx.new_entity(Counter, name="through-outages", value=0)
        ctx.flush_async()
        notes: list[int] = []
        stop = threading.Event()
        state = {"value": 0}

        def produce():  # flush_async never touches MySQL: it keeps working during the outage
            nonlocal counter
            while not stop.is_set() and len(notes) < 2000:
                counter = ctx.edit(counter)
                counter.value += 1
                state["value"] = counter.value
                notes.append(ctx.new_entity(Note, text=f"n{len(notes)}").id)
                ctx.flush_async()
                time.sleep(0.003)

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            time.sleep(1.5)
            restart_mariadb.shutdown()  # clean stop
            time.sleep(2)
            restart_mariadb.start()
            time.sleep(1.5)
            restart_mariadb.crash()  # SIGKILL: in-flight transactions die with it
            time.sleep(2)
            restart_mariadb.start()
            time.sleep(1)
        finally:
            stop.set()
            producer.join(timeout=30)

        def drained():
            try:
                return all(s.pending == 0 for s in h.engine.async_stats().values())
            except DatabaseUnavailableError:
                return False  # this process' pooled connection died with the server: next poll

        wait_until(
            drained,
            timeout_s=120,
            interval_s=0.2,
            message="the backlog never drained after the restarts",
        )
        assert (
            scalar(h.engine, "SELECT value FROM counter WHERE id = %s", (counter.id,))
            == state["value"]
        )
        assert scalar(h.engine, "SELECT COUNT(*) FROM note") == len(notes)
        assert query(h.engine, "SELECT COUNT(DISTINCT id) FROM note") == [(len(notes),)]
        assert h.engine.dead_letters.count() == 0
        logs = "".join(w.log() for w in h.workers)
        assert "temporary error" in logs  # the outage was seen and retried
    finally:
        h.close()


def test_reads_survive_a_mariadb_restart_without_an_error(restart_mariadb, redis_url, key_prefix):
    """Pooled connections die with the server; a read notices and reconnects once."""
    from beeorm_celery import Registry

    registry = Registry(key_prefix=key_prefix)
    registry.register_mysql(restart_mariadb.url)
    registry.register_redis(redis_url)
    registry.register_entity(Note)
    engine = registry.validate()
    try:
        engine.update_schema()
        ctx = engine.new_context()
        note = ctx.new_entity(Note, text="survivor")
        ctx.flush()
        assert ctx.count(Note) == 1  # a pooled connection now sits idle
        restart_mariadb.crash()
        restart_mariadb.start()
        assert ctx.count(Note) == 1
        assert [n.id for n in ctx.search(Note)] == [note.id]
    finally:
        engine.close()
