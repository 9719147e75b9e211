"""The core's waker slot: one waker at a time, attached and detached explicitly."""

from __future__ import annotations

import pytest

from beeorm_celery import ConfigError
from beeorm_celery.asyncflush.transport import WakerSlot, WakeUp


class _Recorder:
    def __init__(self) -> None:
        self.woken: list[WakeUp] = []

    def wake(self, wake: WakeUp) -> None:
        self.woken.append(wake)


def test_a_slot_takes_one_waker_until_it_is_detached():
    slot = WakerSlot()
    assert slot.waker is None
    first = _Recorder()
    slot.attach(first)
    slot.attach(first)  # the same one again changes nothing
    with pytest.raises(ConfigError, match="already wakes workers"):
        slot.attach(_Recorder())
    slot.detach(_Recorder())  # not the attached one: ignored
    assert slot.waker is first
    slot.detach(first)
    second = _Recorder()
    slot.attach(second)
    assert slot.waker is second
