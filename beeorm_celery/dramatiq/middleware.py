"""What a Dramatiq worker process of this broker does around its life: check, sweep, stop.

A middleware belongs to one broker, so it runs only in workers of that broker, once per worker
process (``--processes N`` boots N workers, each sweeping; the trigger flags keep their
wake-ups from doubling up).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import MiddlewareError

from beeorm_celery.dramatiq.actor import queue_for
from beeorm_celery.errors import ConfigError

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.worker import GroupWorker, PeriodicSweep
    from beeorm_celery.engine import Engine

logger = logging.getLogger(__name__)


class ServedGroups:
    """Which groups this worker process takes messages for: those whose queue it consumes
    (``--queues``; all when it names none). Told at worker boot; until then, every group."""

    def __init__(self, prefix: str, groups: list[str]) -> None:
        self._prefix = prefix
        self._all = list(groups)
        self._served = list(groups)

    def consuming(self, queues: Collection[str] | None) -> None:
        self._served = [
            g for g in self._all if queues is None or queue_for(g, self._prefix) in queues
        ]

    def __call__(self) -> list[str]:
        return list(self._served)


class WorkerRefused(MiddlewareError):
    """Raised from the boot hook so Dramatiq lets it through (it logs and swallows any other
    exception of a middleware) and the worker process exits; the ``ConfigError`` it comes from
    is its cause, and was logged with its fix."""


class AsyncFlushLifecycle(dramatiq.Middleware):
    """Before the worker consumes anything: the start-up checks (``startup.py``; a fatal one
    raises ``ConfigError`` and the worker process exits). Once it consumes: a sweep of every
    group with a backlog, then one every ``sweep_interval_s`` (``sweep=False``: none). Before it
    shuts down: the sweeping thread stops; Dramatiq lets running messages finish."""

    def __init__(
        self,
        engine: Engine,
        worker: GroupWorker,
        served: ServedGroups,
        queue_prefix: str,
        sweep: bool,
    ) -> None:
        self.engine = engine
        self.served = served
        self.worker = worker
        self.queue_prefix = queue_prefix
        self.sweep = sweep
        self._sweeping: PeriodicSweep | None = None

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        from beeorm_celery.startup import check_at_worker_start

        # --queues given: only those (Dramatiq keeps them as the worker's consumer whitelist);
        # none given: every queue declared on the broker
        whitelist = getattr(worker, "consumer_whitelist", None)
        consumed = set(whitelist) if whitelist else broker.get_declared_queues()
        self.served.consuming(consumed)
        try:
            check_at_worker_start(self.engine, consumed, self.queue_prefix)
        except ConfigError as e:
            raise WorkerRefused(str(e)) from e

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self.sweep and self._sweeping is None:
            self._sweeping = self.worker.start_sweeping()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self._sweeping is not None:
            self._sweeping.stop()
            self._sweeping = None
