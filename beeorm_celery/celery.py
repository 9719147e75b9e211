"""Celery adapter: ``install(app, engine)``.

Registers the task that applies a group's batches (``beeorm_celery.apply``), routes group ``G`` to
queue ``beeorm.G``, makes ``flush_async()`` on ``engine`` publish through ``app``, and sweeps
pending groups when a worker starts and every ``sweep_interval_s``. The task is only a trigger:
the batches live in the group's log, so a lost or duplicated message delays nothing for long
and doubles nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from celery import Celery, signals

from beeorm_celery.asyncflush.applier import Applier
from beeorm_celery.asyncflush.log import GroupLog
from beeorm_celery.errors import ConfigError, TemporaryApplyError

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine

logger = logging.getLogger(__name__)

TASK_NAME = "beeorm_celery.apply"
DEFAULT_QUEUE_PREFIX = "beeorm."


def recommended_settings(*, events: bool = True) -> dict[str, Any]:
    """Celery settings for workers that apply batches (``app.conf.update(...)``).

    Acks after the task ran, so a killed worker's message is redelivered (harmless: the applied
    position makes a repeat a no-op); one message per process at a time, so a long drain does not
    hold others back; no results (the outcome is in MySQL and ``async_stats()``); events on for
    Flower. ``celeryconfig.py`` in the repository spells the same out with the reasons.
    """
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "worker_send_task_events": events,
        "task_send_sent_event": events,
        "broker_connection_retry_on_startup": True,
    }


def queue_for(group: str, prefix: str = DEFAULT_QUEUE_PREFIX) -> str:
    return f"{prefix}{group}"


class CeleryTriggerPublisher:
    """Publishes the apply task of a group to the group's queue."""

    def __init__(self, task: Any, prefix: str) -> None:
        self.task = task
        self.prefix = prefix

    def publish(self, group: str, batch_id: str, summary: str) -> None:
        self.task.apply_async(
            args=(group, batch_id),
            queue=queue_for(group, self.prefix),
            argsrepr=summary,
        )


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
    ``beeorm_celery.broker``'s transport, which moves garbage found in a queue aside instead of
    letting it stop the worker (``harden_redis_broker=False`` keeps kombu's).
    """
    existing = app.tasks.get(TASK_NAME) if app.tasks else None
    if existing is not None and getattr(existing, "_beeorm_engine", None) is not engine:
        raise ConfigError(f"{app.main!r} already has {TASK_NAME} installed for another engine")
    settings = engine.async_settings

    @app.task(  # type: ignore[untyped-decorator]
        name=TASK_NAME,
        shared=False,  # Celery would otherwise add it to every app created later
        bind=True,
        acks_late=True,  # a worker killed mid-batch leaves the message to be redelivered
        reject_on_worker_lost=True,
        ignore_result=True,
        autoretry_for=(TemporaryApplyError,),
        retry_backoff=max(1, round(settings.retry_backoff_s)),
        retry_backoff_max=int(settings.retry_backoff_max_s),
        retry_jitter=True,
        max_retries=None,  # a temporary error waits as long as it takes; nothing is dropped
    )
    def apply_batches(
        self: Any, group: Any = None, batch_id: Any = None, *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        if not isinstance(group, str) or group not in engine.async_groups:
            logger.error(
                "ignoring %s with arguments %r: %r is not an async group of this engine (%s)",
                TASK_NAME,
                (group, batch_id, *args),
                group,
                ", ".join(sorted(engine.async_groups)),
            )
            return {"ignored": True, "reason": "unknown group"}
        report = Applier(engine, group).drain(should_yield=lambda: _others_waiting(engine, group))
        if report.more:  # time budget spent: queue the rest behind the other groups' tasks
            publisher.publish(group, "more", f"{group}: backlog continues")
        return report.as_dict()

    apply_batches._beeorm_engine = engine
    publisher = CeleryTriggerPublisher(apply_batches, queue_prefix)
    _add_route(app, queue_prefix)
    if harden_redis_broker:
        _harden_redis_broker(app)
    engine.trigger_publisher = publisher
    if sweep:
        _install_sweeper(engine, publisher, settings.sweep_interval_s, settings.sweep_min_age_s)
    return apply_batches


def _others_waiting(engine: Engine, group: str) -> bool:
    """Whether another group's oldest batch has waited past ``yield_after_s``."""
    others = [g for g in engine.async_groups if g != group]
    if not others:
        return False
    limit_ms = engine.async_settings.yield_after_s * 1000
    now_ms = time.time() * 1000
    oldest = GroupLog.oldest_of(engine, others)
    return any(ms is not None and now_ms - ms > limit_ms for ms in oldest)


def _add_route(app: Celery, prefix: str) -> None:
    def route(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
        if name == TASK_NAME and args and isinstance(args[0], str):
            return {"queue": queue_for(args[0], prefix)}
        return None

    current = app.conf.task_routes
    if current is None:
        routers: list[Any] = []
    elif isinstance(current, list | tuple):
        routers = list(current)
    else:
        routers = [current]
    app.conf.task_routes = [route, *routers]


def _harden_redis_broker(app: Celery) -> None:
    from beeorm_celery.broker import TRANSPORT_PATH

    url = str(app.conf.broker_url or "")
    if app.conf.broker_transport is None and url.startswith(("redis://", "rediss://")):
        app.conf.broker_transport = TRANSPORT_PATH


def sweep_once(
    engine: Engine, publisher: CeleryTriggerPublisher, min_age_s: float, trust_trigger: bool
) -> list[str]:
    """Publish a task for each group with a batch pending for ``min_age_s`` or more.

    With ``trust_trigger`` a group whose trigger flag is set is left alone: a task is on its way
    or a worker is applying it (maybe waiting on a lock), and a flag whose holder died expires
    by itself (``trigger_ttl_s``), after which the next sweep wakes the group.
    """
    woken: list[str] = []
    now_ms = time.time() * 1000
    groups = sorted(engine.async_groups)
    for group, oldest in zip(groups, GroupLog.oldest_of(engine, groups), strict=True):
        if oldest is None or now_ms - oldest < min_age_s * 1000:
            continue
        log = GroupLog(engine, group)
        if trust_trigger:
            if not log.claim_trigger():
                continue
        else:
            log.hold_trigger()
        publisher.publish(group, "sweep", f"{group}: sweep of pending batches")
        woken.append(group)
    return woken


def _install_sweeper(
    engine: Engine, publisher: CeleryTriggerPublisher, interval_s: float, min_age_s: float
) -> None:
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval_s):
            try:
                woken = sweep_once(engine, publisher, min_age_s, trust_trigger=True)
                if woken:
                    logger.warning("sweep re-triggered groups with stale batches: %s", woken)
            except Exception:
                logger.exception("async flush sweep failed; trying again in %.0fs", interval_s)

    def on_ready(**_: Any) -> None:
        if engine.log_redis_guard is not None:
            engine.log_redis_guard.report_at_worker_start()
        # At start, flags may be left by a worker that died: wake every group with a backlog.
        try:
            woken = sweep_once(engine, publisher, 0.0, trust_trigger=False)
            if woken:
                logger.info("worker start: triggered groups with pending batches: %s", woken)
        except Exception:
            logger.exception("async flush sweep at worker start failed")
        threading.Thread(target=run, name="beeorm-async-sweep", daemon=True).start()

    def on_shutdown(**_: Any) -> None:
        stop.set()

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutting_down.connect(on_shutdown, weak=False)
