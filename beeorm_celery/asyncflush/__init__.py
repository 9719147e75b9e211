"""The async flush core: batches, the per-group log, the applier, dead letters, statistics.

Nothing here knows Celery: ``consume_async_flush_events`` and the Celery task (see
``beeorm_celery.celery``) drive the same ``Applier``.
"""
