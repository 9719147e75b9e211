"""The entity cache follows MySQL change by change (law 10), in Lua, beside the log append.

A flush does not overwrite a cached row with the caller's copy (which may be stale): an UPDATE
patches only the columns its SQL sets, an INSERT writes its row, a DELETE a tombstone. The
patch runs inside Redis (the flush script of the log's pool, or ``CACHE_SCRIPT``), so two
processes editing different columns of one row end as MySQL does, in the order of the log.

Cached rows are JSON arrays of values pre-encoded by orjson. Lua's cjson would turn integers
above 2**53 into floats and reformat floats, so the patch never decodes a row: it splits the
array into its top-level items as text (``bo_split``), replaces items by column index, joins.

Pending markers (``Keys.pending``, one hash per table): every async flush sets, per row, the id
of the batch that last touched it; the worker drops the marker once that batch (or a later one)
is applied. A
reader may fill a row from MySQL only while no marker exists (``FILL_SCRIPT``), because MySQL
lags the cache until then. A row whose cache entry was evicted or cleared while a batch waits
is therefore read from MySQL but never cached in that old state. Each marker hash also holds
one field that is no row id (``PENDING_TABLE_FIELD``), with a value longer than Redis's
``hash-max-listpack-value``: Redis keeps a small hash as a list it searches field by field, so
with the markers of a few hundred rows or fewer (many groups, a worker keeping up) setting,
reading and dropping a marker cost 0.8, 0.7 and 0.2 us against 0.14, 0.09 and 0.12 in a hash
table. The field makes the hash a hash table from its first write, and keeps it one.

Unique values (law 11) are claimed in the same scripts: see ``unique_claims``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from redis import exceptions as redis_errors

from beeorm_celery.cache import encoded_row, ops_by_cache_pool
from beeorm_celery.keys import STALE, STALE_TTL_S
from beeorm_celery.lua_script import LuaScript
from beeorm_celery.operations import DELETE, INSERT, UPDATE, Operation

# The marker hash's field that makes it a hash table (see the module's docstring): no row id,
# and a value over the 64 bytes of hash-max-listpack-value (Redis's default).
PENDING_TABLE_FIELD = "~"
_PENDING_TABLE_VALUE = (
    "not a row: a value this long keeps the marker hash a hash table (cache_patch)"
)

if TYPE_CHECKING:
    from beeorm_celery.engine import Engine
    from beeorm_celery.keys import Keys
    from beeorm_celery.schema import EntitySchema

logger = logging.getLogger(__name__)

# Lua helpers, shared by every script that touches entity rows. ``bo_split``: the items of a
# JSON array as text; strings are skipped whole (escapes included), nesting is counted.
# ``bo_split_any`` walks every delimiter; ``bo_split`` first tries one pattern match per item,
# which holds for the rows orjson makes (no backslash, no nested array or object) and costs
# about a third; on anything else it hands the row to ``bo_split_any``, so both give the same.
LUA_HELPERS = (
    """
local function bo_split_any(s)
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

