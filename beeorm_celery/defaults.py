"""Every default in one place, the unit in the name."""

from __future__ import annotations

DEFAULT_POOL = "default"
DEFAULT_ASYNC_GROUP = "default"
DEFAULT_KEY_PREFIX = "bo"

# Entities
DEFAULT_DECIMAL_PRECISION = 10
DEFAULT_DECIMAL_SCALE = 2
DEFAULT_LOCAL_CACHE_ENTRIES = 10_000
# How many ids one Redis INCRBY reserves for this process. 1 keeps ids in creation order across
# processes; a larger block saves a Redis round trip per new entity (bulk producers want it).
DEFAULT_ID_BLOCK_SIZE = 1
# Ids handed out per MySQL write of the ids' high-water mark (see id_reserve): also the most
# ids a lost Redis counter skips, and how many new ids a MySQL outage allows.
DEFAULT_ID_CEILING_LEAP = 10_000

# MySQL connections
DEFAULT_MYSQL_POOL_SIZE = 10
DEFAULT_MYSQL_CONNECT_TIMEOUT_S = 5.0
# A connection idle longer than this is pinged before use (MySQL drops idle ones after wait_timeout)
DEFAULT_MYSQL_PING_AFTER_IDLE_S = 30.0

# Caches
# A delete leaves a tombstone in Redis so a stale MySQL read (the DELETE may still be queued)
# cannot bring the entity back; after this long the queued SQL has long landed.
DEFAULT_TOMBSTONE_TTL_S = 7 * 24 * 3600
# A read that finds no row caches "missing" for this long only: a row inserted behind the ORM's
# back (SQL, another application) shows up at the latest after it.
DEFAULT_MISSING_TTL_S = 60

# Async reads
DEFAULT_QUERY_WORKERS = 8
