"""The Dramatiq actor that applies a group (``beeorm_celery.apply``) and the waker that sends it.

One actor serves every group; its messages travel on queue ``<prefix><group>`` (``beeorm.G``),
which ``install`` declares for each group so that ``dramatiq ... --queues beeorm.G`` consumes
exactly the groups named. A temporary error re-sends the message after the library's backoff,
for as long as it takes, and acknowledges the one that failed: Dramatiq's ``Retries`` (20
attempts, then its dead-letter queue ``.XQ``) never gets to drop a wake-up.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.message import Message

from beeorm_celery.asyncflush.transport import WakeUp
from beeorm_celery.asyncflush.worker import GroupWorker
from beeorm_celery.errors import TemporaryApplyError

ACTOR_NAME = "beeorm_celery.apply"
DEFAULT_QUEUE_PREFIX = "beeorm."
# The keyword a re-sent message carries: which retry this is (1, 2, ...), for the backoff.
ATTEMPT = "attempt"

logger = logging.getLogger(__name__)


def queue_for(group: str, prefix: str = DEFAULT_QUEUE_PREFIX) -> str:
    return f"{prefix}{group}"


def wake_message(group: str, prefix: str, batch_id: str | None, attempt: int = 0) -> Message[Any]:
    kwargs: dict[str, Any] = {ATTEMPT: attempt} if attempt else {}
    return Message(
        queue_name=queue_for(group, prefix),
        actor_name=ACTOR_NAME,
        args=(group, batch_id),
        kwargs=kwargs,
        options={},
    )


class DramatiqWaker:
    """Wakes group G by enqueueing the apply actor's message on queue ``<prefix>G``."""

    def __init__(self, broker: dramatiq.Broker, prefix: str) -> None:
        self.broker = broker
        self.prefix = prefix

    def wake(self, wake: WakeUp) -> None:
        self.broker.enqueue(wake_message(wake.group, self.prefix, wake.batch_id))

    def __repr__(self) -> str:
        return f"DramatiqWaker({type(self.broker).__name__}, queues {self.prefix}<group>)"


def _retry_options(broker: dramatiq.Broker, worker: GroupWorker) -> dict[str, Any]:
    """Options for Dramatiq's own middleware, in case an exception ever escapes the actor (it
    catches everything it can): no retry limit, no age limit, the library's backoff bounds.
    Only options some middleware of ``broker`` knows are passed (Dramatiq refuses others)."""
    settings = worker.parts.settings
    wanted: dict[str, Any] = {
        "max_retries": None,
        "min_backoff": max(1, int(settings.retry_backoff_s * 1000)),
        "max_backoff": max(1, int(settings.retry_backoff_max_s * 1000)),
        "max_age": None,
    }
    return {k: v for k, v in wanted.items() if k in broker.actor_options}


def register_actor(
    broker: dramatiq.Broker, worker: GroupWorker, prefix: str
) -> dramatiq.Actor[..., None]:
    """Declare ``ACTOR_NAME`` on ``broker`` and a queue per group: one message =
    ``worker.handle(group)``."""

    def apply_batches(*args: Any, **kwargs: Any) -> None:
        group = args[0] if args else None
        batch_id = args[1] if len(args) > 1 else None
        attempt = kwargs.pop(ATTEMPT, 0)
        if not worker.knows(group) or len(args) > 2 or kwargs or not isinstance(attempt, int):
            logger.error(
                "ignoring %s with arguments %r %r: not (group, batch id) for an async group of "
                "this engine (%s)",
                ACTOR_NAME,
                args,
                kwargs,
                ", ".join(worker.groups),
            )
            return
        assert isinstance(group, str)
        try:
            worker.handle(group)
        except TemporaryApplyError as e:
            _send_retry(broker, worker, prefix, group, batch_id, attempt + 1, e, logging.WARNING)
        except Exception as e:
            # Not known to be temporary, but the message is only a trigger and the batch stays
            # at the head of its log: retrying the wake-up is safe; dropping it would stall the
            # group until a sweep. Said loudly, with the traceback.
            logger.exception("%s for group %r failed", ACTOR_NAME, group)
            _send_retry(broker, worker, prefix, group, batch_id, attempt + 1, e, logging.ERROR)

    declare = dramatiq.actor(
        actor_name=ACTOR_NAME,
        # the actor's own queue is only where a plain ``.send()`` would go; wake-ups name theirs
        queue_name=queue_for(worker.groups[0] if worker.groups else "default", prefix),
        broker=broker,
        **_retry_options(broker, worker),
    )
    return declare(apply_batches)


def _send_retry(
    broker: dramatiq.Broker,
    worker: GroupWorker,
    prefix: str,
    group: str,
    batch_id: Any,
    attempt: int,
    error: BaseException,
    level: int,
) -> None:
    delay_s = worker.retry_delay_s(attempt)
    message = wake_message(group, prefix, batch_id if isinstance(batch_id, str) else None, attempt)
    # Raising here (the broker is gone) leaves the message unacknowledged-then-failed to
    # Dramatiq's Retries, configured without a limit by _retry_options.
    broker.enqueue(message, delay=max(1, int(delay_s * 1000)))
    logger.log(
        level,
        "group %r: retry %d in %.1fs after %s: %s",
        group,
        attempt,
        delay_s,
        type(error).__name__,
        error,
    )
