"""Celery settings for the example worker, chosen for applying async-flush batches.

Read at the edge (worker start), so the environment can override the broker.
"""

import os

# The same local Redis as the data by default; any Celery broker works (RabbitMQ too).
broker_url = os.environ.get("BEEORM_BROKER_URL", "redis://127.0.0.1:6379/0")

# Ack after the task ran: a worker killed mid-batch leaves its message to be redelivered.
# Redelivery is safe: the applied position in MySQL makes a repeated batch a no-op.
task_acks_late = True
task_reject_on_worker_lost = True

# One message at a time per process: a task may drain a group for seconds, and prefetched
# messages would wait behind it instead of going to an idle process.
worker_prefetch_multiplier = 1

# With the Redis broker an unacked message comes back after this long if its worker vanished.
# A task runs for a few seconds at most (drain_budget_s), so ten minutes is a wide margin; the
# periodic sweep re-triggers a stalled group long before that anyway.
broker_transport_options: dict[str, object] = {"visibility_timeout": 600}

# Several apps can share one Redis broker database: BEEORM_BROKER_KEY_PREFIX puts every key
# kombu writes (queues, bindings, unacked messages) under that prefix, so `make demo` can use
# and then delete its own queues without touching anyone else's. Redis transport only.
if os.environ.get("BEEORM_BROKER_KEY_PREFIX"):
    broker_transport_options["global_keyprefix"] = os.environ["BEEORM_BROKER_KEY_PREFIX"]

# Nothing reads task results: the outcome is in MySQL and in engine.async_stats().
task_ignore_result = True

# Events for Flower (also switch them on with `celery worker -E`).
worker_send_task_events = True
task_send_sent_event = True

broker_connection_retry_on_startup = True
