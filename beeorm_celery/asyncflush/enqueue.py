"""Enqueue-and-wake: the one way a batch enters a group's log (a flush, a dead-letter replay).

One Lua script on the log's Redis pool does, atomically: refuse everything when a group holds
its ``max_pending_batches`` (``backlog.py``); then for every group append the batch to the
stream, set the epoch (NX) and, when a waker is attached, the trigger flag (NX, with a TTL);
then write the list hashes of that pool (reference and all-ids lists), remove
the dead letters being replayed, and publish the local-cache invalidation. A flush's cache plan
(``cache_patch``: row patches, unique claims, pending markers) travels as the last argument:
its checks run before anything is written (a refusal returns, nothing written), its writes
after the appends, with their batch ids. Then, for each group
whose flag this call created, one wake-up goes to the waker. A wake-up that fails drops the flag
again, so the next flush wakes anew and a worker's sweep sees the group waiting.

Without a waker the flag stays unset: "a wake-up is on its way" would be a lie that makes a
running worker's sweep skip the group for ``trigger_ttl_s``. The batch is applied by the next
sweep instead (``sweep_interval_s``), or by ``consume_async_flush_events``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import redis

from beeorm_celery.asyncflush import backlog, failure
from beeorm_celery.asyncflush.batch import Batch, sign
from beeorm_celery.asyncflush.transport import WakeReason, WakeUp
from beeorm_celery.cache_patch import LUA_HELPERS, patched_rows
from beeorm_celery.lua_script import LuaScript
from beeorm_celery.unique_claims import run_checked

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.parts import AsyncParts
    from beeorm_celery.asyncflush.transport import Waker
    from beeorm_celery.cache import CacheWrites
    from beeorm_celery.cache_patch import CachePlan
    from beeorm_celery.redis_call import OnceCaller

logger = logging.getLogger(__name__)

# Lua's unpack() takes at most ~8,000 values: MSET / HSET go in slices of this many arguments.
_SLICE = 1000

# KEYS: per group (log, epoch, trigger); then hash keys; then per replayed dead letter (dead
#       hash, dead index).
# ARGV: groups, trigger ttl ms ('0' = no waker: leave the flag alone), epoch token, #hashes,
#       channel, message ('' = none), per-group max pending batches ('n1,n2,...', 0 = none;
#       '' = no limits), #replayed;
#       per group payload and signature ('' = unsigned); per hash its field
#       count and field/value pairs; per replayed dead letter its batch id; last, the cache
#       plan (flat, its length last: cache_patch.CachePlan.args; '0' = none).
# Returns per group: the batch id and 1 if this call created the trigger flag; then (key, row)
# of the rows patched for local caches. Or a refusal from the cache checks: {'!', reason, ...}.
_SCRIPT = LuaScript(
    LUA_HELPERS
    + """
local groups = tonumber(ARGV[1])
local wake = ARGV[2] ~= '0'
local result = {}
local a = 9
-- [backlog] refused before anything is written when a group holds its max_pending_batches
if ARGV[7] ~= '' then
  local g = 0
  for limit in string.gmatch(ARGV[7], '[^,]+') do
    local n = tonumber(limit)
    if n > 0 then
      local pending = redis.call('XLEN', KEYS[g * 3 + 1])
      if pending >= n then return redis.error_reply('BACKLOG ' .. g .. ' ' .. pending) end
    end
    g = g + 1
  end
end
-- [cache] checks before anything is written (cache_patch.bo_check)
local cache_plan, cache_ov = bo_plan(), nil
if cache_plan then
  local refused
  refused, cache_ov = bo_check(cache_plan)
  if refused then return refused end
