"""Moved to ``beeorm_celery.celery.broker``; this name stays importable because apps may name
``beeorm_celery.broker:Transport`` in their ``broker_transport`` setting."""

from __future__ import annotations

from beeorm_celery.celery.broker import (
    POISON_KEY,
    POISON_MAX_ENTRIES,
    Channel,
    Transport,
    deliverable,
)

TRANSPORT_PATH = "beeorm_celery.broker:Transport"

__all__ = [
    "POISON_KEY",
    "POISON_MAX_ENTRIES",
    "TRANSPORT_PATH",
    "Channel",
    "Transport",
    "deliverable",
]
