"""A ``Lane``: one MySQL pool's queue of read tasks and its bounded set of workers.

At most ``size`` workers (each a thread with one connection) per pool; they start when work
waits and no worker is free, and stop after ``DEFAULT_WORKER_IDLE_S`` without work.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING

from beeorm_celery.async_reads.killer import Killer
from beeorm_celery.async_reads.worker import Task, Worker
from beeorm_celery.errors import QueryError

if TYPE_CHECKING:
    from beeorm_celery.async_reads.stats import StatsBook
    from beeorm_celery.async_reads.watchdog import Watchdog
    from beeorm_celery.mysql import MySQLPool

DEFAULT_WORKER_IDLE_S = 60.0


class Lane:
    """Tasks go through a ``SimpleQueue``; an idle worker leaves a token in ``_idle`` so that
    ``submit`` knows whether to start another (the scheme of ``ThreadPoolExecutor``)."""

    def __init__(
        self,
        pool: MySQLPool,
        size: int,
        book: StatsBook,
        watchdog: Watchdog,
        idle_s: float = DEFAULT_WORKER_IDLE_S,
    ) -> None:
        self.pool = pool
        self.size = size
        self.book = book
        self.watchdog = watchdog
        self.killer = Killer(pool)
        self.mariadb: bool | None = None  # learnt from the first connection's handshake
        self._idle_s = idle_s
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()  # workers and closed; never held while a task runs
        self._workers: set[Worker] = set()
        self._closed = False
        self._running = 0
        self._running_lock = threading.Lock()

    def submit(self, task: Task) -> None:
        with self._lock:
            if self._closed:
                raise QueryError(f"the query runner of MySQL pool {self.pool.name!r} is closed")
            self._tasks.put(task)
            if self._idle.acquire(blocking=False):
                return  # an idle worker will take it
            if len(self._workers) < self.size:
                worker = Worker(self)
                self._workers.add(worker)
                worker.start()

    def task_done(self) -> None:
        with self._running_lock:
            self._running -= 1
        self._idle.release()

    def next_task(self, worker: Worker) -> Task | None:
        """The next task for ``worker``, or None: it should exit (closed, or idle too long)."""
        while True:
            try:
                task = self._tasks.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    # Leave only with an idle token: without one, a submit counts on us.
                    if self._idle.acquire(blocking=False):
                        self._workers.discard(worker)
                        return None
                continue
            if task is None:  # close()
                return None
            with self._running_lock:
                self._running += 1
            return task

    def gauges(self) -> tuple[int, int]:
        """(queued, running) right now."""
        return self._tasks.qsize(), self._running

    def close(self, wait_s: float) -> None:
        """Cancel what is queued, kill what runs, stop the threads, close the connections."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task.future.cancel()
                task.future.set_running_or_notify_cancel()  # wakes wait() / as_completed()
        for worker in workers:
            self._tasks.put(None)
            worker.cancel_current()
        deadline = time.monotonic() + wait_s
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self.killer.close()
