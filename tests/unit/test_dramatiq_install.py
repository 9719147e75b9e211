"""``beeorm_celery.dramatiq.install``: an actor, a queue per group, a waker, a middleware; and the
base install and the Celery path never import Dramatiq."""

from __future__ import annotations

import subprocess
import sys

import pytest
from dramatiq.brokers.stub import StubBroker

from beeorm_celery import ConfigError
from beeorm_celery.asyncflush.transport import WakeReason, WakeUp
from beeorm_celery.dramatiq import ACTOR_NAME, DramatiqWaker, install
from beeorm_celery.dramatiq.middleware import AsyncFlushLifecycle
from tests.support.models import GROUPS
from tests.unit.conftest import offline_engine


def test_install_declares_a_queue_per_group_and_attaches_its_waker(offline):
    broker = StubBroker()
    actor = install(broker, offline)
    assert actor.actor_name == ACTOR_NAME
    assert {f"beeorm.{g}" for g in GROUPS} <= broker.get_declared_queues()
    waker = offline.async_parts.wakers.waker
    assert isinstance(waker, DramatiqWaker) and waker.broker is broker
    assert sum(isinstance(m, AsyncFlushLifecycle) for m in broker.middleware) == 1
    assert install(broker, offline) is actor  # again: the same actor, nothing added
    assert sum(isinstance(m, AsyncFlushLifecycle) for m in broker.middleware) == 1
    # Dramatiq's own retry limit and age limit are off for this actor
    assert actor.options["max_retries"] is None
    assert actor.options["max_age"] is None


def test_a_wake_up_is_a_message_on_the_groups_queue(offline):
    broker = StubBroker()
    install(broker, offline, queue_prefix="shop.")
    offline.async_parts.wakers.waker.wake(WakeUp("notes", WakeReason.NEW_BATCH, "s", "1-0"))
    (message,) = [broker.queues["shop.notes"].get_nowait()]
    assert b'"args":["notes","1-0"]' in message.replace(b" ", b"")
    assert broker.queues["shop.catalog"].qsize() == 0


def test_one_engine_wakes_through_one_adapter(offline):
    install(StubBroker(), offline)
    with pytest.raises(ConfigError, match="already wakes workers"):
        install(StubBroker(), offline)


def test_another_engine_on_the_same_broker_is_refused(offline):
    broker = StubBroker()
    install(broker, offline)
    other = offline_engine("other")
    try:
        with pytest.raises(ConfigError, match="another engine"):
            install(broker, other)
    finally:
        other.close()


def test_the_base_install_and_the_celery_path_do_not_import_dramatiq():
    code = (
        "import sys, beeorm_celery, beeorm_celery.celery, beeorm_celery.cli;"
        "assert 'dramatiq' not in sys.modules, sorted(m for m in sys.modules if 'dramatiq' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_worker_serves_the_groups_whose_queues_it_consumes():
    from beeorm_celery.dramatiq.middleware import ServedGroups

    served = ServedGroups("beeorm.", ["catalog", "counters", "notes"])
    assert served() == ["catalog", "counters", "notes"]  # before boot: every group
    served.consuming({"beeorm.notes", "beeorm.catalog", "default"})
    assert served() == ["catalog", "notes"]
    served.consuming(None)  # no --queues: every declared queue
    assert served() == ["catalog", "counters", "notes"]
