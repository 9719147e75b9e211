"""Group ``G``'s task goes to queue ``beeorm.G``; a Redis broker gets the hardened transport."""

from __future__ import annotations

from typing import Any

from celery import Celery

from beeorm_celery.celery.broker import TRANSPORT_PATH

TASK_NAME = "beeorm_celery.apply"
DEFAULT_QUEUE_PREFIX = "beeorm."


def queue_for(group: str, prefix: str = DEFAULT_QUEUE_PREFIX) -> str:
    return f"{prefix}{group}"


def served_groups(app: Celery, prefix: str, groups: list[str]) -> list[str]:
    """The groups whose queues this worker process consumes (``-Q``); read in the worker's
    pool process, where the queues were chosen before it forked. Outside a worker: none."""
    consumed = app.amqp.queues.consume_from or {}
    return [g for g in groups if queue_for(g, prefix) in consumed]


def add_route(app: Celery, prefix: str) -> None:
    """Route ``TASK_NAME`` by its first argument (the group), ahead of the app's own routes."""

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


def use_hardened_transport(app: Celery) -> None:
    """Use the transport that moves garbage aside (``broker.py``) for a Redis broker, unless
    the app chose a transport of its own."""
    url = str(app.conf.broker_url or "")
    if app.conf.broker_transport is None and url.startswith(("redis://", "rediss://")):
        app.conf.broker_transport = TRANSPORT_PATH
