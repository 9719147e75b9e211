"""Which log ids count as "from the future", and when the sweep wakes such a group."""

from __future__ import annotations

from beeorm_celery.asyncflush.future_ids import FUTURE_TOLERANCE_MS, due, jumped_ahead

NOW = 1_800_000_000_000.0
FAR = int(NOW) + 50 * FUTURE_TOLERANCE_MS


def test_an_id_far_ahead_of_the_clock_and_of_the_one_before_is_garbage() -> None:
    assert jumped_ahead(f"{FAR}-0", f"{int(NOW) - 5}-3", NOW)
    assert jumped_ahead(f"{FAR}-0", "0-0", NOW)  # a new group, or the first after a loss


def test_batches_queued_after_such_an_id_are_not() -> None:
    # Redis hands out ids above the highest in the stream: these follow the garbage entry.
    assert not jumped_ahead(f"{FAR}-1", f"{FAR}-0", NOW)
    assert not jumped_ahead(f"{FAR}-7", f"{FAR}-6", NOW)


def test_a_clock_a_little_ahead_is_not_garbage() -> None:
    assert not jumped_ahead(f"{int(NOW) + 60_000}-0", f"{int(NOW) - 10}-0", NOW)


def test_the_sweep_wakes_a_group_whose_oldest_id_is_in_the_future() -> None:
    assert due(FAR, NOW, 5.0)
    assert due(int(NOW) - 6_000, NOW, 5.0)
    assert not due(int(NOW) - 1_000, NOW, 5.0)
