"""A Redis broker transport that survives garbage in its queues.

kombu's Redis transport parses each item it pops from a queue list before any Celery hook can
look at it; an item that is not a kombu message (random bytes, other JSON) raises out of the
consumer loop and the whole worker exits ("Unrecoverable error: JSONDecodeError", celery#4308,
kombu#2421). This transport checks every popped item first: one it cannot deliver is moved to the
``beeorm.poison`` list of the broker (kept, capped, for an operator to read) and the worker goes
on. A queue key that is not a list at all is moved aside (``broker_garbage``) instead of letting
``WRONGTYPE`` end the consumer loop. ``install()`` selects it for Redis brokers
(``broker_transport``); everything else is kombu's.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from beeorm_celery.broker_garbage import is_wrong_type, set_aside

logger = logging.getLogger(__name__)

POISON_KEY = "beeorm.poison"
POISON_MAX_ENTRIES = 1_000


def deliverable(payload: Any) -> str | None:
    """Why kombu could not deliver ``payload`` (None: it can)."""
    if not isinstance(payload, dict):
        return f"a JSON {type(payload).__name__}, not a message"
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return "no properties"
    if "delivery_tag" not in properties:
        return "no delivery tag"
    if not isinstance(properties.get("delivery_info", {}), dict):
        return "bad delivery info"
    headers = payload.get("headers")
    if headers is not None and not isinstance(headers, dict):
        return "bad headers"
    body = payload.get("body")
    if body and properties.get("body_encoding") == "base64":
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError, TypeError):
            return "body is not base64"
    return None


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                popped = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # reconnect on the next round
                raise
            except redis.ResponseError as e:
                if not is_wrong_type(e):
                    raise
                self._set_aside_wrong_types()
                raise kombu_redis.Empty() from None
            if not popped:
                raise kombu_redis.Empty()
            dest, item = popped
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            payload = self._decode_or_quarantine(dest, item)
            if payload is None:
                raise kombu_redis.Empty()
            self.connection._deliver(payload, dest)
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _set_aside_wrong_types(self) -> None:
        prefix = self.global_keyprefix or ""
        keys = [
            prefix + self._q_for_pri(queue, pri)
            for queue in self.active_queues
            for pri in self.priority_steps
        ]
        with self.conn_or_acquire() as client:
            if not set_aside(client, keys):
                time.sleep(1.0)  # nothing could be moved: do not spin on the same error

    def _get(self, queue: str) -> Any:
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                try:
                    item = client.rpop(self._q_for_pri(queue, pri))
                except redis.ResponseError as e:
                    if not is_wrong_type(e):
                        raise
                    self._set_aside_wrong_types()
                    continue
                if item:
                    self._maybe_update_queues_expire(client, queue)
                    payload = self._decode_or_quarantine(queue, item)
                    if payload is not None:
                        return payload
            self._maybe_update_queues_expire(client, queue)
            raise kombu_redis.Empty()

    def _decode_or_quarantine(self, queue: str, item: bytes) -> Any:
        try:
            payload = loads(bytes_to_str(item))
            reason = deliverable(payload)
        except (ValueError, TypeError, UnicodeDecodeError) as e:
            payload, reason = None, f"not JSON ({e})"
        if reason is None:
            return payload
        logger.error(
            "dropped an undeliverable item from queue %r into %r: %s", queue, POISON_KEY, reason
        )
        record = json.dumps(
            {
                "queue": queue,
                "reason": reason,
                "at": time.time(),
                "item": base64.b64encode(
                    item if isinstance(item, bytes) else str(item).encode()
                ).decode(),
            }
        )
        try:
            with self.conn_or_acquire() as client:
                client.lpush(POISON_KEY, record)
                client.ltrim(POISON_KEY, 0, POISON_MAX_ENTRIES - 1)
        except Exception:
            logger.exception("could not keep the undeliverable item")
        return None


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


TRANSPORT_PATH = "beeorm_celery.celery.broker:Transport"
