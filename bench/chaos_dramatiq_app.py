"""The fault run's Dramatiq app: ``dramatiq bench.chaos_dramatiq_app`` (CHAOS_BACKEND=dramatiq).

The same environment as ``bench.chaos_app``; the broker is a RedisBroker on CHAOS_BROKER_URL
whose keys live under the run's prefix.
"""

from __future__ import annotations

import os

import dramatiq

from beeorm_celery import Engine
from beeorm_celery.dramatiq import broker_from_url, install
from bench.chaos_app import Endpoints, build_engine


def connect_dramatiq(endpoints: Endpoints, sweep: bool) -> tuple[Engine, dramatiq.Broker]:
    engine = build_engine(endpoints)
    broker = broker_from_url(endpoints.broker_url, namespace=endpoints.dramatiq_namespace)
    install(broker, engine, sweep=sweep)
    return engine, broker


if "CHAOS_MYSQL_URL" in os.environ:
    engine, broker = connect_dramatiq(Endpoints.from_env(dict(os.environ)), sweep=True)
    dramatiq.set_broker(broker)
