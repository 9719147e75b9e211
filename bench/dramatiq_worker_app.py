"""The Dramatiq app bench workers run: ``dramatiq bench.dramatiq_worker_app``.

The environment of ``bench.worker_app`` (BENCH_MYSQL_URL, BENCH_REDIS_URL, BENCH_BROKER_URL,
BENCH_PREFIX, BENCH_READY_FILE), and BENCH_DRAMATIQ_WORKER=1. The broker is a RedisBroker on
BENCH_BROKER_URL whose keys are under the run's prefix; besides the apply actor it has the
naive baseline's actor (one autocommit INSERT per message).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dramatiq

from beeorm_celery.dramatiq import broker_from_url, install
from bench.celery_app import _NAIVE_SQL as NAIVE_SQL
from bench.celery_app import NAIVE_QUEUE, NAIVE_TASK, _per_process_connection, build_engine


def namespace(prefix: str) -> str:
    """Dramatiq's keys under the run's prefix: deleted with the run's other keys."""
    return f"{prefix}:q:dramatiq"


def register_naive_actor(broker: dramatiq.Broker, mysql_url: str) -> dramatiq.Actor[..., None]:
    """The naive write-behind as one writes it with Dramatiq: an actor message per row, one
    INSERT each, Dramatiq's defaults otherwise."""
    connection = _per_process_connection(mysql_url, autocommit=True)

    def naive_insert(row: list[Any]) -> None:
        with connection().cursor() as cursor:
            cursor.execute(NAIVE_SQL, row)

    declare = dramatiq.actor(actor_name=NAIVE_TASK, queue_name=NAIVE_QUEUE, broker=broker)
    return declare(naive_insert)


class ReadyFile(dramatiq.Middleware):
    """Creates BENCH_READY_FILE once a worker process consumes (the bench waits for it)."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self.path:
            Path(self.path).write_text(str(os.getpid()))


if os.environ.get("BENCH_DRAMATIQ_WORKER"):  # set by the launcher: the bench imports us too
    engine = build_engine(
        os.environ["BENCH_MYSQL_URL"], os.environ["BENCH_REDIS_URL"], os.environ["BENCH_PREFIX"]
    )
    broker = broker_from_url(
        os.environ["BENCH_BROKER_URL"], namespace=namespace(os.environ["BENCH_PREFIX"])
    )
    dramatiq.set_broker(broker)
    install(broker, engine)
    register_naive_actor(broker, os.environ["BENCH_MYSQL_URL"])
    broker.add_middleware(ReadyFile(os.environ.get("BENCH_READY_FILE")))
