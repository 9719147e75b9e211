"""The shop's engine. Configuration is read here, at the application's edge, from the environment:

BEEORM_MYSQL_URL   (default mysql://root@127.0.0.1:3306/test)
BEEORM_REDIS_URL   (default redis://127.0.0.1:6379/0)
BEEORM_KEY_PREFIX  (default shop)
BEEORM_SIGNING_SECRET  (optional: sign batches; producers and workers need the same one)
"""

from __future__ import annotations

import os

from beeorm_celery import AsyncFlushSettings, Engine, Registry
from shop.models import ENTITIES


def build_engine() -> Engine:
    registry = Registry(
        key_prefix=os.environ.get("BEEORM_KEY_PREFIX", "shop"),
        async_flush=AsyncFlushSettings(signing_secret=os.environ.get("BEEORM_SIGNING_SECRET")),
    )
    registry.register_mysql(os.environ.get("BEEORM_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"))
    registry.register_redis(os.environ.get("BEEORM_REDIS_URL", "redis://127.0.0.1:6379/0"))
    registry.register_entity(*ENTITIES)
    return registry.validate()


engine = build_engine()
