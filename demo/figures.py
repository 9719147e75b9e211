"""Small helpers for the figures the demo prints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-100) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Latency:
    """Wall-clock seconds of each call of one kind."""

    label: str
    seconds: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.seconds, 50)

    @property
    def p90(self) -> float:
        return percentile(self.seconds, 90)

    @property
    def p99(self) -> float:
        return percentile(self.seconds, 99)

    @property
    def max(self) -> float:
        return max(self.seconds) if self.seconds else math.nan


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def split_flush(size: int) -> tuple[int, int]:
    """How a flush of ``size`` entities divides into products (catalog) and orders (orders)."""
    products = max(1, round(size * 0.6))
    return products, max(0, size - products)


def plan_flushes(entities: int, per_flush: int) -> list[tuple[int, int]]:
    """(products, orders) of each flush_async() of the bulk run, ``entities`` in all."""
    plan: list[tuple[int, int]] = []
    left = entities
    while left > 0:
        size = min(per_flush, left)
        plan.append(split_flush(size))
        left -= size
    return plan
