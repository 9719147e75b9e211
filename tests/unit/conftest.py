"""The unit suite: pure logic, no MariaDB, Redis or broker (``pytest -m "not services"``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from beeorm_celery import Engine, Registry
from tests.support.models import ALL

# Nothing listens here: building an engine opens no connection, and a test that tried would fail.
NOWHERE_MYSQL = "mysql://root@127.0.0.1:1/never_connected"
NOWHERE_REDIS = "redis://127.0.0.1:1/0"


def offline_engine(prefix: str = "unit") -> Engine:
    registry = Registry(key_prefix=prefix)
    registry.register_mysql(NOWHERE_MYSQL)
    registry.register_redis(NOWHERE_REDIS)
    registry.register_entity(*ALL)
    return registry.validate()


@pytest.fixture
def offline() -> Iterator[Engine]:
    """An engine over the test models whose servers do not exist."""
    engine = offline_engine()
    yield engine
    engine.close()
