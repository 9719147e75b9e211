"""Dramatiq adapter: ``install(broker, engine)``.

Declares the actor that applies a group's batches (``beeorm_celery.apply``) and queue
``beeorm.G`` for each async group ``G``, attaches a waker so ``flush_async()`` on ``engine``
enqueues that actor's message on ``beeorm.G`` through ``broker``, and adds a middleware that checks
the set-up, sweeps pending groups when a worker of ``broker`` boots and every
``sweep_interval_s``, and stops sweeping at shutdown. What a worker does with a message is the
transport-free ``GroupWorker``'s; this package only maps it onto Dramatiq. Works with
``RedisBroker`` and ``RabbitmqBroker``. Producers (web processes) call ``install`` too.

Run workers on the group queues:
``dramatiq worker_dramatiq --queues beeorm.catalog beeorm.default``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dramatiq

from beeorm_celery.asyncflush.worker import GroupWorker
from beeorm_celery.dramatiq.actor import (
    ACTOR_NAME,
    DEFAULT_QUEUE_PREFIX,
    DramatiqWaker,
    queue_for,
    register_actor,
)
from beeorm_celery.dramatiq.brokers import broker_from_url
from beeorm_celery.dramatiq.hardening import harden
from beeorm_celery.dramatiq.middleware import AsyncFlushLifecycle, ServedGroups
from beeorm_celery.errors import ConfigError

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine

__all__ = [
    "install",
    "broker_from_url",
    "queue_for",
    "DramatiqWaker",
    "ACTOR_NAME",
    "DEFAULT_QUEUE_PREFIX",
]


def install(
    broker: dramatiq.Broker,
    engine: Engine,
    *,
    queue_prefix: str = DEFAULT_QUEUE_PREFIX,
    sweep: bool = True,
    harden_redis_broker: bool = True,
) -> dramatiq.Actor[..., Any]:
    """Wire ``engine``'s async flush to ``broker``; returns the declared actor.

    ``sweep=False`` leaves sweeping to other processes. With a ``RedisBroker``, undecodable
    items found in a queue are logged and moved to its ``.XQ`` instead of restarting the
    consumer (``harden_redis_broker=False`` keeps Dramatiq's behaviour). Installing the same
    engine on the same broker again returns the actor declared first.
    """
    existing = broker.actors.get(ACTOR_NAME)
    if existing is not None:
        if getattr(existing, "_beeorm_engine", None) is not engine:
            raise ConfigError(f"this broker already has {ACTOR_NAME} installed for another engine")
        return existing
    parts = engine.async_parts
    waker = DramatiqWaker(broker, queue_prefix)
    served = ServedGroups(queue_prefix, sorted(parts.async_groups))
    worker = GroupWorker(parts, waker, served=served)
    parts.wakers.attach(waker)  # refuses a second adapter on this engine before anything else
    if harden_redis_broker:
        harden(broker)
    actor = register_actor(broker, worker, queue_prefix)
    actor._beeorm_engine = engine  # type: ignore[attr-defined]  # lets a 2nd install() see it
    for group in worker.groups:  # a worker consumes only queues declared when it boots
        broker.declare_queue(queue_for(group, queue_prefix))
    broker.add_middleware(AsyncFlushLifecycle(engine, worker, served, queue_prefix, sweep))
    return actor
