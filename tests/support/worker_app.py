"""The Celery app that test workers run: ``celery -A tests.support.worker_app worker``.

Everything comes from the environment the test sets (this is the edge where that belongs):
BEEORM_TEST_DB_URL, BEEORM_TEST_REDIS_URL, BEEORM_TEST_PREFIX, BEEORM_TEST_BROKER_URL and
BEEORM_TEST_ASYNC (JSON keyword arguments of AsyncFlushSettings), and optionally
BEEORM_TEST_MODELS (which entities: ``models`` by default, or ``releases.RELEASE_2``...).
"""

from __future__ import annotations

import importlib
import json
import os

from celery import Celery

from beeorm_celery import AsyncFlushSettings, Engine, Entity, Registry
from beeorm_celery.celery import install, recommended_settings
from tests.support import models


def entities_named(name: str | None) -> tuple[type[Entity], ...]:
    """``None``: the usual test models; ``"module.ATTR"``: a tuple in ``tests.support.module``."""
    if not name:
        return models.ALL
    module, _, attr = name.rpartition(".")
    found = getattr(importlib.import_module(f"tests.support.{module}"), attr)
    return tuple(found)


def build_engine(
    db_url: str,
    redis_url: str,
    prefix: str,
    async_options: dict[str, object],
    entities: tuple[type[Entity], ...] = models.ALL,
) -> Engine:
    registry = Registry(key_prefix=prefix, async_flush=AsyncFlushSettings(**async_options))  # type: ignore[arg-type]
    registry.register_mysql(db_url)
    registry.register_redis(redis_url)
    registry.register_entity(*entities)
    return registry.validate()


def engine_from_env() -> Engine:
    """The engine a worker process builds from what ``workers.worker_env`` gave it."""
    return build_engine(
        os.environ["BEEORM_TEST_DB_URL"],
        os.environ["BEEORM_TEST_REDIS_URL"],
        os.environ["BEEORM_TEST_PREFIX"],
        json.loads(os.environ.get("BEEORM_TEST_ASYNC", "{}")),
        entities_named(os.environ.get("BEEORM_TEST_MODELS")),
    )


def build_app(broker_url: str, prefix: str) -> Celery:
    app = Celery("beeorm_test_worker")
    app.conf.update(
        recommended_settings(),
        broker_url=broker_url,
        # every test gets its own queues in the shared Redis broker
        broker_transport_options={"global_keyprefix": f"{prefix}:q:", "visibility_timeout": 60},
        worker_hijack_root_logger=False,
    )
    return app


if "BEEORM_TEST_BROKER_URL" in os.environ:
    engine = engine_from_env()
    app = build_app(os.environ["BEEORM_TEST_BROKER_URL"], os.environ["BEEORM_TEST_PREFIX"])
    install(app, engine, queue_prefix=os.environ.get("BEEORM_TEST_QUEUE_PREFIX", "beeorm."))
