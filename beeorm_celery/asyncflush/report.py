"""What one transaction step did (``Outcome``) and what a drain did in all (``DrainReport``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Outcome(Enum):
    PROGRESS = "progress"  # something was applied, skipped or dead-lettered
    EMPTY = "empty"  # nothing pending
    BUSY = "busy"  # another worker holds the group


@dataclass
class DrainReport:
    group: str
    applied_batches: int = 0
    applied_operations: int = 0
    dead_lettered: int = 0
    busy: bool = False
    more: bool = False  # stopped by the time budget or for another group, with batches left

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def add(self, other: DrainReport) -> None:
        """Count ``other``'s work into this total."""
        self.applied_batches += other.applied_batches
        self.applied_operations += other.applied_operations
        self.dead_lettered += other.dead_lettered
