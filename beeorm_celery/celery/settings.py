"""``recommended_settings()``: the Celery settings for workers that apply batches."""

from __future__ import annotations

from typing import Any


def recommended_settings(*, events: bool = True) -> dict[str, Any]:
    """Celery settings for workers that apply batches (``app.conf.update(...)``).

    Acks after the task ran, so a killed worker's message is redelivered (harmless: the applied
    position makes a repeat a no-op); one message per process at a time, so a long drain does not
    hold others back; no results (the outcome is in MySQL and ``async_stats()``); events on for
    Flower. ``celeryconfig.py`` in the repository spells the same out with the reasons.
    """
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "worker_send_task_events": events,
        "task_send_sent_event": events,
        "broker_connection_retry_on_startup": True,
    }
