"""Exponential backoff with full jitter."""

from __future__ import annotations

import random


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Seconds to wait before attempt ``attempt`` (1 = the first retry): uniform in [0, cap]."""
    cap = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return random.uniform(0, cap)
