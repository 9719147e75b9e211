"""Every error this library raises.

::

    BeeormError
    ├── ConfigError                  registry / entity declaration is inconsistent
    │   └── MissingTableError        MySQL has no such table: run engine.update_schema()
    ├── ValidationError              a tracked entity holds a value MySQL would not take
    ├── ReadOnlyEntityError          an entity was changed without ctx.edit() (also AttributeError)
    ├── FlushError                   MySQL refused a synchronous flush (code, statement)
    │   └── DuplicateKeyError        ... because of a unique index (also flush_async, at once)
    ├── QueryError                   a read failed in MySQL, or was refused before it was sent
    │   ├── QueryBuildError          ... refused: bad identifier, operator or value (nothing sent)
    │   ├── QueryTimeoutError        ... because it ran past its timeout
    │   ├── QueryCancelledError      ... because it was cancelled (killed in MySQL)
    │   └── QueryUnavailableError    ... because MySQL was out of reach (also a
    │                                DatabaseUnavailableError: written is False)
    ├── AllQueriesFailedError        race(): every future failed (carries all errors)
    ├── UnavailableError             Redis or MySQL could not do its part; ``written`` tells
    │   │                            whether anything was written (True, False, None: unknown)
    │   ├── CacheUnavailableError    Redis unreachable, loading, read-only or refusing the command
    │   │   └── CacheFullError       ... out of memory (maxmemory reached, noeviction)
    │   └── DatabaseUnavailableError MySQL unreachable, or the connection was lost
    └── AsyncFlushError              the async flush machinery
        ├── BacklogFullError         a group holds max_pending_batches: nothing queued or cached
        ├── MalformedBatchError      a queued batch cannot be read (bad bytes, signature, schema)
        │   ├── SchemaLagError       ... because it names a table/column this worker lacks (waits)
        │   └── SignatureError       ... because its signature does not verify (the group holds)
        ├── TemporaryApplyError      MySQL said "try again later"; the batch stays at the head
        └── DeadLetterNotFoundError  no dead letter with that id (also KeyError)
"""

from __future__ import annotations


class BeeormError(Exception):
    """The root of every error raised by beeorm_celery."""


class ConfigError(BeeormError):
    """The registry or an entity declaration is inconsistent; the message says how to fix it."""


class MissingTableError(ConfigError):
    """A table the entities need does not exist in MySQL; ``engine.update_schema()`` creates it."""

    def __init__(self, message: str, table: str | None = None) -> None:
        self.table = table
        super().__init__(message)


class ValidationError(BeeormError):
    """A tracked entity holds a value that would not be stored as given.

    Raised by ``flush()`` / ``flush_async()`` before anything is written, cached or queued.
    """

    def __init__(self, entity: str, field: str, reason: str, entity_id: int | None = None) -> None:
        self.entity = entity
        self.field = field
        self.reason = reason
        self.entity_id = entity_id
        where = f"{entity}(id={entity_id})" if entity_id is not None else entity
        super().__init__(f"{where}.{field}: {reason}")


class ReadOnlyEntityError(BeeormError, AttributeError):
    """An entity that is not tracked for editing was changed."""


class FlushError(BeeormError):
    """MySQL refused the statements of a synchronous ``flush()``; nothing was committed."""

    def __init__(self, message: str, code: int | None = None, statement: str | None = None) -> None:
        self.code = code
        self.statement = statement
        super().__init__(message)


class DuplicateKeyError(FlushError):
    """A unique-index value is held by another entity: MySQL said so (1062) to ``flush()``, or
    the cache or one indexed lookup said so to ``flush()`` / ``flush_async()`` before anything
    was written or queued.

    ``entity``, ``index``, ``value`` (a tuple, one item per column) and ``holder_id`` name the
    clash where they are known.
    """

    def __init__(
        self,
        message: str,
        code: int | None = None,
        statement: str | None = None,
        *,
        entity: str | None = None,
        index: str | None = None,
        value: tuple[object, ...] | None = None,
        holder_id: int | None = None,
    ) -> None:
        self.entity = entity
        self.index = index
        self.value = value
        self.holder_id = holder_id
        super().__init__(message, code=code, statement=statement)


