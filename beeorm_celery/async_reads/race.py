"""``race(*futures)``: the first successful result; the losers are cancelled (killed in MySQL)."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future, InvalidStateError
from functools import partial
from typing import TypeVar

from beeorm_celery.errors import AllQueriesFailedError

T = TypeVar("T")


def race_future(*futures: Future[T]) -> Future[T]:
    """A future for the first of ``futures`` to succeed; it never blocks the caller.

    When one succeeds the others are cancelled (a running ``QueryFuture`` is killed in MySQL)
    before the returned future gets the result. When all fail it gets ``AllQueriesFailedError``
    with every error, in the order of ``futures``. Cancelling it cancels all of them.
    Use this one from asyncio: ``await asyncio.wrap_future(race_future(a, b))``.
    """
    if not futures:
        raise ValueError("race needs at least one future")
    outcome: Future[T] = Future()
    lock = threading.Lock()
    errors: list[BaseException | None] = [None] * len(futures)
    state = {"left": len(futures), "decided": False}

    def cancel_all_but(keep: Future[T] | None) -> None:
        for other in futures:
            if other is not keep:
                other.cancel()

    def on_done(index: int, future: Future[T]) -> None:
        error: BaseException | None = CancelledError() if future.cancelled() else future.exception()
        with lock:
            if state["decided"]:
                return
            if error is not None:
                errors[index] = error
                state["left"] -= 1
                if state["left"]:
                    return
            state["decided"] = True
        try:
            if error is None:
                cancel_all_but(future)  # first, so the losers are gone when the caller wakes
                outcome.set_result(future.result())
            else:
                outcome.set_exception(AllQueriesFailedError([e for e in errors if e is not None]))
        except InvalidStateError:
            pass  # the caller cancelled the race meanwhile; nothing is waiting for this

    def on_outcome(done: Future[T]) -> None:
        if done.cancelled():
            cancel_all_but(None)

    outcome.add_done_callback(on_outcome)
    for index, future in enumerate(futures):
        future.add_done_callback(partial(on_done, index))
    return outcome


def race(*futures: Future[T], timeout: float | None = None) -> T:
    """Block until the first of ``futures`` succeeds and return its result.

    The others are cancelled, so their queries are killed in MySQL. Raises
    ``AllQueriesFailedError`` (``.errors``: each future's exception, in order) when none
    succeeds, and ``TimeoutError`` after ``timeout`` seconds (then every future is cancelled).
    """
    outcome = race_future(*futures)
    try:
        return outcome.result(timeout)
    except TimeoutError:
        outcome.cancel()
        raise
