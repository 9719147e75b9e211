"""A Dramatiq broker from a URL: ``redis://`` gives a ``RedisBroker``, ``amqp://`` a
``RabbitmqBroker``."""

from __future__ import annotations

import dramatiq

from beeorm_celery.errors import ConfigError


def broker_from_url(url: str, *, namespace: str | None = None) -> dramatiq.Broker:
    """``namespace``: the prefix of every key a ``RedisBroker`` writes (Dramatiq's default is
    ``dramatiq``); it lets several apps share one Redis database. Ignored for RabbitMQ, whose
    queues an app separates with a vhost in the URL or ``install(..., queue_prefix=...)``."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=url, namespace=namespace or "dramatiq")  # type: ignore[no-untyped-call]
    if url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url)
    raise ConfigError(
        f"Dramatiq broker URL {url!r}: expected redis://host:port/db or amqp://user:pass@host/vhost"
    )
