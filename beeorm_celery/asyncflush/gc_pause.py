"""``collector_paused()``: Python's cyclic garbage collector held off while a drain step runs
(one MySQL transaction: ``TransactionStep.run``, ``joint_step``; as a decorator or a ``with``).

A step decodes up to ``max_operations_per_transaction`` rows, each a handful of new objects
(the operation, its values, ``Decimal`` and ``datetime`` values, the SQL text). Every 700 new
container objects start a collection of the youngest generation, every tenth of those the next,
and so on up to the whole heap of a Celery or Dramatiq worker: measured on an in-process drain
of 40,000 rows, 15% of the worker's CPU per row. The objects a step makes hold no reference
cycles and are freed by reference counting as the step ends, so nothing is left for the
collector to find; the next automatic collection after the step sees whatever else was made.

The collector's switch is per process. Held off only when it was on, and turned on again at the
end: a process that turned it off itself keeps it off. With steps in several threads (Dramatiq's
worker threads), the first to end turns it back on and the others finish with it on. Other
threads of the process (another actor's work) run without it for as long as a step lasts (a
few hundred milliseconds at most here); whatever cycles they leave are collected after it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
