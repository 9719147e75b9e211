"""beeorm-celery: BeeORM's entities, caches and async flush for Python, applied by Celery."""

from __future__ import annotations

from beeorm_celery.async_reads import Page, race
from beeorm_celery.asyncflush.consumer import consume_async_flush_events
from beeorm_celery.asyncflush.settings import AsyncFlushSettings
from beeorm_celery.context import Context
from beeorm_celery.engine import Engine
from beeorm_celery.entity import Entity, Field, Reference
from beeorm_celery.errors import (
    AllQueriesFailedError,
    AsyncFlushError,
    BacklogFullError,
    BeeormError,
    CacheFullError,
    CacheUnavailableError,
    ConfigError,
    DatabaseUnavailableError,
    DeadLetterNotFoundError,
    DuplicateKeyError,
    FlushError,
    MalformedBatchError,
    MissingTableError,
    QueryBuildError,
    QueryCancelledError,
    QueryError,
    QueryTimeoutError,
    QueryUnavailableError,
    ReadOnlyEntityError,
    TemporaryApplyError,
    UnavailableError,
    ValidationError,
)
from beeorm_celery.query import Pager, Where
from beeorm_celery.registry import Registry

__version__ = "0.1.0"

__all__ = [
    # declaring entities
    "Entity",
    "Field",
    "Reference",
    # setup
    "Registry",
    "Engine",
    "AsyncFlushSettings",
    # unit of work and queries
    "Context",
    "Where",
    "Pager",
    "Page",
    "race",
    # async flush without Celery
    "consume_async_flush_events",
    # errors
    "BeeormError",
    "ConfigError",
    "MissingTableError",
    "ValidationError",
    "ReadOnlyEntityError",
    "FlushError",
    "DuplicateKeyError",
    "QueryError",
    "QueryBuildError",
    "QueryTimeoutError",
    "QueryUnavailableError",
    "QueryCancelledError",
    "AllQueriesFailedError",
    "UnavailableError",
    "CacheUnavailableError",
    "CacheFullError",
    "DatabaseUnavailableError",
    "AsyncFlushError",
    "BacklogFullError",
    "MalformedBatchError",
    "TemporaryApplyError",
    "DeadLetterNotFoundError",
]
