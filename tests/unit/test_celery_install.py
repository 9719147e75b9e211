"""Each ``install()`` is independent: its own task, route, waker and worker bootstep."""

from __future__ import annotations

import pytest
from celery import Celery

from beeorm_celery import ConfigError
from beeorm_celery.celery import TASK_NAME, install
from beeorm_celery.celery.broker import TRANSPORT_PATH
from beeorm_celery.celery.task import CeleryWaker
from tests.unit.conftest import offline_engine


def _sweep_steps(app):
    return [s for s in app.steps["worker"] if s.__name__ == "AsyncFlushSweep"]


def test_two_installs_in_one_process_each_sweep_only_their_own_app():
    first, second = offline_engine("one"), offline_engine("two")
    app_a = Celery("a", broker="redis://127.0.0.1:1/0", set_as_current=False)
    app_b = Celery("b", broker="redis://127.0.0.1:1/0", set_as_current=False)
    try:
        task_a = install(app_a, first)
        install(app_b, second)
        assert install(app_a, first) is task_a  # again: the same task, nothing added
        assert len(_sweep_steps(app_a)) == 1 and len(_sweep_steps(app_b)) == 1
        assert _sweep_steps(app_a) != _sweep_steps(app_b)
        assert app_a.tasks[TASK_NAME] is not app_b.tasks[TASK_NAME]
        waker_a, waker_b = first.async_parts.wakers.waker, second.async_parts.wakers.waker
        assert isinstance(waker_a, CeleryWaker) and waker_a.app is app_a
        assert isinstance(waker_b, CeleryWaker) and waker_b.app is app_b
        assert app_a.conf.broker_transport == TRANSPORT_PATH
    finally:
        first.close()
        second.close()


def test_one_engine_wakes_through_one_adapter(offline):
    install(Celery("a", set_as_current=False), offline, harden_redis_broker=False)
    with pytest.raises(ConfigError, match="already wakes workers"):
        install(Celery("b", set_as_current=False), offline)


def test_sweep_false_adds_no_bootstep(offline):
    app = Celery("a", set_as_current=False)
    install(app, offline, sweep=False)
    assert _sweep_steps(app) == []


def test_the_old_transport_path_still_imports():
    from beeorm_celery.broker import Transport as Old
    from beeorm_celery.celery.broker import Transport

    assert Old is Transport
