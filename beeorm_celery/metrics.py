"""Prometheus metrics for the async flush and the async reads.

``AsyncFlushCollector(engine)`` is a ``prometheus_client`` collector: register it in the
application's own registry (``REGISTRY.register(AsyncFlushCollector(engine))``) and every scrape
reads the figures fresh. ``beeorm-celery metrics --port N`` serves the same on ``/metrics``.

A scrape costs one Redis pipeline (five commands per async group, one round trip) and one MySQL
query per MySQL pool that holds async groups (usually one), whatever the number of groups. The
async-read figures are the engine's own counters (``engine.query_stats()``), so they describe the
process the collector runs in.

If Redis or MySQL fails during a scrape, the group figures are left out and
``beeorm_async_stats_up`` is 0 (the failure is logged): a scrape never fails because of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pymysql
import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from beeorm_celery.asyncflush import position
from beeorm_celery.asyncflush.log import RETRIES_FIELD, parse_id
from beeorm_celery.errors import BeeormError

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine

logger = logging.getLogger(__name__)

# MySQL's "no such table": nothing was ever applied, every figure is 0


@dataclass(frozen=True)
class GroupFigures:
    """What one scrape read for one async group."""

    pending: int = 0
    oldest_pending_seconds: float = 0.0
    dead_letters: int = 0
    head_attempts: int = 0
    retries: int = 0
    applied_batches: int = 0
    applied_operations: int = 0
    log_losses: int = 0


class AsyncFlushCollector(Collector):
    """Per async group (label ``group``) and per MySQL pool of async reads (label ``pool``).

    ============================================  =======  =====================================
    metric                                        type     meaning
    ============================================  =======  =====================================
    ``beeorm_async_pending``                      gauge    batches queued, not applied yet
    ``beeorm_async_oldest_pending_seconds``       gauge    age of the oldest of them (0: none)
    ``beeorm_async_dead_letters``                 gauge    batches waiting for an operator
    ``beeorm_async_head_attempts``                gauge    failed attempts of the batch at the
                                                           head now (0: it is not failing)
    ``beeorm_async_retries_total``                counter  temporary errors retried
    ``beeorm_async_applied_batches_total``        counter  batches applied
    ``beeorm_async_applied_operations_total``     counter  inserts, updates, deletes applied
    ``beeorm_async_log_losses_total``             counter  times a group's log was found lost
    ``beeorm_async_stats_up``                     gauge    1 if this scrape read Redis and MySQL
    ``beeorm_async_reads_queries_total``          counter  statements the async reads sent
    ``beeorm_async_reads_errors_total``           counter  of them, failed
    ``beeorm_async_reads_timeouts_total``         counter  of them, stopped by their timeout
    ``beeorm_async_reads_cancellations_total``    counter  futures cancelled
    ``beeorm_async_reads_seconds_total``          counter  time spent in MySQL
    ``beeorm_async_reads_queued``                 gauge    waiting for a connection now
    ``beeorm_async_reads_running``                gauge    running now
    ============================================  =======  =====================================
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> Iterable[Metric]:
        # names only: registering the collector must not reach Redis or MySQL
        return [family for _, family in _families()]

    def collect(self) -> Iterable[Metric]:
        families = _Families()
        try:
            figures = read_figures(self.engine)
        except (redis.RedisError, pymysql.MySQLError, OSError, BeeormError) as e:
            logger.warning("async flush statistics unavailable: %s: %s", type(e).__name__, e)
            families.up.add_metric([], 0)
        else:
            families.up.add_metric([], 1)
            for group, f in figures.items():
                families.add_group(group, f)
        for pool, q in self.engine.query_stats().items():
            families.add_pool(pool, q)
        return list(families)


def metric_names() -> list[str]:
    """Every sample name a scrape can expose (counters with their ``_total``)."""
    return [
        name + "_total" if isinstance(family, CounterMetricFamily) else name
        for name, family in _families()
    ]


def read_figures(engine: Engine) -> dict[str, GroupFigures]:
    """Every group's figures: one Redis pipeline, one MySQL query per pool holding groups."""
    groups = sorted(engine.async_groups)
    keys = engine.keys
    pipe = engine.async_parts.log_redis().pipeline(transaction=False)
    for group in groups:
        pipe.xlen(keys.log(group))
        pipe.xrange(keys.log(group), "-", "+", count=1)
        pipe.hlen(keys.dead(group))
        pipe.hget(keys.head_failure(group), "attempts")
        pipe.hget(keys.counters(group), RETRIES_FIELD)
    raw = pipe.execute()
    applied = position.applied_rows(engine.mysql, engine.async_groups)
    now_ms = time.time() * 1000
    figures: dict[str, GroupFigures] = {}
    for n, group in enumerate(groups):
        length, first, dead, attempts, retries = raw[n * 5 : n * 5 + 5]
        oldest = 0.0
        if first:
            entry_id = first[0][0]
            text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            oldest = max(0.0, (now_ms - parse_id(text)[0]) / 1000)
        row = applied.get(group, {})
        figures[group] = GroupFigures(
            pending=int(length),
            oldest_pending_seconds=round(oldest, 3),
            dead_letters=int(dead),
            head_attempts=_int(attempts),
            retries=_int(retries),
            applied_batches=_int(row.get("applied_batches")),
            applied_operations=_int(row.get("applied_operations")),
            # the count of lost logs; 0 where the applied table has no such column (yet)
            log_losses=_int(row.get("log_losses")),
        )
    return figures


