"""Sweeps and start-up checks in the Celery worker that runs this app, as worker bootsteps.

A bootstep belongs to one app's worker blueprint (``app.steps["worker"]``): it starts only in a
worker of that app, once, however many apps a process builds; global signals would run every
installed sweeper in every worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import bootsteps

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.worker import GroupWorker, PeriodicSweep
    from beeorm_celery.engine import Engine


def sweep_step(worker: GroupWorker) -> type[bootsteps.StartStopStep]:
    """A bootstep class that sweeps ``worker``'s groups at start and every interval."""

    class AsyncFlushSweep(bootsteps.StartStopStep):  # type: ignore[misc]
        # After the pool, so the sweeping thread is not running while prefork forks children.
        requires = ("celery.worker.components:Pool",)
        label = "beeorm async flush sweep"

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.sweeping: PeriodicSweep | None = None

        def start(self, parent: Any) -> None:
            self.sweeping = worker.start_sweeping()

        def stop(self, parent: Any) -> None:
            if self.sweeping is not None:
                self.sweeping.stop()
                self.sweeping = None

        terminate = stop

    return AsyncFlushSweep


def startup_check_step(engine: Engine, queue_prefix: str) -> type[bootsteps.StartStopStep]:
    """A bootstep that says what is wrong when a worker of this app starts (``startup.py``):
    WARNINGs, or a refusal (the worker exits) when no batch could be applied at all."""

    class AsyncFlushStartupCheck(bootsteps.StartStopStep):  # type: ignore[misc]
        # Before the pool: a worker that cannot work stops before forking its children.
        label = "beeorm start-up check"

        def start(self, parent: Any) -> None:
            from beeorm_celery.startup import check_at_worker_start

            consumed = list(parent.app.amqp.queues.consume_from)  # -Q, or every known queue
            check_at_worker_start(engine, consumed, queue_prefix)

    return AsyncFlushStartupCheck
