"""``Page``: one page of a search with the total count, what ``paginate_async`` gives."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """``items`` of page ``page`` (from 1), ``per_page`` at most, out of ``total`` matches."""

    items: list[T]
    total: int
    page: int
    per_page: int

    @property
    def last_page(self) -> int:
        """The number of the last page; 1 when nothing matched (page 1 exists, empty)."""
        return max(1, -(-self.total // self.per_page))

    @property
    def has_next(self) -> bool:
        return self.page < self.last_page

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
