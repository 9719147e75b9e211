"""Async reads (placeholder until issue 4 lands)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Page(Generic[T]):
    pass


class QueryStats:
    pass


class QueryRunner:
    def __init__(self, engine: Any, workers: int) -> None:
        raise NotImplementedError


def race(*futures: Any) -> Any:
    raise NotImplementedError
