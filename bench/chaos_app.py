"""The fault run's engine and Celery app: ``celery -A bench.chaos_app worker``.

The same builders serve the run itself, its producer processes and its workers. A worker reads
its configuration from the environment the run sets (this module is the worker's edge):
CHAOS_MYSQL_URL, CHAOS_REDIS_URL, CHAOS_BROKER_URL, CHAOS_PREFIX, CHAOS_ASYNC (JSON keyword
arguments of ``AsyncFlushSettings``), CHAOS_RELEASE (which release of the entities, see
``chaos_models.RELEASES``; 1 unless the rolling deploy has begun) and CHAOS_BACKEND
(``celery``, or ``dramatiq``: then the workers run ``bench.chaos_dramatiq_app`` and producers
send through a Dramatiq broker).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from celery import Celery

from beeorm_celery import AsyncFlushSettings, Engine, Registry
from beeorm_celery.celery import install, recommended_settings
from bench.chaos_models import RELEASES


@dataclass(frozen=True)
class Endpoints:
    """Where a fault run keeps its data; everything a process needs to join the run."""

    mysql_url: str
    redis_url: str
    broker_url: str
    prefix: str
    async_options: dict[str, Any]
    release: int = 1
    backend: str = "celery"

    def env(self) -> dict[str, str]:
        return {
            "CHAOS_MYSQL_URL": self.mysql_url,
            "CHAOS_REDIS_URL": self.redis_url,
            "CHAOS_BROKER_URL": self.broker_url,
            "CHAOS_PREFIX": self.prefix,
            "CHAOS_ASYNC": json.dumps(self.async_options),
            "CHAOS_RELEASE": str(self.release),
            "CHAOS_BACKEND": self.backend,
        }

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Endpoints:
        return cls(
            env["CHAOS_MYSQL_URL"],
            env["CHAOS_REDIS_URL"],
            env["CHAOS_BROKER_URL"],
            env["CHAOS_PREFIX"],
            json.loads(env.get("CHAOS_ASYNC", "{}")),
            int(env.get("CHAOS_RELEASE", "1")),
            backend=env.get("CHAOS_BACKEND", "celery"),
        )

    @property
    def queue_key_prefix(self) -> str:
        """kombu's ``global_keyprefix``: every broker key of the run starts with it."""
        return f"{self.prefix}:q:"

    @property
    def dramatiq_namespace(self) -> str:
        """The Dramatiq RedisBroker's namespace: under the run's prefix, deleted with it."""
        return f"{self.prefix}:q:dramatiq"


def build_engine(endpoints: Endpoints) -> Engine:
    registry = Registry(
        key_prefix=endpoints.prefix,
        async_flush=AsyncFlushSettings(**endpoints.async_options),
    )
    registry.register_mysql(endpoints.mysql_url)
    registry.register_redis(endpoints.redis_url)
    registry.register_entity(*RELEASES[endpoints.release].values())
    return registry.validate()


def build_app(endpoints: Endpoints) -> Celery:
    """Configured like celeryconfig.py, with the run's own broker keys."""
    app = Celery("beeorm_chaos")
    app.conf.update(
        recommended_settings(events=False),
        broker_url=endpoints.broker_url,
        broker_transport_options={
            "global_keyprefix": endpoints.queue_key_prefix,
            # Short, so a message held by a SIGKILLed worker comes back within the run; the
            # log and the sweep make it redundant anyway, and the run checks that.
            "visibility_timeout": 30,
        },
        worker_hijack_root_logger=False,
    )
    return app


def connect(endpoints: Endpoints, sweep: bool) -> tuple[Engine, Any]:
    """An engine whose ``flush_async`` publishes through a Celery app (or, with the Dramatiq
    backend, a Dramatiq broker), as in production."""
    if endpoints.backend == "dramatiq":
        from bench.chaos_dramatiq_app import connect_dramatiq

        return connect_dramatiq(endpoints, sweep)
    engine = build_engine(endpoints)
    app = build_app(endpoints)
    install(app, engine, sweep=sweep)
    return engine, app


if "CHAOS_MYSQL_URL" in os.environ and os.environ.get("CHAOS_BACKEND", "celery") == "celery":
    engine, app = connect(Endpoints.from_env(dict(os.environ)), sweep=True)
