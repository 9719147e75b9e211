"""The producer side of ``flush_async``: queue batches, write caches, wake a worker.

Steady state is one Redis command: a Lua script on the log's Redis pool that, for every group of
the flush, appends the batch to the group's stream, sets the epoch (NX) and the trigger flag
(NX, with a TTL), writes every cache entry that lives in that pool (one MSET, tombstones, list
hashes) and publishes the local-cache invalidation, all atomically. A Celery task is published
only for a group whose trigger flag this flush created. Caches in other Redis pools follow in
one MULTI/EXEC each, after the log is written.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import redis

from beeorm_celery.asyncflush import backlog, failure
from beeorm_celery.asyncflush.batch import Batch, sign
from beeorm_celery.asyncflush.log import log_client
from beeorm_celery.cache import CacheWrites
from beeorm_celery.flush import ops_by_cache_pool, update_local_caches, write_redis_caches
from beeorm_celery.operations import Operation

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine

logger = logging.getLogger(__name__)

# Lua's unpack() takes at most ~8,000 values: MSET / HSET go in slices of this many arguments.
_SLICE = 1000

# KEYS: per group (log, epoch, trigger); then plain keys, tombstone keys, hash keys.
# ARGV: groups, trigger ttl ms, epoch token, #plain, #tombstones, tombstone ttl s, #hashes,
#       channel, message ('' = none), per-group max pending batches ('n1,n2,...', 0 = none;
#       '' = no limits); per group payload and signature ('' = unsigned);
#       the plain values; per hash its field count and field/value pairs.
# Returns per group: the batch id and 1 if this call created the trigger flag.
_FLUSH_SCRIPT = """
local groups = tonumber(ARGV[1])
local result = {}
local a = 11
-- [backlog] refused before anything is written when a group holds its max_pending_batches
if ARGV[10] ~= '' then
  local g = 0
  for limit in string.gmatch(ARGV[10], '[^,]+') do
    local n = tonumber(limit)
    if n > 0 then
      local pending = redis.call('XLEN', KEYS[g * 3 + 1])
      if pending >= n then return redis.error_reply('BACKLOG ' .. g .. ' ' .. pending) end
    end
    g = g + 1
  end
