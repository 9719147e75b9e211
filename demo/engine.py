"""The demo's engines and its producer side (a Celery app, or a Dramatiq broker), built like
shop/orm.py, worker/ and worker_dramatiq.py."""

from __future__ import annotations

import os
from typing import Any

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


def connect_producer_for(config: DemoConfig, engine: Engine) -> Any:
    """The producer side of ``config.backend``: a Celery app, or a Dramatiq broker."""
    if config.backend == "dramatiq":
        return connect_dramatiq_producer(config, engine)
    return connect_producer(config, engine)


def connect_dramatiq_producer(config: DemoConfig, engine: Engine) -> Any:
    """A Dramatiq broker built as ``worker_dramatiq.py`` builds it, wired to ``engine``."""
    from beeorm_celery.dramatiq import broker_from_url
    from beeorm_celery.dramatiq import install as install_dramatiq

    env = config.worker_env
    broker = broker_from_url(
        env["BEEORM_DRAMATIQ_BROKER_URL"], namespace=env["BEEORM_DRAMATIQ_NAMESPACE"]
    )
    install_dramatiq(broker, engine, sweep=False)
    return broker
