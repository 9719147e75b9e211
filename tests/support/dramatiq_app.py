"""The Dramatiq app that test workers run: ``dramatiq tests.support.dramatiq_app``.

The same environment as ``worker_app`` (BEEORM_TEST_DB_URL, BEEORM_TEST_REDIS_URL,
BEEORM_TEST_PREFIX, BEEORM_TEST_ASYNC), plus BEEORM_TEST_DRAMATIQ_BROKER_URL (``redis://`` or
``amqp://``) and BEEORM_TEST_QUEUE_PREFIX (queue names unique to a test on a shared RabbitMQ).
"""

from __future__ import annotations

import os

import dramatiq

from beeorm_celery.dramatiq import broker_from_url, install
from tests.support.worker_app import engine_from_env


def build_broker(url: str, prefix: str) -> dramatiq.Broker:
    """A RedisBroker whose keys live under ``prefix`` (this test's), or a RabbitmqBroker."""
    return broker_from_url(url, namespace=f"{prefix}-dq")


if "BEEORM_TEST_DRAMATIQ_BROKER_URL" in os.environ:
    engine = engine_from_env()
    broker = build_broker(
        os.environ["BEEORM_TEST_DRAMATIQ_BROKER_URL"], os.environ["BEEORM_TEST_PREFIX"]
    )
    dramatiq.set_broker(broker)
    install(broker, engine, queue_prefix=os.environ.get("BEEORM_TEST_QUEUE_PREFIX", "beeorm."))
