from __future__ import annotations

from tests.support.models import Counter
from tests.support.services import wait_until


def test_worker_applies_flush_async(celery_harness):
    h = celery_harness()
    h.start_worker(concurrency=2)
    ctx = h.engine.new_context()
    counter = ctx.new_entity(Counter, name="a", value=1)
    ctx.flush_async()
    for i in range(2, 50):
        counter = ctx.edit(counter)
        counter.value = i
        ctx.flush_async()

    def landed():
        with h.engine.mysql["default"].connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT value FROM counter WHERE id = %s", (counter.id,))
            row = cur.fetchone()
            return row is not None and row[0] == 49

    wait_until(landed, timeout_s=30, message="the last edit never reached MySQL")
    stats = h.engine.async_stats()["counters"]
    assert stats.applied == 49
    wait_until(lambda: h.engine.async_stats()["counters"].pending == 0, timeout_s=10)