local function bo_split(s)
  if string.byte(s, 1) ~= 91 then return nil end
  if string.byte(s, 2) == 93 then return {} end
  if string.find(s, '\\\\', 1, true) then return bo_split_any(s) end
  local items, n, i = {}, 0, 2
  while true do
    local c, item = string.byte(s, i), nil
    if c == 34 then
      item, i = string.match(s, '^("[^"]*")()', i)
    else
      item, i = string.match(s, '^([^",%[%]{}]*)()', i)
    end
    -- an item must end at a top-level ',' or ']'; anything else (a nested array or object,
    -- an unterminated string, text after a string) takes the walk of every delimiter
    if not item then return bo_split_any(s) end
    n = n + 1
    items[n] = item
    c = string.byte(s, i)
    if c == 93 then return items end
    if c ~= 44 then return bo_split_any(s) end
    i = i + 1
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
-- The plan: the last ARGV is its length n; the n arguments before it are the plan, flat (see
-- CachePlan.args), read in place: building Lua tables from it, or cjson, would cost more than
-- the rest of the script. bo_plan() returns where each part starts.
--
-- The plan's first argument is its header, 'ne,nc,nh,ns,nx,nhs,force,ttl,missing ttl,pending
-- ttl,ni'. Inserts come next, in ni runs (one per table and group): the entity-key prefix, the
-- pending hash, the group number (0: no markers), the count k, then k ids, then k rows.
-- An update or delete at position a: kind, entity key, pending hash, group number, id, then
--   'd': n, n (column, JSON) pairs expected | 'u': width, local (1/0), whole row,
--   n, n (column, JSON) patches, m, m (column, JSON) pairs expected.
-- bo_entity(a) returns the next op's position and where the pairs start, with their counts.
local function bo_entity(a)
  local kind = ARGV[a]
  if kind == 'd' then
    local ne = tonumber(ARGV[a + 5])
    return a + 6 + 2 * ne, a + 6, ne, 0, 0
  end
  local np = tonumber(ARGV[a + 8])
  local at = a + 9 + 2 * np
  local ne = tonumber(ARGV[at])
  return at + 1 + 2 * ne, at + 1, ne, a + 9, np
end

