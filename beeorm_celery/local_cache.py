"""In-process LRU caches of entities, kept right across processes through Redis pub/sub."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import redis

logger = logging.getLogger(__name__)

_ABSENT = object()


class LocalCache:
    """An LRU of entity objects (or None: known missing) by id, for one entity."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[int, Any] = OrderedDict()
        self._lock = threading.Lock()
        # Moves on every drop/clear. A reader notes it before asking Redis or MySQL and stores
        # what it got only if it has not moved: otherwise an invalidation that arrived while
        # it was reading (and found nothing to drop) would be undone by the old value, and the
        # stale entity would stay here until something else changed it.
        self._generation = 0

    def get(self, entity_id: int) -> Any:
        """The cached object, None if known missing, or ``_ABSENT`` on a miss."""
        with self._lock:
            value = self._data.get(entity_id, _ABSENT)
            if value is not _ABSENT:
                self._data.move_to_end(entity_id)
            return value

    @property
    def generation(self) -> int:
        return self._generation

    def set(self, entity_id: int, value: Any, if_generation: int | None = None) -> None:
        """Store ``value``; with ``if_generation``, only if nothing was dropped since then."""
        with self._lock:
            if if_generation is not None and if_generation != self._generation:
                return
            self._data[entity_id] = value
            self._data.move_to_end(entity_id)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def drop(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._generation += 1
            for entity_id in ids:
                self._data.pop(entity_id, None)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


def is_absent(value: Any) -> bool:
    return value is _ABSENT


class InvalidationListener:
    """Listens on the invalidation channel and drops what other processes changed.

    Started lazily in each process that uses a local cache (so also in each forked Celery
    worker child). While the subscription is down nothing can be trusted: every local cache is
    cleared on (re)subscribe, and reads during an outage skip the local cache.
    """

    def __init__(
        self,
        client: redis.Redis,
        channel: str,
        on_message: Callable[[dict[str, list[int]]], None],
        on_reset: Callable[[], None],
    ) -> None:
        self.origin = uuid.uuid4().hex
        self._client = client
        self._channel = channel
        self._on_message = on_message
        self._on_reset = on_reset
        self._pid = -1
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._start_lock = threading.Lock()

    @property
    def healthy(self) -> bool:
        return self._pid == os.getpid() and self._subscribed.is_set()

    def ensure_started(self) -> None:
        if self._pid == os.getpid() and self._thread is not None:
            return
        with self._start_lock:
            if self._pid == os.getpid() and self._thread is not None:
                return
            self._pid = os.getpid()
            self.origin = uuid.uuid4().hex  # a forked child is a new origin
            self._stop = threading.Event()
            self._subscribed = threading.Event()
            self._thread = threading.Thread(
                target=self._run, name="beeorm-local-cache-invalidation", daemon=True
            )
            self._thread.start()
        # The first reads wait briefly for the subscription: a message missed now is a stale read
        self._subscribed.wait(timeout=2.0)

    def encode(self, changes: dict[str, list[int]]) -> bytes:
        return json.dumps({"o": self.origin, "c": changes}, separators=(",", ":")).encode()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            pubsub = self._client.pubsub(  # type: ignore[no-untyped-call]
                ignore_subscribe_messages=True
            )
            try:
                pubsub.subscribe(self._channel)
                self._on_reset()  # anything could have changed while we were not listening
                self._subscribed.set()
                backoff = 0.1
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)  # also how fast stop() is noticed
                    if message is not None:
                        self._handle(message.get("data"))
            except (redis.RedisError, OSError) as e:
                self._subscribed.clear()
                logger.warning("local cache invalidation link down (%s); retrying", e)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    pubsub.close()

    def _handle(self, data: Any) -> None:
        try:
            message = json.loads(data)
            if message.get("o") == self.origin:
                return
            changes = {str(t): [int(i) for i in ids] for t, ids in message["c"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("ignoring a malformed local cache invalidation: %r", data)
            return
        self._on_message(changes)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._pid == os.getpid():
            if self._subscribed.is_set():
                # Wake the listener out of get_message() now instead of after its timeout
                # (each engine.close() waited for it). Our own origin: this listener drops it
                # unread; an empty change list: every other process does nothing with it.
                with contextlib.suppress(redis.RedisError, OSError):
                    self._client.publish(self._channel, self.encode({}))
            self._thread.join(timeout=3)
        self._thread = None