end
-- [log] append the batches
for g = 0, groups - 1 do
  local k = g * 3
  local id
  if ARGV[a + 1] ~= '' then
    id = redis.call('XADD', KEYS[k + 1], '*', 'd', ARGV[a], 's', ARGV[a + 1])
  else
    id = redis.call('XADD', KEYS[k + 1], '*', 'd', ARGV[a])
  end
  redis.call('SET', KEYS[k + 2], ARGV[3], 'NX')
  local created = false
  if wake then created = redis.call('SET', KEYS[k + 3], '1', 'NX', 'PX', ARGV[2]) end
  result[#result + 1] = id
  result[#result + 1] = created and 1 or 0
  a = a + 2
end
-- [cache] row patches, unique keys, pending markers (cache_patch.bo_write)
if cache_plan then
  local batch_ids = {}
  for g = 1, groups do batch_ids[g] = result[g * 2 - 1] end
  bo_write(cache_plan, cache_ov, batch_ids, result)
end
local key = groups * 3 + 1
for h = 1, tonumber(ARGV[4]) do
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
for r = 1, tonumber(ARGV[8]) do
  redis.call('HDEL', KEYS[key], ARGV[a])
  redis.call('ZREM', KEYS[key + 1], ARGV[a])
  key = key + 2
  a = a + 1
end
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return result
""".replace("SLICE", str(_SLICE))
)


def enqueue_and_wake(
    parts: AsyncParts,
    batches: Sequence[Batch],
    epoch_token: str,
    *,
    cache_writes: CacheWrites | None = None,
    message: bytes | None = None,
    replaces_dead_letters: Sequence[str] = (),
    check_backlog: bool = True,
    cache_plan: CachePlan | None = None,
    after_enqueue: Callable[[dict[str, str]], None] | None = None,
) -> list[Batch]:
    """Append ``batches`` (one per group) to their logs and wake a worker where needed.

    ``epoch_token`` names a log created by this call; ``cache_writes`` (entries of the log's
    pool) and the local-cache invalidation ``message`` go out in the same atomic script, as does
    the removal of the dead letters ``replaces_dead_letters`` (batch ids, one per batch) that
    these batches replay. ``check_backlog``: refuse with ``BacklogFullError`` (nothing written)
    when a group holds its ``max_pending_batches``. ``cache_plan``: checked and written in
    the same script (a refusal raises ``DuplicateKeyError`` / ``ValidationError``, nothing
    written); its ``patched`` gets the rows patched for local caches. ``after_enqueue`` runs
    once the log is written and before any wake-up, with the batch id per group (the producer
    writes the caches of other pools there). Returns the batches with their ids.
    """
    keys = parts.keys
    settings = parts.settings
    secret = settings.secret_bytes
    waker = parts.wakers.waker
    script_keys: list[str] = []
    script_args: list[Any] = [
        len(batches),
        int(settings.trigger_ttl_s * 1000) if waker is not None else 0,
        epoch_token,
        len(cache_writes.hashes) if cache_writes is not None else 0,
        keys.invalidation_channel,
        message if message is not None else b"",
        backlog.limits_arg(settings, batches) if check_backlog else "",
        len(replaces_dead_letters),
    ]
    for batch in batches:
        script_keys += [keys.log(batch.group), keys.epoch(batch.group), keys.trigger(batch.group)]
        payload = batch.encode()
        script_args += [payload, sign(payload, secret) if secret is not None else b""]
    if cache_writes is not None:
        for key, fields in cache_writes.hashes.items():
            script_keys.append(key)
            script_args.append(len(fields))
            for field, value in fields.items():
                script_args += [field, value]
    for batch, dead_batch_id in zip(batches, replaces_dead_letters, strict=False):
        script_keys += [keys.dead(batch.group), keys.dead_index(batch.group)]
        script_args.append(dead_batch_id)
    client = parts.log_redis()
    caller = parts.log_caller()
    try:
        if cache_plan is None:
            results = _run(caller, client, script_keys, [*script_args, 0])
        else:
            results = run_checked(
                parts.mysql,
                cache_plan,
                lambda plan_args: _run(caller, client, script_keys, [*script_args, *plan_args]),
            )
            if len(results) > 2 * len(batches):  # rows patched for local caches
                cache_plan.patched.update(patched_rows(results[2 * len(batches) :]))
    except redis.RedisError as e:
        raise backlog.full_error(e, settings, batches) or failure.log_write_failed(
            e, [b.group for b in batches]
        ) from e

    queued: list[Batch] = []
    for n, batch in enumerate(batches):
        raw_id = results[n * 2]
        batch_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        queued.append(
            Batch(batch.group, batch.operations, batch.created_at_ms, batch.replay_of, batch_id)
        )
    if after_enqueue is not None:
        after_enqueue({b.group: str(b.id) for b in queued})
    for n, queued_batch in enumerate(queued):
        if results[n * 2 + 1] and waker is not None:
            wake(parts, waker, _wake_up(queued_batch))
    return queued


def _run(caller: OnceCaller, client: redis.Redis, keys: list[str], args: list[Any]) -> Any:
    # call_once: never sent again once sent (a second run would queue the batches twice)
    try:
        return caller.call("EVALSHA", _SCRIPT.sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        # A new or restarted server: load it, then run it by hash (SCRIPT LOAD is refused while
        # Redis is out of memory, so a full server refuses the flush before anything runs).
        # Not LuaScript's own call: the caller is what makes the EVALSHA never sent twice.
        client.script_load(_SCRIPT.source)
        return caller.call("EVALSHA", _SCRIPT.sha, len(keys), *keys, *args)


def _wake_up(batch: Batch) -> WakeUp:
    if batch.replay_of:
        return WakeUp(batch.group, WakeReason.REPLAY, "replay " + batch.summary(), batch.id)
    return WakeUp(batch.group, WakeReason.NEW_BATCH, batch.summary(), batch.id)


def wake(parts: AsyncParts, waker: Waker, wake_up: WakeUp) -> bool:
    """Hand ``wake_up`` to ``waker``; False (logged) when it failed.

    The batch is safe in the log. The group's flag is dropped so the next flush wakes again and
    a worker's periodic sweep sees the group as waiting.
    """
    try:
        waker.wake(wake_up)
        return True
    except Exception:
        logger.exception("could not wake a worker for async group %r", wake_up.group)
        try:
            parts.log_redis().delete(parts.keys.trigger(wake_up.group))
        except Exception:
            logger.exception("could not reset the trigger flag of group %r", wake_up.group)
        return False
