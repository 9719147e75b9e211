"""Async reads: searches and counts that run in the background and can be awaited, raced,
timed out and cancelled, with the stopping done by MySQL itself.

::

    future = ctx.search_async(Product, Where("`price` > ?", 10), timeout=2.0)
    products = future.result()                       # or: await asyncio.wrap_future(future)
    fastest = race(ctx.count_async(Product, pool="replica"), ctx.count_async(Product))

``QueryRunner`` (``engine.query_runner``) owns the threads and connections; ``QueryFuture``
is the ``concurrent.futures.Future`` whose ``cancel()`` kills a running query.
"""

from __future__ import annotations

from beeorm_celery.async_reads.future import QueryFuture
from beeorm_celery.async_reads.page import Page
from beeorm_celery.async_reads.race import race, race_future
from beeorm_celery.async_reads.runner import QueryRunner
from beeorm_celery.async_reads.stats import Outcome, QueryEvent, QueryStats, SlowQueryLog

__all__ = [
    "Outcome",
    "Page",
    "QueryEvent",
    "QueryFuture",
    "QueryRunner",
    "QueryStats",
    "SlowQueryLog",
    "race",
    "race_future",
]
