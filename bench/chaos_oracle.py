"""The sequential oracle: what MySQL must hold once every batch of one producer has landed.

Each producer owns its rows, so its oracle is exact on its own: it applies the producer's
operations to a dict, in the order ``flush_async()`` returned, and remembers each row's history
(the audit lines the triggers must have written for it, in order). Oracles travel from producer
processes to the run as JSON files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Values = dict[str, Any]  # column -> JSON-able value (Decimal as a string)


@dataclass
class RowOracle:
    table: str
    id: int
    values: Values | None  # the final row; None once deleted
    history: list[tuple[str, int]] = field(default_factory=list)  # (kind, seq) per applied change

    @property
    def key(self) -> str:
        return f"{self.table}:{self.id}"


@dataclass
class Poison:
    """A flush made to fail for good: its INSERT breaks a unique index behind the ORM's back."""

    group: str
    table: str
    id: int  # the id of the INSERT that must be dead-lettered
    name: str  # the unique value both rows claim
    planted_id: int  # the row written straight into MySQL first


@dataclass
class Oracle:
    producer: int
    rows: dict[str, RowOracle] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)  # group -> batches flushed
    poison: list[Poison] = field(default_factory=list)
    flushes: int = 0
    ops: dict[str, int] = field(default_factory=lambda: {"i": 0, "u": 0, "d": 0})
    errors: list[str] = field(default_factory=list)  # what went wrong on the producer's side
    poison_skipped: int = 0  # MySQL was down too long to plant the conflicting row
    refused: int = 0  # flushes and id reservations refused while Redis was down (then redone)

    def to_json(self) -> str:
        return json.dumps(
            {
                "producer": self.producer,
                "rows": [
                    {"t": r.table, "id": r.id, "v": r.values, "h": r.history}
                    for r in self.rows.values()
                ],
                "batches": self.batches,
                "poison": [p.__dict__ for p in self.poison],
                "flushes": self.flushes,
                "ops": self.ops,
                "errors": self.errors,
                "poison_skipped": self.poison_skipped,
                "refused": self.refused,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Oracle:
        data = json.loads(text)
        oracle = cls(
            producer=int(data["producer"]),
            batches={str(g): int(n) for g, n in data["batches"].items()},
            poison=[Poison(**p) for p in data["poison"]],
            flushes=int(data["flushes"]),
            ops={str(k): int(n) for k, n in data["ops"].items()},
            errors=list(data["errors"]),
            poison_skipped=int(data["poison_skipped"]),
            refused=int(data.get("refused", 0)),
        )
        for raw in data["rows"]:
            row = RowOracle(raw["t"], int(raw["id"]), raw["v"], [(k, int(s)) for k, s in raw["h"]])
            oracle.rows[row.key] = row
        return oracle

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)  # the run never reads half a file

    @classmethod
    def load(cls, path: Path) -> Oracle:
        return cls.from_json(path.read_text(encoding="utf-8"))
