"""The entity cache follows MySQL change by change (law 10), in Lua, beside the log append.

A flush does not overwrite a cached row with the caller's copy (which may be stale): an UPDATE
patches only the columns its SQL sets, an INSERT writes its row, a DELETE a tombstone. The
patch runs inside Redis (the flush script of the log's pool, or ``CACHE_SCRIPT``), so two
processes editing different columns of one row end as MySQL does, in the order of the log.

Cached rows are JSON arrays of values pre-encoded by orjson. Lua's cjson would turn integers
above 2**53 into floats and reformat floats, so the patch never decodes a row: it splits the
array into its top-level items as text (``bo_split``), replaces items by column index, joins.

Pending markers (``Keys.pending``): every async flush sets, per row, the id of the batch that
last touched it; the worker drops the marker once that batch (or a later one) is applied. A
reader may fill a row from MySQL only while no marker exists (``FILL_SCRIPT``), because MySQL
lags the cache until then. A row whose cache entry was evicted or cleared while a batch waits
is therefore read from MySQL but never cached in that old state.

Unique values (law 11) are claimed in the same scripts: see ``unique_claims``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from redis import exceptions as redis_errors

from beeorm_celery.cache import encoded_row
from beeorm_celery.keys import STALE_TTL_S
from beeorm_celery.operations import Operation, OpKind

if TYPE_CHECKING:
    import redis

    from beeorm_celery.engine import Engine
    from beeorm_celery.keys import Keys
    from beeorm_celery.schema import EntitySchema

logger = logging.getLogger(__name__)

# Lua helpers, shared by every script that touches entity rows. ``bo_split``: the items of a
# JSON array as text; strings are skipped whole (escapes included), nesting is counted.
LUA_HELPERS = """
local function bo_split(s)
  if string.byte(s, 1) ~= 91 then return nil end
  local items = {}
  if string.byte(s, 2) == 93 then return items end
  local start, i, depth = 2, 2, 0
  while true do
    local p = string.find(s, '[",%[%]{}]', i)
    if not p then return nil end
    local c = string.byte(s, p)
    if c == 34 then
      local q = p + 1
      while true do
        local r = string.find(s, '["\\\\]', q)
        if not r then return nil end
        if string.byte(s, r) == 92 then q = r + 2 else q = r + 1 break end
      end
      i = q
    elseif c == 91 or c == 123 then
      depth = depth + 1
      i = p + 1
    elseif c == 93 or c == 125 then
      if depth == 0 then
        items[#items + 1] = string.sub(s, start, p - 1)
        return items
      end
      depth = depth - 1
      i = p + 1
    else
      if depth == 0 then
        items[#items + 1] = string.sub(s, start, p - 1)
        start = p + 1
      end
      i = p + 1
    end
  end
end

local function bo_stream_le(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)')
  local bm, bs = string.match(b, '^(%d+)-(%d+)')
  if not am or not bm then return false end
  am, bm = tonumber(am), tonumber(bm)
  if am ~= bm then return am < bm end
  return tonumber(as) <= tonumber(bs)
end

-- The checks of a flush, before anything is written. Returns a refusal ({'!', reason, ...})
-- or nil and the unique keys' new values (claims and releases, in operation order).
local function bo_fill_hints(plan, ov)
  for key, v in pairs(plan.h) do
    if ov[key] == nil then
      if v == '-' then
        redis.call('SET', key, '-', 'NX', 'EX', plan.m)
      else
        redis.call('SET', key, v, 'NX')
      end
    end
  end
end

local function bo_check(plan)
  local force = plan.f == 1
  if not force then
    for _, e in ipairs(plan.e) do
      if e[1] ~= 'i' and redis.call('GET', e[2]) == '-' then return {'!', 'gone', e[2]} end
    end
    for _, key in ipairs(plan.x) do
      if redis.call('GET', key) == '-' then return {'!', 'refgone', key} end
    end
  end
  local ov = {}
  local unknown = {}
  for _, c in ipairs(plan.c) do
    local key, id = c[2], c[3]
    local cur = ov[key]
    if cur == nil then cur = redis.call('GET', key) end
    if cur == false or cur == '?' then cur = plan.h[key] end
    if c[1] == 'c' then
      if force or cur == id or cur == '-' then
        ov[key] = id
      elseif cur == nil then
        unknown[#unknown + 1] = key
        ov[key] = id
      else
        bo_fill_hints(plan, {})  -- what MySQL said stays known, refused or not
        return {'!', 'dup', key, cur}
      end
    elseif cur == nil or cur == id then
      ov[key] = '-'
    end
  end
  if #unknown > 0 then
    table.insert(unknown, 1, 'unknown')
    table.insert(unknown, 1, '!')
    return unknown
  end
  return nil, ov
end

-- The writes of a flush. ``ids[g]``: the batch id of the plan's group g (async flushes).
-- Appends to ``out`` (key, row) for each patched row whose entity has a local cache.
local function bo_write(plan, ov, ids, out)
  for _, e in ipairs(plan.e) do
    local kind, ekey, pkey, g = e[1], e[2], e[3], e[4]
    local prov = false
    if kind == 'i' then
      redis.call('SET', ekey, e[5])
    elseif kind == 'd' then
      redis.call('SET', ekey, '-', 'EX', plan.t)
    else
      local cur = redis.call('GET', ekey)
      if cur and string.byte(cur, 1) == 91 then
        local items = bo_split(cur)
        if items and #items == e[6] then
          for _, pv in ipairs(e[5]) do items[pv[1] + 1] = pv[2] end
          local row = '[' .. table.concat(items, ',') .. ']'
          redis.call('SET', ekey, row)
          if e[7] == 1 then
            out[#out + 1] = ekey
            out[#out + 1] = row
          end
        else
          redis.call('DEL', ekey)
        end
      elseif g > 0 and cur ~= '-' and e[8] ~= '' then
        -- Nothing to patch (evicted, cleared): the caller's row, so this process and others
        -- read their writes, marked provisional: the worker drops it once MySQL has the row.
        redis.call('SET', ekey, e[8])
        prov = true
      elseif not cur then
        -- flush(): a reader that loaded the row before the COMMIT must not cache it now
        redis.call('SET', ekey, '?', 'NX', 'EX', STALE_TTL)
      end
    end
    if g > 0 then
      local m = ids[g]
      if prov then
        m = m .. '+'
      elseif kind == 'u' then
        local old = redis.call('GET', pkey)
        if old and string.byte(old, -1) == 43 then m = m .. '+' end
      end
      redis.call('SET', pkey, m, 'EX', plan.p)
    end
  end
  for key, v in pairs(ov) do
    if v == '-' then redis.call('SET', key, '-', 'EX', plan.t) else redis.call('SET', key, v) end
  end
  bo_fill_hints(plan, ov)
end
""".replace("STALE_TTL", str(STALE_TTL_S))

# Checks and writes of one plan without a log: flush() before MySQL (claims only, ARGV[2] = 0)
# and after the COMMIT (force), async flushes for caches outside the log's pool.
# ARGV: plan, write entity rows (1/0), then the batch ids by group number.
CACHE_SCRIPT = (
    LUA_HELPERS
    + """
local plan = cjson.decode(ARGV[1])
local refused, ov = bo_check(plan)
if refused then return refused end
local out = {'ok'}
if ARGV[2] == '1' then
  local ids = {}
  for i = 3, #ARGV do ids[i - 2] = ARGV[i] end
  bo_write(plan, ov, ids, out)
  for _, h in ipairs(plan.hs) do
    local fields = h[2]
    for i = 1, #fields, 1000 do
      redis.call('HSET', h[1], unpack(fields, i, math.min(#fields, i + 999)))
    end
  end
  if plan.pub[1] then redis.call('PUBLISH', plan.pub[1], plan.pub[2]) end
else
  for key, v in pairs(ov) do if v ~= '-' then redis.call('SET', key, v) end end
end
return out
"""
)

# flush() failed in MySQL after claiming: give back the claims still holding our ids.
UNDO_CLAIMS_SCRIPT = """
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then redis.call('DEL', KEYS[i]) end
end
return 0
"""

# A reader fills rows it loaded from MySQL, never over a writer's value (NX) and never while
# a batch for the row is pending. KEYS: per row (entity key, pending key); ARGV: the missing
# marker's TTL, then per row its value.
FILL_SCRIPT = """
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    local v = ARGV[(i + 1) / 2 + 1]
    if v == '-' then
      redis.call('SET', KEYS[i], v, 'NX', 'EX', ARGV[1])
    else
      redis.call('SET', KEYS[i], v, 'NX')
    end
  end
end
return 0
"""

# The worker applied (or dead-lettered) batches through ARGV[1]: drop the pending markers they
# set, unless a later batch set them again. An entry missing now, or provisional (a marker
# ending in '+': written from a caller's copy), gets a short stale mark instead, so the next
# read loads MySQL, and a reader whose SELECT ran before the COMMIT cannot cache the old row.
# KEYS: (pending, entity).
RELEASE_SCRIPT = (
    LUA_HELPERS
    + """
for i = 1, #KEYS, 2 do
  local m = redis.call('GET', KEYS[i])
  if m and bo_stream_le(m, ARGV[1]) then
    redis.call('DEL', KEYS[i])
    if string.byte(m, -1) == 43 or redis.call('EXISTS', KEYS[i + 1]) == 0 then
      redis.call('SET', KEYS[i + 1], '?', 'EX', STALE_TTL)
    end
  end
end
return 0
""".replace("STALE_TTL", str(STALE_TTL_S))
)


class CachePlan:
    """What one flush does to the entity and unique-index keys of one Redis pool.

    Encoded as one JSON argument (``encode``), decoded by ``cjson`` in the script: row items
    stay JSON text inside JSON strings, so no number is ever converted.
    """

    def __init__(self, keys: Keys, tombstone_ttl_s: int, missing_ttl_s: int) -> None:
        self.keys = keys
        self.tombstone_ttl_s = tombstone_ttl_s
        self.missing_ttl_s = missing_ttl_s
        # filled by the script call: (key, row) of rows patched for local caches
        self.patched: dict[str, bytes] = {}
        self.entity_ops: list[list[Any]] = []
        self.claims: list[list[str]] = []
        self.hints: dict[str, str] = {}
        self.ref_keys: list[str] = []
        self.hashes: list[list[Any]] = []  # CACHE_SCRIPT only: [key, [field, value, ...]]
        self.publish: list[str] = []  # CACHE_SCRIPT only: [channel, message]
        self.force = False
        # what a key stands for, to name a refusal: key -> (schema, index, values) / (schema, id)
        self.unique_labels: dict[str, tuple[EntitySchema, str, list[Any]]] = {}
        self.entity_labels: dict[str, tuple[EntitySchema, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.entity_ops or self.claims or self.ref_keys)

    def add_entity(self, op: Operation, group_no: int) -> None:
        """The row's own key: insert, patch or tombstone; ``group_no`` > 0 sets its marker."""
        schema = op.schema
        key = self.keys.entity(schema, op.id)
        pending = self.keys.pending(schema, op.id) if group_no else ""
        self.entity_labels[key] = (schema, op.id)
        if op.kind is OpKind.INSERT:
            row = encoded_row(op).decode()
            self.entity_ops.append(["i", key, pending, group_no, row, 0])
        elif op.kind is OpKind.DELETE:
            self.entity_ops.append(["d", key, pending, group_no, "", 0])
        else:
            local = 1 if schema.options.local_cache is not None else 0
            # the caller's whole row: written (provisional) only where there is none to patch
            row = encoded_row(op).decode() if group_no and op.full is not None else ""
            self.entity_ops.append(
                ["u", key, pending, group_no, patch_items(op), _width(schema), local, row]
            )

    def add_reference_checks(self, keys: Sequence[tuple[str, EntitySchema, int]]) -> None:
        for key, schema, entity_id in keys:
            self.ref_keys.append(key)
            self.entity_labels[key] = (schema, entity_id)

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "e": self.entity_ops,
                "c": self.claims,
                "h": self.hints,
                "x": self.ref_keys,
                "hs": self.hashes,
                "pub": self.publish,
                "f": 1 if self.force else 0,
                "t": self.tombstone_ttl_s,
                "m": self.missing_ttl_s,
                "p": self.tombstone_ttl_s,
            }
        )


def _width(schema: EntitySchema) -> int:
    return len(schema.data_columns)


def patch_items(op: Operation) -> list[list[Any]]:
    """An UPDATE's changed columns as (column index, JSON text of the value)."""
    index = op.schema.data_column_index
    columns = op.schema.columns_by_name
    items: list[list[Any]] = []
    for name, value in op.values.items():
        text = "null" if value is None else orjson.dumps(columns[name].type.to_json(value)).decode()
        items.append([index[name], text])
    return items


_scripts: dict[tuple[int, str], Any] = {}


def script(client: redis.Redis, source: str) -> Any:
    """``source`` registered on ``client`` (EVALSHA; redis-py loads it again after a restart)."""
    cached = _scripts.get((id(client), source[:64] + str(len(source))))
    if cached is None or cached.registered_client is not client:
        cached = client.register_script(source)
        _scripts[(id(client), source[:64] + str(len(source)))] = cached
    return cached


def plan_for(engine: Engine) -> CachePlan:
    return CachePlan(engine.keys, engine.tombstone_ttl_s, engine.missing_ttl_s)


def patched_rows(flat: Sequence[Any]) -> dict[str, bytes]:
    """The (key, row) pairs a script returned for patched rows of locally cached entities."""
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): v
        for k, v in zip(flat[::2], flat[1::2], strict=True)
    }


def fill_rows(engine: Engine, schema: EntitySchema, rows: dict[int, bytes | None]) -> None:
    """Cache rows a reader loaded from MySQL (None: no such row), unless a batch is pending."""
    keys: list[str] = []
    args: list[Any] = [engine.missing_ttl_s]
    for entity_id, row in rows.items():
        keys += [engine.keys.entity(schema, entity_id), engine.keys.pending(schema, entity_id)]
        args.append(b"-" if row is None else row)
    try:
        script(engine.redis_for(schema), FILL_SCRIPT)(keys=keys, args=args)
    except redis_errors.OutOfMemoryError:
        # a fill only saves the next read a trip to MySQL: the read itself succeeded
        logger.warning("Redis is out of memory: %s rows not cached", schema.name)


def release_pending(engine: Engine, ops: Sequence[Operation], through_batch: str) -> None:
    """After the worker applied (or dead-lettered) batches through ``through_batch``."""
    by_pool: dict[str, list[str]] = {}
    for op in ops:
        pool = op.schema.options.redis_cache
        if pool is None:
            continue
        keys = by_pool.setdefault(pool, [])
        keys += [engine.keys.pending(op.schema, op.id), engine.keys.entity(op.schema, op.id)]
    for pool, keys in by_pool.items():
        script(engine.redis(pool), RELEASE_SCRIPT)(keys=keys, args=[through_batch])
