"""The example Dramatiq app (the Celery one is ``worker/``).

Run it from the repository root with::

    dramatiq worker_dramatiq --processes 2 --threads 4 \\
        --queues beeorm.default beeorm.catalog beeorm.orders

Configuration comes from the environment, read here at the edge:

BEEORM_DRAMATIQ_BROKER_URL  default redis://127.0.0.1:6379/0; amqp://guest:guest@host:5672/ for
                            RabbitMQ
BEEORM_DRAMATIQ_NAMESPACE   the prefix of Dramatiq's keys in a Redis broker (default dramatiq)

and the shop's engine reads BEEORM_MYSQL_URL, BEEORM_REDIS_URL, BEEORM_KEY_PREFIX
(``shop/orm.py``). Web processes that flush do the same three lines: build the broker,
``dramatiq.set_broker``, ``install``.
"""

from __future__ import annotations

import os

import dramatiq

from beeorm_celery.dramatiq import broker_from_url, install
from shop.orm import engine

broker = broker_from_url(
    os.environ.get("BEEORM_DRAMATIQ_BROKER_URL", "redis://127.0.0.1:6379/0"),
    namespace=os.environ.get("BEEORM_DRAMATIQ_NAMESPACE"),
)
dramatiq.set_broker(broker)
install(broker, engine)
