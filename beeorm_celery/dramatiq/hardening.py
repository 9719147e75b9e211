"""Garbage in a Redis queue of Dramatiq: logged, moved to the queue's ``.XQ``, never fatal.

Dramatiq's Redis consumer decodes each fetched message; an undecodable one (bytes written by a
script gone wrong, JSON that is no message) raises out of the consumer, which Dramatiq then
closes and restarts after three seconds, dropping the messages it had prefetched: they stay
"being processed" by this worker until it exits. ``harden`` wraps ``broker.consume`` of one broker
instance so that such an item is logged at ERROR and rejected to the queue's ``.XQ`` (kept there
for an operator for ``dead_message_ttl``, as Dramatiq's RabbitMQ broker already does with
undecodable bodies), and the consumer carries on with the next message.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.errors import DecodeError

logger = logging.getLogger(__name__)

_HARDENED = "_beeorm_hardened"


def harden(broker: dramatiq.Broker) -> None:
    """Make ``broker``'s consumers survive undecodable items (a Redis broker; others are left as
    they are). Idempotent."""
    from dramatiq.brokers.redis import RedisBroker

    if not isinstance(broker, RedisBroker) or getattr(broker, _HARDENED, False):
        return
    plain_consume = broker.consume

    def consume(queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        return _GarbageTolerantConsumer(
            broker, queue_name, plain_consume(queue_name, prefetch, timeout)
        )

    broker.consume = consume  # type: ignore[method-assign]  # this instance only: other brokers keep Dramatiq's
    setattr(broker, _HARDENED, True)


class _GarbageTolerantConsumer(Consumer):
    def __init__(self, broker: Any, queue_name: str, inner: Consumer) -> None:
        self._broker = broker
        self._queue_name = queue_name
        self._inner = inner

    def __iter__(self) -> _GarbageTolerantConsumer:
        return self

    def __next__(self) -> MessageProxy | None:
        try:
            return next(self._inner)
        except DecodeError as e:
            self._set_aside(e)
            return None  # "nothing this time": the worker's loop goes on to the next one

    def _set_aside(self, error: DecodeError) -> None:
        data: Any = error.data
        where = self._reject(data)
        logger.error(
            "Dramatiq queue %r held an item that is not a message (%s): %r; %s; the worker goes on",
            self._queue_name,
            error.error if hasattr(error, "error") else error,
            data[:200] if isinstance(data, bytes | str) else data,
            where,
        )

    def _reject(self, data: Any) -> str:
        """Find the item's id in the queue's message hash and reject it (to ``.XQ``)."""
        broker = self._broker
        key = f"{broker.namespace}:{self._queue_name}.msgs"
        try:
            for message_id, value in broker.client.hscan_iter(key):
                if value == data:
                    broker.do_nack(self._queue_name, message_id)
                    return f"moved to {self._queue_name}.XQ"
        except Exception as e:  # the worker must go on; say why the item stays
            return f"could not be moved aside ({type(e).__name__}: {e})"
        return "not found in the queue's messages to move aside"

    def ack(self, message: MessageProxy) -> None:
        self._inner.ack(message)

    def nack(self, message: MessageProxy) -> None:
        self._inner.nack(message)

    def requeue(self, messages: Any) -> None:
        self._inner.requeue(messages)

    def close(self) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