def _int(value: Any) -> int:
    if value is None or value == b"" or value == "":
        return 0
    return int(value)


class _Families:
    """The metric families of one scrape, filled group by group and pool by pool."""

    def __init__(self) -> None:
        f = dict(_families())
        self.by_name: Mapping[str, Metric] = f
        self.up = _gauge(f["beeorm_async_stats_up"])

    def add_group(self, group: str, figures: GroupFigures) -> None:
        for name, attribute in _GROUP_METRICS:
            _add(self.by_name[name], [group], getattr(figures, attribute))

    def add_pool(self, pool: str, stats: Any) -> None:
        for name, attribute in _POOL_METRICS:
            _add(self.by_name[name], [pool], getattr(stats, attribute))

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.by_name.values())


def _gauge(metric: Metric) -> GaugeMetricFamily:
    assert isinstance(metric, GaugeMetricFamily)
    return metric


def _add(metric: Metric, labels: list[str], value: float) -> None:
    if isinstance(metric, CounterMetricFamily | GaugeMetricFamily):
        metric.add_metric(labels, value)


# (name as exposed, GroupFigures attribute); counters are declared without their _total suffix
_GROUP_METRICS: tuple[tuple[str, str], ...] = (
    ("beeorm_async_pending", "pending"),
    ("beeorm_async_oldest_pending_seconds", "oldest_pending_seconds"),
    ("beeorm_async_dead_letters", "dead_letters"),
    ("beeorm_async_head_attempts", "head_attempts"),
    ("beeorm_async_retries", "retries"),
    ("beeorm_async_applied_batches", "applied_batches"),
    ("beeorm_async_applied_operations", "applied_operations"),
    ("beeorm_async_log_losses", "log_losses"),
)
_POOL_METRICS: tuple[tuple[str, str], ...] = (
    ("beeorm_async_reads_queries", "queries"),
    ("beeorm_async_reads_errors", "errors"),
    ("beeorm_async_reads_timeouts", "timeouts"),
    ("beeorm_async_reads_cancellations", "cancellations"),
    ("beeorm_async_reads_seconds", "total_seconds"),
    ("beeorm_async_reads_queued", "queued"),
    ("beeorm_async_reads_running", "running"),
)
_COUNTERS = {
    "beeorm_async_retries",
    "beeorm_async_applied_batches",
    "beeorm_async_applied_operations",
    "beeorm_async_log_losses",
    "beeorm_async_reads_queries",
    "beeorm_async_reads_errors",
    "beeorm_async_reads_timeouts",
    "beeorm_async_reads_cancellations",
    "beeorm_async_reads_seconds",
}
_HELP = {
    "beeorm_async_pending": "Batches queued and not applied yet.",
    "beeorm_async_oldest_pending_seconds": "Age of the oldest pending batch (0 when none).",
    "beeorm_async_dead_letters": "Dead letters waiting for an operator.",
    "beeorm_async_head_attempts": "Failed attempts of the batch at the head (0: not failing).",
    "beeorm_async_retries": "Temporary MySQL errors the applier retried.",
    "beeorm_async_applied_batches": "Batches applied.",
    "beeorm_async_applied_operations": "Inserts, updates and deletes applied.",
    "beeorm_async_log_losses": "Times the group's log was found lost (Redis data loss).",
    "beeorm_async_reads_queries": "Statements the async reads sent to MySQL (this process).",
    "beeorm_async_reads_errors": "Async-read statements that failed (this process).",
    "beeorm_async_reads_timeouts": "Async-read statements stopped by their timeout.",
    "beeorm_async_reads_cancellations": "Async-read futures cancelled (this process).",
    "beeorm_async_reads_seconds": "Seconds async-read statements spent in MySQL.",
    "beeorm_async_reads_queued": "Async reads waiting for a connection now.",
    "beeorm_async_reads_running": "Async reads running now.",
}


def _families() -> Iterator[tuple[str, Metric]]:
    """Every family, empty, by name."""
    yield (
        "beeorm_async_stats_up",
        GaugeMetricFamily(
            "beeorm_async_stats_up", "1 if the last scrape read Redis and MySQL, else 0."
        ),
    )
    for name, _ in (*_GROUP_METRICS, *_POOL_METRICS):
        label = "pool" if name.startswith("beeorm_async_reads_") else "group"
        family: Metric
        if name in _COUNTERS:
            family = CounterMetricFamily(name, _HELP[name], labels=[label])
        else:
            family = GaugeMetricFamily(name, _HELP[name], labels=[label])
        yield name, family
