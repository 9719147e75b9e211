"""Celery adapter: ``install(app, engine)``.

Registers the task that applies a group's batches (``beeorm_celery.apply``), routes group ``G`` to
queue ``beeorm.G``, attaches a waker so ``flush_async()`` on ``engine`` sends that task through
``app``, and adds a worker bootstep that sweeps pending groups when a worker of ``app`` starts and
every ``sweep_interval_s``. Everything a worker does with a message is the transport-free
``GroupWorker``'s; this package only maps it onto Celery. The task is only a trigger: the batches
live in the group's log, so a lost or duplicated message delays nothing for long and doubles
nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Celery

from beeorm_celery.asyncflush.worker import GroupWorker
from beeorm_celery.celery.bootstep import startup_check_step, sweep_step
from beeorm_celery.celery.routes import (
    DEFAULT_QUEUE_PREFIX,
    TASK_NAME,
    add_route,
    queue_for,
    served_groups,
    use_hardened_transport,
)
from beeorm_celery.celery.settings import recommended_settings
from beeorm_celery.celery.task import CeleryWaker, register_task
from beeorm_celery.errors import ConfigError

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine

__all__ = [
    "install",
    "recommended_settings",
    "queue_for",
    "CeleryWaker",
    "TASK_NAME",
    "DEFAULT_QUEUE_PREFIX",
]


def install(
    app: Celery,
    engine: Engine,
    *,
    queue_prefix: str = DEFAULT_QUEUE_PREFIX,
    sweep: bool = True,
    harden_redis_broker: bool = True,
) -> Any:
    """Wire ``engine``'s async flush to ``app``; returns the registered task.

    Run workers on the group queues: ``celery -A worker worker -Q beeorm.default,beeorm.catalog``.
    With a Redis broker and no ``broker_transport`` of your own, the worker uses
    ``beeorm_celery.celery.broker``'s transport, which moves garbage found in a queue aside
    instead of letting it stop the worker (``harden_redis_broker=False`` keeps kombu's).
    ``sweep=False`` leaves sweeping to other processes (a producer-only app).

    Installing the same engine into the same app again returns the task installed first.
    """
    existing = app.tasks.get(TASK_NAME) if app.tasks else None
    if existing is not None:
        if getattr(existing, "_beeorm_engine", None) is not engine:
            raise ConfigError(f"{app.main!r} already has {TASK_NAME} installed for another engine")
        return existing
    parts = engine.async_parts
    waker = CeleryWaker(app, queue_prefix)
    worker = GroupWorker(
        parts, waker, served=lambda: served_groups(app, queue_prefix, sorted(parts.async_groups))
    )
    parts.wakers.attach(waker)  # refuses a second adapter on this engine before anything else
    task = register_task(app, worker)
    task._beeorm_engine = engine  # lets a second install() into this app recognise it
    add_route(app, queue_prefix)
    if harden_redis_broker:
        use_hardened_transport(app)
    app.steps["worker"].add(startup_check_step(engine, queue_prefix))
    if sweep:
        app.steps["worker"].add(sweep_step(worker))
    return task