local function bo_plan()
  local n = tonumber(ARGV[#ARGV])
  if n == 0 then return nil end
  local a = #ARGV - n
  -- one match, not a gmatch loop into a table: 5% of a 10-row flush's script (callgrind)
  local ne, nc, nh, ns, nx, nhs, f, t, m, pt, ni = string.match(ARGV[a],
    '^([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)$')
  local p = {ne = tonumber(ne), nc = tonumber(nc), nx = tonumber(nx), nhs = tonumber(nhs),
    f = f == '1', t = t, m = m, p = pt, ni = tonumber(ni), h = {}, s = {}}
  nh, ns = tonumber(nh), tonumber(ns)
  a = a + 1
  -- insert runs: entity-key prefix, pending hash, group, count k, k ids, k rows
  p.i = a
  for _ = 1, p.ni do a = a + 4 + 2 * tonumber(ARGV[a + 3]) end
  p.e = a
  for _ = 1, p.ne do a = bo_entity(a) end
  p.c = a
  a = a + 4 * p.nc
  for _ = 1, nh do
    p.h[ARGV[a]] = ARGV[a + 1]
    a = a + 2
  end
  for _ = 1, ns do
    p.s[ARGV[a]] = ARGV[a + 1]
    a = a + 2
  end
  p.x = a
  a = a + p.nx
  p.hs = a
  for _ = 1, p.nhs do a = a + 2 + tonumber(ARGV[a + 1]) end
  p.pub = a
  return p
end

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

-- The checks of a flush, before anything is written. Returns a refusal ({'!', reason, ...})
-- or nil and the unique keys' new values (claims and releases, in operation order).
local function bo_check(plan)
  local force = plan.f
  if not force then
    -- the rows read here are read again by bo_write, unless a write came between (plan.g)
    local seen = {}
    plan.g = seen
    local a = plan.e
    for _ = 1, plan.ne do
      local nxt, es, en = bo_entity(a)
      local cur = redis.call('GET', ARGV[a + 1])
      seen[ARGV[a + 1]] = cur
      if cur == '-' then return {'!', 'gone', ARGV[a + 1]} end
      if cur and en > 0 and string.byte(cur, 1) == 91 then
        local items = bo_split(cur)
        if items then
          for i = es, es + 2 * (en - 1), 2 do
            if items[tonumber(ARGV[i]) + 1] ~= ARGV[i + 1] then
              return {'!', 'stale', ARGV[a + 1], ARGV[i]}
            end
          end
        end
      end
      a = nxt
    end
    for i = plan.x, plan.x + plan.nx - 1 do
      if redis.call('GET', ARGV[i]) == '-' then return {'!', 'refgone', ARGV[i]} end
    end
  end
  local ov = {}
  local unknown = {}
  for c = plan.c, plan.c + 4 * (plan.nc - 1), 4 do
    local key, id = ARGV[c + 1], ARGV[c + 2]
    local cur = ov[key]
    if cur == nil then cur = redis.call('GET', key) end
    if cur == false or cur == '?' then cur = plan.h[key] end
    if ARGV[c] == 'c' then
      if force or cur == id or cur == '-' or (cur ~= nil and plan.s[key] == cur) then
        ov[key] = id
      elseif cur == nil then
        unknown[#unknown + 1] = key
        ov[key] = id
      else
        -- held by another row: the caller checks that row still has the value (its cached
        -- row goes back: a stale claim, left by an edit from a stale copy, may be taken over)
        bo_fill_hints(plan, {})  -- what MySQL said stays known, refused or not
        -- with the holder's pending marker: an uncached holder with nothing pending is
        -- checked against MySQL by the caller
        local pending = string.gsub(ARGV[c + 3], ':e:[^:]*:$', ':p')
        return {'!', 'dup', key, cur, redis.call('GET', ARGV[c + 3] .. cur) or '',
                redis.call('HGET', pending, cur) or ''}
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
  local markers = {}
  local function mark(pkey, id, m)
    local fields = markers[pkey]
    if not fields then
      fields = {}
      markers[pkey] = fields
    end
    fields[#fields + 1] = id
    fields[#fields + 1] = m
  end
  local seen = plan.g
  local a = plan.i
  for _ = 1, plan.ni do
    local prefix, pkey, id = ARGV[a], ARGV[a + 1], ids[tonumber(ARGV[a + 2])]
    -- the run's markers go straight into its table's list (what mark() appends, in order)
    local fields, f = nil, 0
    if id then
      fields = markers[pkey]
      if not fields then
        fields = {}
        markers[pkey] = fields
      end
      f = #fields
    end
    local k = tonumber(ARGV[a + 3])
    local rows, n = {}, 0
    for e = a + 4, a + 3 + k do
      local eid = ARGV[e]
      local ekey = prefix .. eid
      if seen then seen[ekey] = nil end
      rows[n + 1] = ekey
      rows[n + 2] = ARGV[e + k]
      n = n + 2
      if fields then
        fields[f + 1] = eid
        fields[f + 2] = id
        f = f + 2
      end
    end
    for i = 1, n, 1000 do
      redis.call('MSET', unpack(rows, i, math.min(n, i + 999)))
    end
    a = a + 4 + 2 * k
  end
  a = plan.e
  for _ = 1, plan.ne do
    local nxt, _, _, ps, np = bo_entity(a)
    local kind, ekey, pkey, g = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
    local prov = false
    -- a row bo_check read is used once: a second op on the key reads what the first wrote
    local cur = seen and seen[ekey]
    if cur ~= nil then seen[ekey] = nil end
    if kind == 'd' then
      redis.call('SET', ekey, '-', 'EX', plan.t)
    else
      if cur == nil then cur = redis.call('GET', ekey) end
      if cur and string.byte(cur, 1) == 91 then
        local items = bo_split(cur)
        if items and #items == tonumber(ARGV[a + 5]) then
          for i = ps, ps + 2 * (np - 1), 2 do items[tonumber(ARGV[i]) + 1] = ARGV[i + 1] end
          local row = '[' .. table.concat(items, ',') .. ']'
          redis.call('SET', ekey, row)
          if ARGV[a + 6] == '1' then
            out[#out + 1] = ekey
            out[#out + 1] = row
          end
        else
          redis.call('DEL', ekey)
        end
      elseif g > 0 and cur ~= '-' and ARGV[a + 7] ~= ''
          and not redis.call('HGET', pkey, ARGV[a + 4]) then
        -- Nothing to patch (evicted, cleared): the caller's row, so this process and others
        -- read their writes, marked provisional: the worker drops it once MySQL has the row.
        -- Not while another batch for the row is pending: the caller's copy may predate it,
        -- and a stale row here would make that batch's unique claims look abandoned.
        redis.call('SET', ekey, ARGV[a + 7])
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
        local old = redis.call('HGET', pkey, ARGV[a + 4])
        if old and string.byte(old, -1) == 43 then m = m .. '+' end
      end
      mark(pkey, ARGV[a + 4], m)
    end
    a = nxt
  end
  for pkey, fields in pairs(markers) do
    for i = 1, #fields, 1000 do
      -- the field that makes the hash a hash table first (see the module's docstring)
      redis.call('HSET', pkey, 'TABLE_FIELD', 'TABLE_VALUE',
        unpack(fields, i, math.min(#fields, i + 999)))
    end
    redis.call('EXPIRE', pkey, plan.p)
  end
  for key, v in pairs(ov) do
    if v == '-' then redis.call('SET', key, '-', 'EX', plan.t) else redis.call('SET', key, v) end
  end
  bo_fill_hints(plan, ov)
end
""".replace("STALE_TTL", str(STALE_TTL_S))
    .replace("TABLE_FIELD", PENDING_TABLE_FIELD)
    .replace("TABLE_VALUE", _PENDING_TABLE_VALUE)
)

# Checks and writes of one plan without a log: flush() before MySQL (claims only, ARGV[2] = 0)
# and after the COMMIT (force), async flushes for caches outside the log's pool.
# ARGV: write entity rows (1/0), then the batch ids by group number, then the plan.
CACHE_SCRIPT = LuaScript(
    LUA_HELPERS
    + """
local plan = bo_plan()
local refused, ov = bo_check(plan)
if refused then return refused end
local out = {'ok'}
if ARGV[1] == '1' then
  local ids = {}
  for i = 2, #ARGV - 1 - tonumber(ARGV[#ARGV]) do ids[i - 1] = ARGV[i] end
  bo_write(plan, ov, ids, out)
  local a = plan.hs
  for _ = 1, plan.nhs do
    local count = tonumber(ARGV[a + 1])
    for i = a + 2, a + 1 + count, 1000 do
      redis.call('HSET', ARGV[a], unpack(ARGV, i, math.min(a + 1 + count, i + 999)))
    end
    a = a + 2 + count
  end
  if ARGV[plan.pub] ~= '' then redis.call('PUBLISH', ARGV[plan.pub], ARGV[plan.pub + 1]) end
else
  for key, v in pairs(ov) do if v ~= '-' then redis.call('SET', key, v) end end
end
return out
"""
)

# flush() failed in MySQL after claiming: give back the claims still holding our ids.
UNDO_CLAIMS_SCRIPT = LuaScript(
    """
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then redis.call('DEL', KEYS[i]) end
end
return 0
"""
)

# A reader fills rows it loaded from MySQL, never over a writer's value (NX) and never while
# a batch for the row is pending. KEYS: per row its entity key, then the table's pending hash;
# ARGV: the missing marker's TTL, then per row its id and value.
FILL_SCRIPT = LuaScript(
    """
local pending = KEYS[#KEYS]
for i = 1, #KEYS - 1 do
  if redis.call('HEXISTS', pending, ARGV[i * 2]) == 0 then
    local v = ARGV[i * 2 + 1]
    if v == '-' then
      redis.call('SET', KEYS[i], v, 'NX', 'EX', ARGV[1])
    else
      redis.call('SET', KEYS[i], v, 'NX')
    end
  end
end
return 0
"""
)

# The worker applied (or dead-lettered) batches: drop the pending markers they set, unless a
# later batch set them again. An entry missing now, or provisional (a marker
# ending in '+': written from a caller's copy), gets a short stale mark instead, so the next
# read loads MySQL, and a reader whose SELECT ran before the COMMIT cannot cache the old row.
# ARGV: per table its pending hash, its entity-key prefix, the id of the last batch applied
# (of the table's group) and 'id,id,...'. A joint step of many groups releases in one call.
# One HMGET, one EXISTS and one HDEL per table (a SET per row only where an entry is missing or
# provisional): the worker runs this after every COMMIT, so its cost per row is the applier's.
RELEASE_SCRIPT = LuaScript(
    LUA_HELPERS
    + """
for t = 1, #ARGV, 4 do
  local pkey, prefix, through = ARGV[t], ARGV[t + 1], ARGV[t + 2]
  local applied = {}  -- marker -> whether it is at or before ``through`` (rows share batches)
  local ids, n = {}, 0
  for id in string.gmatch(ARGV[t + 3], '[^,]+') do
    n = n + 1
    ids[n] = id
  end
  -- slices of 1000 ids (Lua's unpack takes a few thousand values at most), read in place
  for s = 1, n, 1000 do
    local e = math.min(n, s + 999)
    local marks = redis.call('HMGET', pkey, unpack(ids, s, e))
    local done, kept, nd, nk = {}, {}, 0, 0
    for i = s, e do
      local m = marks[i - s + 1]
      if m then
        local ok = applied[m]
        if ok == nil then
          ok = bo_stream_le(m, through)
          applied[m] = ok
        end
        if ok then
          nd = nd + 1
          done[nd] = ids[i]
          if string.byte(m, -1) == 43 then
            redis.call('SET', prefix .. ids[i], '?', 'EX', STALE_TTL)
          else
            nk = nk + 1
            kept[nk] = prefix .. ids[i]
          end
        end
      end
    end
    -- the common case, every entry still cached, is one EXISTS; else a SET NX per row
    if nk > 0 and redis.call('EXISTS', unpack(kept, 1, nk)) < nk then
      for k = 1, nk do redis.call('SET', kept[k], '?', 'NX', 'EX', STALE_TTL) end
    end
    if nd > 0 then redis.call('HDEL', pkey, unpack(done, 1, nd)) end
  end
end
return 0
""".replace("STALE_TTL", str(STALE_TTL_S))
)


class CachePlan:
    """What one flush does to the entity and unique-index keys of one Redis pool.

    Sent as flat script arguments (``args``): rows and values stay the JSON text orjson made,
    so no number is ever converted.
    """

    def __init__(self, keys: Keys, tombstone_ttl_s: int, missing_ttl_s: int) -> None:
        self.keys = keys
        self.tombstone_ttl_s = tombstone_ttl_s
        self.missing_ttl_s = missing_ttl_s
        # filled by the script call: (key, row) of rows patched for local caches
        self.patched: dict[str, bytes] = {}
        self.entity_ops: list[list[Any]] = []  # updates and deletes
        # inserts by (entity-key prefix, pending hash, group number): their ids and rows
        self.inserts: dict[tuple[str, str, int], tuple[list[str], list[bytes]]] = {}
        self._table_keys: dict[str, tuple[str, str]] = {}
        self._run: tuple[list[str], list[bytes]] = ([], [])  # the last insert's run
        self._run_schema: EntitySchema | None = None
        self._run_group = -1
        self.claims: list[list[str]] = []
        self.hints: dict[str, str] = {}
        self.steal: dict[str, str] = {}  # unique key -> id found not to hold it any more
        self.ref_keys: list[str] = []
        self.hashes: list[list[Any]] = []  # CACHE_SCRIPT only: [key, [field, value, ...]]
        self.publish: list[str] = []  # CACHE_SCRIPT only: [channel, message]
        self.force = False
        # what a key stands for, to name a refusal: key -> (schema, index, values) / (schema, id)
        self.unique_labels: dict[str, tuple[EntitySchema, str, list[Any]]] = {}
        self.entity_labels: dict[str, tuple[EntitySchema, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.entity_ops or self.inserts or self.claims or self.ref_keys)

    def entity_keys(self) -> list[str]:
        """Every entity key the plan writes."""
        inserted = [prefix + i for (prefix, _, _), (ids, _) in self.inserts.items() for i in ids]
        return [e[1] for e in self.entity_ops] + inserted

    def add_entity(self, op: Operation, group_no: int) -> None:
        """The row's own key: insert, patch or tombstone; ``group_no`` > 0 sets its marker."""
        schema = op.schema
        if op.kind is INSERT:
            # the run of the previous insert, when this one is of its table and group (usual)
            if schema is not self._run_schema or group_no != self._run_group:
                prefix, pending = self._keys_of(schema)
                run = self.inserts.get((prefix, pending, group_no))
                if run is None:
                    run = self.inserts[(prefix, pending, group_no)] = ([], [])
                self._run, self._run_schema, self._run_group = run, schema, group_no
            ids, rows = self._run
            ids.append(str(op.id))
            rows.append(op.json_row or encoded_row(op))  # (made by validation, usually)
            return
        prefix, pending = self._keys_of(schema)
        key = prefix + str(op.id)
        entity_id = str(op.id)
        self.entity_labels[key] = (schema, op.id)
        expected = unique_before(op)
        if op.kind is DELETE:
            self.entity_ops.append(["d", key, pending, group_no, "", 0, 0, "", expected, entity_id])
        else:
            local = 1 if schema.options.local_cache is not None else 0
            # the caller's whole row: written (provisional) only where there is none to patch
            row = encoded_row(op) if group_no and op.full is not None else b""
            self.entity_ops.append(
                [
                    "u",
                    key,
                    pending,
                    group_no,
                    patch_items(op),
                    _width(schema),
                    local,
                    row,
                    expected,
                    entity_id,
                ]
            )

    def _keys_of(self, schema: EntitySchema) -> tuple[str, str]:
        """The table's entity-key prefix and pending hash."""
        table_keys = self._table_keys.get(schema.table)
        if table_keys is None:
            prefix = self.keys.entity_prefix(schema)
            table_keys = self._table_keys[schema.table] = (prefix, self.keys.pending(schema))
        return table_keys

    def add_reference_checks(self, keys: Sequence[tuple[str, EntitySchema, int]]) -> None:
        for key, schema, entity_id in keys:
            self.ref_keys.append(key)
            self.entity_labels[key] = (schema, entity_id)

    def args(self) -> list[Any]:
        """The plan as flat script arguments, its length last (parsed by ``bo_plan``)."""
        # one f-string: a join over str() of each number cost several times as much
        head = (
            f"{len(self.entity_ops)},{len(self.claims)},{len(self.hints)},{len(self.steal)},"
            f"{len(self.ref_keys)},{len(self.hashes)},{1 if self.force else 0},"
            f"{self.tombstone_ttl_s},{self.missing_ttl_s},{self.tombstone_ttl_s},{len(self.inserts)}"
        )
        out: list[Any] = [head]
        for (prefix, pending, group_no), (ids, rows) in self.inserts.items():
            out += (prefix, pending, group_no, len(ids))
            out += ids
            out += rows
        for e in self.entity_ops:
            out += [e[0], e[1], e[2], e[3], e[9]]
            if e[0] == "d":
                _flat_pairs(out, e[8])
            else:
                out += [e[5], e[6], e[7]]
                _flat_pairs(out, e[4])
                _flat_pairs(out, e[8])
        for claim in self.claims:
            out += claim if len(claim) == 4 else [*claim, ""]
        for key, value in self.hints.items():
            out += [key, value]
        for key, value in self.steal.items():
            out += [key, value]
        out += self.ref_keys
        for key, fields in self.hashes:
            out += [key, len(fields), *fields]
        out += self.publish or [""]
        out.append(len(out))
        return out


def _flat_pairs(out: list[Any], pairs: list[list[Any]]) -> None:
    out.append(len(pairs))
    for index, text in pairs:
        out += [index, text]


def _width(schema: EntitySchema) -> int:
    return len(schema.data_columns)


def unique_before(op: Operation) -> list[list[Any]]:
    """(column index, JSON text) of the unique-index values the caller's copy had, where the
    flush releases them (an edit changing them, a delete): the script refuses the flush if the
    cached row holds other values (the copy is stale: it would release values it no longer
    holds and keep the real ones claimed)."""
    schema = op.schema
    if not schema.unique_indexes:
        return []
    index = schema.data_column_index
    columns = schema.columns_by_name
    found: list[list[Any]] = []
    for unique in schema.unique_indexes.values():
        if op.kind is UPDATE and not any(c in op.values for c in unique.columns):
            continue
        for name in unique.columns:
            if name not in op.before:
                continue
            value = op.before[name]
            text = "null" if value is None else orjson.dumps(columns[name].type.to_json(value))
            found.append([index[name], text if isinstance(text, str) else text.decode()])
    return found


def patch_items(op: Operation) -> list[list[Any]]:
    """An UPDATE's changed columns as (column index, JSON text of the value)."""
    index = op.schema.data_column_index
    columns = op.schema.columns_by_name
    items: list[list[Any]] = []
    for name, value in op.values.items():
        text = "null" if value is None else orjson.dumps(columns[name].type.to_json(value)).decode()
        items.append([index[name], text])
    return items


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
        keys.append(engine.keys.entity(schema, entity_id))
        args += [entity_id, b"-" if row is None else row]
    keys.append(engine.keys.pending(schema))
    try:
        FILL_SCRIPT(engine.redis_for(schema), keys=keys, args=args)
    except redis_errors.OutOfMemoryError:
        # a fill only saves the next read a trip to MySQL: the read itself succeeded
        logger.warning("Redis is out of memory: %s rows not cached", schema.name)


def mark_stale(engine: Engine, ops: Sequence[Operation]) -> None:
    """This process's cache entries of ``ops``' rows (its column layout) may be older than MySQL
    now: a short stale mark, so the next read loads MySQL and no reader caches an older copy."""
    for pool, pool_ops in ops_by_cache_pool(ops).items():
        pipe = engine.redis(pool).pipeline(transaction=False)
        for op in pool_ops:
            pipe.set(engine.keys.entity(op.schema, op.id), STALE, ex=STALE_TTL_S)
        pipe.execute()


def release_pending(engine: Engine, applied: Sequence[tuple[Sequence[Operation], str]]) -> None:
    """After the worker applied (or dead-lettered) batches: for each (operations, id of the last
    batch applied of their group), in one script call per Redis pool."""
    # pool -> (table, through) -> (pending hash, entity-key prefix, ids in order, each once)
    by_pool: dict[str, dict[tuple[str, str], tuple[str, str, dict[int, None]]]] = {}
    for ops, through_batch in applied:
        for op in ops:
            schema = op.schema
            pool = schema.options.redis_cache
            if pool is None:
                continue
            tables = by_pool.get(pool)
            if tables is None:
                tables = by_pool[pool] = {}
            table = tables.get((schema.table, through_batch))
            if table is None:
                prefix = engine.keys.entity_prefix(schema)
                table = tables[(schema.table, through_batch)] = (
                    engine.keys.pending(schema),
                    prefix,
                    {},
                )
            table[2][op.id] = None
    for pool, tables in by_pool.items():
        args: list[Any] = []
        for (_, through_batch), (pending, prefix, ids) in tables.items():
            args += (pending, prefix, through_batch, ",".join(map(str, ids)))
        RELEASE_SCRIPT(engine.redis(pool), args=args)