end
for g = 0, groups - 1 do
  local k = g * 3
  local id
  if ARGV[a + 1] ~= '' then
    id = redis.call('XADD', KEYS[k + 1], '*', 'd', ARGV[a], 's', ARGV[a + 1])
  else
    id = redis.call('XADD', KEYS[k + 1], '*', 'd', ARGV[a])
  end
  redis.call('SET', KEYS[k + 2], ARGV[3], 'NX')
  local created = redis.call('SET', KEYS[k + 3], '1', 'NX', 'PX', ARGV[2])
  result[#result + 1] = id
  result[#result + 1] = created and 1 or 0
  a = a + 2
end
local key = groups * 3 + 1
local plain = tonumber(ARGV[4])
local done = 0
while done < plain do
  local args = {}
  local upto = math.min(plain, done + SLICE / 2)
  for i = done, upto - 1 do
    args[#args + 1] = KEYS[key + i]
    args[#args + 1] = ARGV[a + i]
  end
  redis.call('MSET', unpack(args))
  done = upto
end
key = key + plain
a = a + plain
for i = 1, tonumber(ARGV[5]) do
  redis.call('SET', KEYS[key], '-', 'EX', ARGV[6])
  key = key + 1
end
for h = 1, tonumber(ARGV[7]) do
  local fields = tonumber(ARGV[a]) * 2
  a = a + 1
  local sent = 0
  while sent < fields do
    local args = {}
    local upto = math.min(fields, sent + SLICE)
    for i = sent, upto - 1 do args[#args + 1] = ARGV[a + i] end
    redis.call('HSET', KEYS[key], unpack(args))
    sent = upto
  end
  a = a + fields
  key = key + 1
end
if ARGV[9] ~= '' then redis.call('PUBLISH', ARGV[8], ARGV[9]) end
return result
""".replace("SLICE", str(_SLICE))


class TriggerPublisher(Protocol):
    """Wakes a worker for a group (the Celery adapter publishes a task)."""

    def publish(self, group: str, batch_id: str, summary: str) -> None: ...


def batches_of(ops: Sequence[Operation], created_at_ms: int) -> list[Batch]:
    by_group: dict[str, list[Operation]] = {}
    for op in ops:
        by_group.setdefault(op.schema.options.async_group, []).append(op)
    return [Batch(group, group_ops, created_at_ms) for group, group_ops in by_group.items()]


_scripts: dict[int, Any] = {}


def _flush_script(client: redis.Redis) -> Any:
    """The registered script (EVALSHA, loaded again by redis-py after a Redis restart)."""
    script = _scripts.get(id(client))
    if script is None or script.registered_client is not client:
        script = client.register_script(_FLUSH_SCRIPT)
        _scripts[id(client)] = script
    return script


def flush_async(engine: Engine, ops: Sequence[Operation]) -> list[Batch]:
    """Queue ``ops`` (already validated); returns the queued batches with their ids."""
    log_pool = engine.async_redis_pool
    client = log_client(engine)
    guard = engine.log_redis_guard
    if guard is not None and not guard.checked:
        guard.require_safe()  # Redis was unreachable at validate(): ask now, once
    keys = engine.keys
    settings = engine.async_settings
    secret = settings.secret_bytes
    batches = batches_of(ops, int(time.time() * 1000))

    other_pools = ops_by_cache_pool(ops)
    log_writes = CacheWrites(keys, engine.tombstone_ttl_s)
    for op in other_pools.pop(log_pool, []):
        log_writes.add(op)
    message = engine.invalidation_message(ops)
    # The invalidation travels in the script when it goes out on the log's pool.
    in_script = message is not None and engine.invalidation_pool == log_pool

    script_keys: list[str] = []
    script_args: list[Any] = [
        len(batches),
        int(settings.trigger_ttl_s * 1000),
        uuid.uuid4().hex,
        len(log_writes.values),
        len(log_writes.tombstones),
        engine.tombstone_ttl_s,
        len(log_writes.hashes),
        keys.invalidation_channel,
        message if in_script else b"",
        backlog.limits_arg(settings, batches),
    ]
    for batch in batches:
        script_keys += [keys.log(batch.group), keys.epoch(batch.group), keys.trigger(batch.group)]
        payload = batch.encode()
        script_args += [payload, sign(payload, secret) if secret is not None else b""]
    script_keys += list(log_writes.values)
    script_args += list(log_writes.values.values())
    script_keys += list(log_writes.tombstones)
    for key, fields in log_writes.hashes.items():
        script_keys.append(key)
        script_args.append(len(fields))
        for field, value in fields.items():
            script_args += [field, value]
    try:
        results = _flush_script(client)(keys=script_keys, args=script_args)
    except redis.RedisError as e:
        raise backlog.full_error(e, settings, batches) or failure.log_write_failed(
            e, [b.group for b in batches]
        ) from e

    # The log is written: from here on the SQL will land. Other pools' caches follow.
    try:
        write_redis_caches(engine, other_pools, None if in_script else message)
    except redis.RedisError as e:
        raise failure.cache_write_failed(e, list(other_pools)) from e
    update_local_caches(engine, ops)

    queued: list[Batch] = []
    for n, batch in enumerate(batches):
        raw_id = results[n * 2]
        batch_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        queued_batch = Batch(batch.group, batch.operations, batch.created_at_ms, None, batch_id)
        queued.append(queued_batch)
        if results[n * 2 + 1] and engine.trigger_publisher is not None:
            _publish(engine, queued_batch)
    return queued


def _publish(engine: Engine, batch: Batch) -> None:
    assert engine.trigger_publisher is not None and batch.id is not None
    try:
        engine.trigger_publisher.publish(batch.group, batch.id, batch.summary())
    except Exception:
        # The batch is safe in the log. Drop the flag so the next flush publishes again; the
        # periodic sweep of a running worker picks the batch up in any case.
        logger.exception("could not publish the apply task for group %r", batch.group)
        try:
            log_client(engine).delete(engine.keys.trigger(batch.group))
        except Exception:
            logger.exception("could not reset the trigger flag of group %r", batch.group)
