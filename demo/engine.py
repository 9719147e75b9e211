"""The demo's engines and its producer-side Celery app, built like shop/orm.py and worker/."""

from __future__ import annotations

import os

from celery import Celery

from beeorm_celery import AsyncFlushSettings, Engine, Registry
from beeorm_celery.celery import install
from demo.config import DemoConfig
from shop.models import ENTITIES

# The producer creates thousands of entities: reserve ids a thousand per Redis round trip
# instead of one (ids then follow creation order per process, not across processes).
PRODUCER_ID_BLOCK_SIZE = 1000


def build_engine(config: DemoConfig, id_block_size: int = 1) -> Engine:
    """An engine on the demo's database and key prefix, as ``shop.orm.build_engine`` makes."""
    registry = Registry(
        key_prefix=config.key_prefix,
        id_block_size=id_block_size,
        async_flush=AsyncFlushSettings(signing_secret=config.signing_secret),
    )
    registry.register_mysql(config.mysql_url)
    registry.register_redis(config.redis_url)
    registry.register_entity(*ENTITIES)
    return registry.validate()


def connect_producer(config: DemoConfig, engine: Engine) -> Celery:
    """A Celery app configured exactly as the worker's (``celeryconfig``), wired to ``engine``.

    celeryconfig reads the environment when imported; the demo sets the same variables it
    hands to the worker process, so both sides agree on the broker and its key prefix.
    """
    os.environ.update(config.worker_env)
    app = Celery("worker")
    app.config_from_object("celeryconfig")
    # The sweep belongs in workers (a worker bootstep of their app); a producer only publishes.
    install(app, engine, sweep=False)
    return app
