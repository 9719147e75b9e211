"""``packets``: a step's statements joined into packets, in order, each within the byte limit."""

from __future__ import annotations

import itertools
from typing import Any

from beeorm_celery.asyncflush.packed import packets


def test_packets_keep_order_and_stay_under_the_limit() -> None:
    planned: list[tuple[str, list[Any]]] = [(f"S{n} " + "x" * (n * 7 % 40), []) for n in range(60)]
    planned.insert(30, ("BIG " + "y" * 500, []))  # larger than a packet: alone
    planned.insert(10, ("é" * 30, []))  # 60 bytes in utf8mb4, 30 characters
    limit = 200
    made = packets(planned, limit)
    assert [part for p in made for part in p.parts] == planned
    for packet in made:
        assert packet.text == ";".join(sql for sql, _ in packet.parts)
        size = len(packet.text.encode())
        assert size <= limit or len(packet.parts) == 1
    assert any(len(p.parts) == 1 and p.text.startswith("BIG") for p in made)
    # full enough: no two neighbours would have fitted in one
    for a, b in itertools.pairwise(made):
        assert len((a.text + ";" + b.parts[0][0]).encode()) > limit
