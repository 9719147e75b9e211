"""The engine ``beeorm-celery --engine`` loads in CLI tests, built from the environment.

Same variables as ``worker_app``: BEEORM_TEST_DB_URL, BEEORM_TEST_REDIS_URL, BEEORM_TEST_PREFIX
and BEEORM_TEST_ASYNC. ``build`` reads them when called (``--engine ...cli_engine:build``);
``engine`` is built at import when they are set (``--engine ...cli_engine:engine``), like an
application's ``myapp.orm:engine``. Importing it without them builds nothing.
"""

from __future__ import annotations

import json
import os

from beeorm_celery import AsyncFlushSettings, Engine, Registry
from tests.support import models


def build() -> Engine:
    # not worker_app.build_engine: importing worker_app builds a Celery app and needs a broker
    async_options = json.loads(os.environ.get("BEEORM_TEST_ASYNC", "{}"))
    registry = Registry(
        key_prefix=os.environ["BEEORM_TEST_PREFIX"],
        async_flush=AsyncFlushSettings(**async_options),
    )
    registry.register_mysql(os.environ["BEEORM_TEST_DB_URL"])
    registry.register_redis(os.environ["BEEORM_TEST_REDIS_URL"])
    registry.register_entity(*models.ALL)
    return registry.validate()


if "BEEORM_TEST_DB_URL" in os.environ:
    engine = build()

not_an_engine = "a string"


def broken_factory() -> Engine:
    raise RuntimeError("the factory could not reach its settings")
