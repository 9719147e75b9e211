"""The async flush core: batches, the per-group log, the drain, dead letters, statistics.

Nothing here knows Celery or the ``Engine``: the engine hands in ``AsyncParts`` (``parts.py``),
and ``consume_async_flush_events``, the Celery task (``beeorm_celery.celery``) and any other
adapter drive the same drains (``GroupWorker`` in ``worker.py``; the seam is ``transport.py``).
"""
