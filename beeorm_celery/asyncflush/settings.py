"""Settings of the async flush, with their defaults."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from beeorm_celery.errors import ConfigError

DEFAULT_TRIGGER_TTL_S = 30.0
DEFAULT_MAX_BATCHES_PER_TRANSACTION = 500
DEFAULT_MAX_OPERATIONS_PER_TRANSACTION = 10_000
DEFAULT_DRAIN_BUDGET_S = 5.0
DEFAULT_LINGER_S = 0.05
DEFAULT_COALESCE_S = 0.005
DEFAULT_YIELD_AFTER_S = 0.5
DEFAULT_ADOPT_AFTER_S = 0.01
DEFAULT_RETRY_BACKOFF_S = 0.5
DEFAULT_RETRY_BACKOFF_MAX_S = 60.0
DEFAULT_UNKNOWN_ERROR_DEAD_LETTER_AFTER_S = 300.0
DEFAULT_DEAD_LETTER_MAX_PER_GROUP = 100_000
DEFAULT_DEAD_LETTER_MAX_AGE_S = 30 * 24 * 3600.0
DEFAULT_LOCK_WAIT_TIMEOUT_S = 10
DEFAULT_SWEEP_INTERVAL_S = 5.0
DEFAULT_SWEEP_MIN_AGE_S = 0.0
DEFAULT_SCHEMA_LAG_DEAD_LETTER_AFTER_S = 1800.0
DEFAULT_BAD_SIGNATURE_DEAD_LETTER_AFTER_S = 1800.0
DEFAULT_MAX_STATEMENT_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_TRANSACTION_BYTES = 32 * 1024 * 1024
DEFAULT_REPLY_SPIN_US = 200


@dataclass(frozen=True)
class AsyncFlushSettings:
    """How batches are queued and applied. Pass to ``Registry(async_flush=...)``.

    signing_secret
        When set, every batch is signed (HMAC-SHA256) and a worker refuses a batch whose
        signature is missing or verifies with none of its secrets: the group holds (ERROR on
        every attempt) up to ``bad_signature_dead_letter_after_s``, then the batch becomes a
        dead letter that replays once a worker holds the right secret. A list rotates secrets:
        batches are signed with the first, and any of them verifies (deploy the new secret
        second everywhere, then first, then drop the old one).
    trigger_ttl_s
        Life of the "a wake-up is on its way" flag. A task lost with its message heals after
        this long at the latest (the periodic sweep usually sooner).
    max_batches_per_transaction / max_operations_per_transaction
        How much of a group's backlog one MySQL transaction applies.
    drain_budget_s
        How long one task keeps applying one group before it hands over (re-queues itself),
        so a busy group cannot starve the others on the same worker.
    linger_s
        How long a task waits for more batches when its group's log is empty before it ends.
        While it waits, producers skip publishing (their flush stays one Redis round trip).
    coalesce_s
        Once a worker has caught up with its group, it waits this long before the next
        transaction, so that one transaction applies many batches instead of one (a few
        milliseconds more delay before the SQL lands, much less MySQL and worker CPU per row).
    yield_after_s
        A worker draining one group hands over (re-queues its task) when another group's oldest
        batch has waited this long, so a busy group cannot keep every worker process to itself.
    adopt_after_s
        A worker applying one group also takes on every other group it serves (its queues)
        whose oldest batch has waited this long, and turns over them one transaction at a time
        (see ``asyncflush/rotation.py``): with more groups than worker processes, no process
        lingers on one group while others wait, and no group needs a message per visit.
    retry_backoff_s / retry_backoff_max_s
        Exponential backoff (with full jitter) between attempts after a temporary error.
    unknown_error_dead_letter_after_s
        An error whose class is unknown is retried like a temporary one; a head batch still
        failing with it after this long is dead-lettered.
    dead_letter_max_per_group / dead_letter_max_age_s
        Oldest dead letters beyond the cap, or older than the age, are dropped (logged).
    lock_wait_timeout_s
        ``innodb_lock_wait_timeout`` of the applier's sessions: a row locked by someone else
        fails the attempt after this long (error 1205, retried) instead of holding a worker.
    sweep_interval_s / sweep_min_age_s
        A worker wakes, every interval, each group with a pending batch (at least the minimum
        age old) and no trigger flag: queued by a process without an adapter installed, or its
        wake-up failed, or its flag expired after a lost message. So such a batch waits at most
        about one interval for a running worker.
    max_pending_batches
        Backpressure: at most this many batches pending per group (an int for every group, or
        ``{group: limit}``; None, the default: no limit). A ``flush_async()`` that would add to a
        group already holding that many raises ``BacklogFullError``, and nothing of it is queued
        or cached. Bounds the Redis memory a long MySQL outage can fill.
    schema_lag_dead_letter_after_s
        A batch naming a table, column or batch format this worker does not know, or that
        MySQL's table lacks (errors 1054, 1146), waits at the head of its group ("schema ahead:
        upgrade workers / run update_schema") up to this long (default 30 minutes), then it is
        dead-lettered replayably; later batches failing for the same reason do not wait again.
    bad_signature_dead_letter_after_s
        The same for a batch whose signature does not verify (default 30 minutes).
    max_statement_bytes
        A multi-row INSERT is cut before it grows past this, or past the server's
        ``max_allowed_packet`` (read once per pool) less a margin, whichever is smaller.
    max_transaction_bytes
        A transaction takes batches up to about this many bytes of queued payload.
    reply_spin_us
        How long ``flush_async()`` polls for its script's reply (microseconds, default 200)
        before it blocks on the socket. Waking a sleeping CPU costs tens of microseconds, more
        in a virtual machine, so polling answers sooner; it spends up to this much CPU per
        flush while the caller waits anyway. A flush whose reply is expected well after that
        (a large one: the engine learns how the wait grows with a flush's size) blocks at once,
        leaving the CPU to Redis. 0: block at once (a host whose cores are always busy gains
        nothing from polling).
    pack_statements
        The applier sends a step's statements several to a packet (multi-statement packets on
        connections of its own, see ``asyncflush/packed.py``): a batch of 100 edits is one
        round trip instead of 100. False sends them one at a time, for a proxy between the
        workers and MySQL that refuses multi-statement packets.
    """

    signing_secret: str | bytes | Sequence[str | bytes] | None = None
    trigger_ttl_s: float = DEFAULT_TRIGGER_TTL_S
    max_batches_per_transaction: int = DEFAULT_MAX_BATCHES_PER_TRANSACTION
    max_operations_per_transaction: int = DEFAULT_MAX_OPERATIONS_PER_TRANSACTION
    drain_budget_s: float = DEFAULT_DRAIN_BUDGET_S
    linger_s: float = DEFAULT_LINGER_S
    coalesce_s: float = DEFAULT_COALESCE_S
    yield_after_s: float = DEFAULT_YIELD_AFTER_S
    adopt_after_s: float = DEFAULT_ADOPT_AFTER_S
    retry_backoff_s: float = DEFAULT_RETRY_BACKOFF_S
    retry_backoff_max_s: float = DEFAULT_RETRY_BACKOFF_MAX_S
    unknown_error_dead_letter_after_s: float = DEFAULT_UNKNOWN_ERROR_DEAD_LETTER_AFTER_S
    dead_letter_max_per_group: int = DEFAULT_DEAD_LETTER_MAX_PER_GROUP
    dead_letter_max_age_s: float = DEFAULT_DEAD_LETTER_MAX_AGE_S
    lock_wait_timeout_s: int = DEFAULT_LOCK_WAIT_TIMEOUT_S
    sweep_interval_s: float = DEFAULT_SWEEP_INTERVAL_S
    sweep_min_age_s: float = DEFAULT_SWEEP_MIN_AGE_S
    max_pending_batches: int | Mapping[str, int] | None = None
    schema_lag_dead_letter_after_s: float = DEFAULT_SCHEMA_LAG_DEAD_LETTER_AFTER_S
    bad_signature_dead_letter_after_s: float = DEFAULT_BAD_SIGNATURE_DEAD_LETTER_AFTER_S
    max_statement_bytes: int = DEFAULT_MAX_STATEMENT_BYTES
    max_transaction_bytes: int = DEFAULT_MAX_TRANSACTION_BYTES
    reply_spin_us: int = DEFAULT_REPLY_SPIN_US
    pack_statements: bool = True

    def __post_init__(self) -> None:
        spin = self.reply_spin_us
        if not isinstance(spin, int) or isinstance(spin, bool) or spin < 0:
            raise ConfigError(f"reply_spin_us must be an int, 0 or more; got {spin!r}")
        limits = self.max_pending_batches
        values = limits.values() if isinstance(limits, Mapping) else [limits]
        for value in values:
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ConfigError(
                    f"max_pending_batches must be a positive int, a {{group: int}} mapping or "
                    f"None; got {limits!r}"
                )

    def pending_limit(self, group: str) -> int | None:
        """The most batches ``group`` may hold pending (None: no limit)."""
        limits = self.max_pending_batches
        if isinstance(limits, Mapping):
            return limits.get(group)
        return limits

    @property
    def secrets(self) -> tuple[bytes, ...]:
        """Every accepted signing secret, the one that signs first (empty: no signing)."""
        value = self.signing_secret
        if value is None:
            return ()
        items = [value] if isinstance(value, str | bytes) else list(value)
        return tuple(s.encode() if isinstance(s, str) else bytes(s) for s in items)

    @property
    def secret_bytes(self) -> bytes | None:
        """The secret that signs new batches (the first of the list), or None."""
        secrets = self.secrets
        return secrets[0] if secrets else None