class QueryError(BeeormError):
    """A read query failed in MySQL, or was refused before anything was sent (``code`` None)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class QueryBuildError(QueryError):
    """A query was refused while being built: an identifier, operator or value that cannot be
    sent safely. The message names the bad part; nothing reached MySQL."""


class QueryTimeoutError(QueryError):
    """A read ran past its ``timeout=``; MySQL stopped it."""


class QueryCancelledError(QueryError):
    """A read was cancelled; MySQL killed it."""


class AllQueriesFailedError(BeeormError):
    """``race()`` found no successful future; ``errors`` holds each one's exception in order."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors
        summary = "; ".join(f"{type(e).__name__}: {e}" for e in errors)
        super().__init__(f"all {len(errors)} queries failed: {summary}")


class UnavailableError(BeeormError):
    """Redis or MySQL failed under a call.

    ``written`` says what the call left behind: False, nothing was written (safe to repeat);
    True, part of it was written (the message says which part); None, unknown (the link broke
    while the server may have been executing it).
    """

    def __init__(self, message: str, written: bool | None = False) -> None:
        self.written = written
        super().__init__(message)


class CacheUnavailableError(UnavailableError):
    """Redis could not be reached, is loading, is read-only, or refused the command."""


class CacheFullError(CacheUnavailableError):
    """Redis is out of memory (``maxmemory`` reached and nothing may be evicted)."""


class DatabaseUnavailableError(UnavailableError):
    """MySQL could not be reached, or the connection was lost."""


class QueryUnavailableError(QueryError, DatabaseUnavailableError):
    """A read query could not reach MySQL (cannot connect, the server went away, the connection
    was lost). Both a ``QueryError`` (with the MySQL ``code``) and a ``DatabaseUnavailableError``
    (``written`` False: a read writes nothing), as a synchronous read reports it."""


class AsyncFlushError(BeeormError):
    """Something went wrong in the async flush machinery."""


class BacklogFullError(AsyncFlushError):
    """A group already holds ``max_pending_batches`` pending batches; nothing was queued or cached.

    The workers are behind (MySQL down or slow): try again later, or flush synchronously.
    """

    def __init__(self, message: str, group: str, pending: int, limit: int) -> None:
        self.group = group
        self.pending = pending
        self.limit = limit
        self.written = False
        super().__init__(message)


class MalformedBatchError(AsyncFlushError):
    """A queued batch or message cannot be read safely; it is never executed.

    ``replayable``: the bytes were readable and the reason is one an operator can fix (a schema
    or value this worker does not take, a secret): its dead letter can be replayed. Otherwise
    the bytes themselves are unreadable and the dead letter can only be removed.
    """

    def __init__(self, message: str, replayable: bool = False) -> None:
        self.replayable = replayable
        super().__init__(message)


class SchemaLagError(MalformedBatchError):
    """A batch names a table, a column or a format this worker does not know yet.

    A producer was deployed before the workers (or before ``update_schema()``): the batch waits
    at the head of its group, like a temporary error, up to
    ``AsyncFlushSettings.schema_lag_dead_letter_after_s``; then it is dead-lettered replayably.
    ``cause`` names what is missing without naming the batch ("column item.color"), so later
    batches missing the same thing are recognised.
    """

    def __init__(self, message: str, cause: str) -> None:
        self.cause = cause
        super().__init__(message, replayable=True)


class SignatureError(MalformedBatchError):
    """A batch's signature is missing or does not verify with any of this worker's secrets.

    The group holds (logged at ERROR on every attempt) up to
    ``AsyncFlushSettings.bad_signature_dead_letter_after_s``; the dead letter keeps the
    signature and replays once a worker holds the secret that verifies it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, replayable=True)


class TemporaryApplyError(AsyncFlushError):
    """MySQL reported a temporary failure; the batch stays at the head of its group."""

    def __init__(self, message: str, code: int | None = None, group: str | None = None) -> None:
        self.code = code
        self.group = group
        super().__init__(message)


class DeadLetterNotFoundError(AsyncFlushError, KeyError):
    """No dead letter has that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "dead letter not found"
