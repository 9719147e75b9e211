"""The Celery task that applies a group (``beeorm_celery.apply``) and the waker that sends it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import Celery

from beeorm_celery.celery.routes import TASK_NAME, queue_for
from beeorm_celery.errors import TemporaryApplyError

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.transport import WakeUp
    from beeorm_celery.asyncflush.worker import GroupWorker

logger = logging.getLogger(__name__)


class CeleryWaker:
    """Wakes group G by sending ``app``'s apply task to queue ``<prefix>G``."""

    def __init__(self, app: Celery, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    def wake(self, wake: WakeUp) -> None:
        # args (group, batch id or None): the batch id only tells people which flush woke it
        self.app.tasks[TASK_NAME].apply_async(
            args=(wake.group, wake.batch_id),
            queue=queue_for(wake.group, self.prefix),
            argsrepr=wake.summary,
        )

    def __repr__(self) -> str:
        return f"CeleryWaker(app {self.app.main!r}, queues {self.prefix}<group>)"


def register_task(app: Celery, worker: GroupWorker) -> Any:
    """Register ``TASK_NAME`` on ``app``: one message = ``worker.handle(group)``; a temporary
    error retries the message with the library's backoff settings, for as long as it takes."""
    settings = worker.parts.settings

    @app.task(  # type: ignore[untyped-decorator]
        name=TASK_NAME,
        shared=False,  # Celery would otherwise add it to every app created later
        bind=True,
        acks_late=True,  # a worker killed mid-batch leaves the message to be redelivered
        reject_on_worker_lost=True,
        ignore_result=True,
        autoretry_for=(TemporaryApplyError,),
        retry_backoff=max(1, round(settings.retry_backoff_s)),
        retry_backoff_max=int(settings.retry_backoff_max_s),
        retry_jitter=True,
        max_retries=None,  # a temporary error waits as long as it takes; nothing is dropped
    )
    def apply_batches(
        self: Any, group: Any = None, batch_id: Any = None, *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        if not worker.knows(group):
            logger.error(
                "ignoring %s with arguments %r: %r is not an async group of this engine (%s)",
                TASK_NAME,
                (group, batch_id, *args),
                group,
                ", ".join(worker.groups),
            )
            return {"ignored": True, "reason": "unknown group"}
        return worker.handle(group).as_dict()

    return apply_batches
