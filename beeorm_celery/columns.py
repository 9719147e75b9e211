"""Column types: how each Python type is validated, stored in MySQL and cached as JSON.

One class per supported annotation. Every conversion a value goes through (validation,
SQL literal, MySQL result, cache / batch JSON) lives next to the others for the same type,
so a new type is one class here and one line in ``column_type_for``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Context, Decimal, InvalidOperation, localcontext
from enum import Enum
from typing import TYPE_CHECKING, Any

from pymysql.converters import escape_item, escape_string

if TYPE_CHECKING:
    from collections.abc import Callable

    from beeorm_celery.entity import Entity

_BIGINT_MIN = -(2**63)
_BIGINT_MAX = 2**63 - 1
_UBIGINT_MAX = 2**64 - 1
_TEXT_MAX_BYTES = 65_535
_BLOB_MAX_BYTES = 65_535

# Exactly what ``isoformat()`` writes for a date / a naive datetime of years 1000-9999 (no
# '.000000': it leaves out a zero microsecond). A string of this shape that ``fromisoformat``
# reads is one ``from_json`` then ``validate`` take as is (the compiled batch decoder).
ISO_DATE = re.compile(r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}").fullmatch
ISO_DATETIME = re.compile(
    r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.(?!000000)[0-9]{6})?"
).fullmatch


def _canonical_decimal(precision: int, scale: int) -> Callable[[str], re.Match[str] | None]:
    """A match for exactly what ``to_json`` writes of a stored DECIMAL(precision, scale):
    ``scale`` places, at most ``precision - scale`` digits before the point, no leading zero,
    no sign on a zero."""
    before = "0" if precision == scale else f"(?:0|[1-9][0-9]{{0,{precision - scale - 1}}})"
    after = rf"\.[0-9]{{{scale}}}" if scale else ""
    return re.compile(rf"(?!-0\.?0*\Z)-?{before}{after}").fullmatch


class InvalidValue(ValueError):
    """A value a column cannot take; the message is the reason shown to the user."""


def _shown(value: Any, limit: int = 60) -> str:
    """A value for a message: short, and safe for an int too long for str() (Python's limit
    of 4300 digits would turn a ValidationError into a bare ValueError)."""
    try:
        text = repr(value) if not isinstance(value, Decimal) else str(value)
    except ValueError:
        text = f"<int of {value.bit_length()} bits>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ColumnType:
    """Base of every column type. Subclasses override what differs."""

    python_name = "object"
    zero: Any = None  # the value a NOT NULL column gets when none is given; None = required

    def sql_type(self) -> str:
        raise NotImplementedError

    def validate(self, value: Any) -> Any:
        """Return the value as stored, or raise InvalidValue naming the reason."""
        raise NotImplementedError

    def to_sql(self, value: Any) -> Any:
        """The value handed to PyMySQL's escaping."""
        return value

    def sql_literal(self, value: Any) -> str:
        """The SQL literal of a non-NULL stored value, escaped by PyMySQL's rules.

        Types with a simple form override this: a worker builds one literal per value of
        every multi-row INSERT, and PyMySQL's per-value type dispatch is most of that cost.
        """
        return str(escape_item(self.to_sql(value), "utf8mb4"))

    def from_sql(self, raw: Any) -> Any:
        return raw

    def to_json(self, value: Any) -> Any:
        return value

    # --- source for the compiled row codec (rowcodec.py); ``v`` names the value, ``t`` self

    def fast_check_source(self, v: str, t: str) -> str | None:
        """An expression true only for a value ``validate`` returns unchanged (the compiled
        codec then skips ``validate``); None: every value goes through ``validate``."""
        return None

    def json_source(self, v: str, t: str) -> str:
        """An expression computing ``to_json`` of a non-NULL stored value."""
        return f"{t}.to_json({v})"

    def fast_value_source(self, v: str, t: str) -> tuple[str, str] | None:
        """(check, expression), for a type whose valid values ``validate`` may normalise: for
        a value the check accepts, the expression equals ``validate(value)``. Tried when
        ``fast_check_source`` is None; None: every value goes through ``validate``."""
        return None

    def fast_json_check_source(self, v: str, t: str, j: str) -> str | None:
        """Like ``fast_check_source``, for a type whose check is best made on the value's JSON
        text: true only for a value ``validate`` returns unchanged, binding ``j`` to its
        ``json_dump_source`` on the way (the row's JSON then reuses it). Tried before
        ``fast_value_source``; None: there is no such check."""
        return None

    def json_dump_source(self, v: str, t: str) -> str:
        """``json_source`` where the value goes into the one ``orjson.dumps`` of a whole row:
        a type orjson writes exactly as ``to_json`` would may go in as it is."""
        return self.json_source(v, t)

    def json_decode_source(self, x: str, t: str) -> tuple[str, str] | None:
        """(check, expression) for the compiled batch decoder: for a JSON value ``x`` the check
        accepts, the expression equals ``validate(from_json(x))`` (it may raise; the decoder then
        takes the full path, which names the problem). None: ``from_json`` then ``validate``."""
        return None

    def sql_literal_source(self, v: str, t: str) -> str:
        """An expression computing ``sql_literal`` of a non-NULL stored value."""
        return f"{t}.sql_literal({v})"

    def json_literal_source(self, j: str, x: str, t: str) -> str:
        """``sql_literal`` of a value the compiled decoder took (``json_decode_source``), where
        ``j`` names its JSON form and ``x`` the stored value. A type whose JSON form already
        is the literal's text says so here, and the worker skips formatting the value again."""
        return self.sql_literal_source(x, t)

    def from_json(self, raw: Any) -> Any:
        """The value from its JSON form (a cached row, a queued batch), or InvalidValue.

        Strict about the JSON type: a batch is data from outside this process, and what is
        decoded must be what ``to_json`` could have written, not something coerced into it."""
        return raw

    def _json_of(self, raw: Any, *kinds: type) -> Any:
        if (isinstance(raw, bool) and bool not in kinds) or not isinstance(raw, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise InvalidValue(
                f"{_shown(raw, 40)} is not the JSON form of {self.python_name} ({names} expected)"
            )
        return raw

    def _wrong_type(self, value: Any) -> InvalidValue:
        got = f"{type(value).__name__} {_shown(value)}"
        return InvalidValue(f"expected {self.python_name}, got {got}")


class IntType(ColumnType):
    python_name = "int"
    zero = 0

    def sql_type(self) -> str:
        return "bigint"

    def sql_literal(self, value: Any) -> str:
        return str(int(value))

    def fast_check_source(self, v: str, t: str) -> str:
        return f"type({v}) is int and {_BIGINT_MIN} <= {v} <= {_BIGINT_MAX}"

    def json_decode_source(self, x: str, t: str) -> tuple[str, str]:
        return self.fast_check_source(x, t), x

    def sql_literal_source(self, v: str, t: str) -> str:
        return f"str({v})"

    def json_source(self, v: str, t: str) -> str:
        return v

    def validate(self, value: Any) -> int:
        if type(value) is not int:  # bool is an int subclass but never meant as one
            if isinstance(value, int) and not isinstance(value, bool):
                value = int(value)
            else:
                raise self._wrong_type(value)
        if not _BIGINT_MIN <= value <= _BIGINT_MAX:
            raise InvalidValue(f"{_shown(value)} is out of the BIGINT range")
        return int(value)


class BoolType(ColumnType):
    python_name = "bool"
    zero = False

    def sql_type(self) -> str:
        return "tinyint(1)"

    def sql_literal(self, value: Any) -> str:
        return "1" if value else "0"

    def fast_check_source(self, v: str, t: str) -> str:
        return f"type({v}) is bool"

    def json_decode_source(self, x: str, t: str) -> tuple[str, str]:
        return f"type({x}) is bool", x

    def sql_literal_source(self, v: str, t: str) -> str:
        return f"('1' if {v} else '0')"

    def json_source(self, v: str, t: str) -> str:
        return v

    def validate(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self._wrong_type(value)
        return value

    def to_sql(self, value: Any) -> Any:
        return 1 if value else 0

    def from_sql(self, raw: Any) -> bool:
        return bool(raw)

    def from_json(self, raw: Any) -> bool:
        return bool(self._json_of(raw, bool))  # not bool(raw): 7 or "no" are not booleans


class FloatType(ColumnType):
    python_name = "float"
    zero = 0.0

    def sql_type(self) -> str:
        return "double"

    def fast_check_source(self, v: str, t: str) -> str:
        return f"type({v}) is float and _isfinite({v})"

    def json_decode_source(self, x: str, t: str) -> tuple[str, str]:
        return self.fast_check_source(x, t), x

    def json_source(self, v: str, t: str) -> str:
        return v

    def validate(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong_type(value)
        try:
            number = float(value)
        except OverflowError:  # an int beyond the largest double
            bits = int(value).bit_length()  # not str(value): too many digits for str()
            raise InvalidValue(f"an int of {bits} bits is beyond the DOUBLE range") from None
        if not math.isfinite(number):
            raise InvalidValue(f"{number} cannot be stored (MySQL has no NaN or infinity)")
        return number

    def from_sql(self, raw: Any) -> float:
        return float(raw)

    def from_json(self, raw: Any) -> float:
        return self.validate(self._json_of(raw, int, float))  # 10**400 would overflow float()


@dataclass(frozen=True)
class DecimalType(ColumnType):
    precision: int
    scale: int
    _quantum: Decimal = field(init=False, repr=False, compare=False)
    _context: Context = field(init=False, repr=False, compare=False)
    _quiet: Context = field(init=False, repr=False, compare=False)
    _canonical: Callable[[str], re.Match[str] | None] = field(init=False, repr=False, compare=False)
    python_name = "Decimal"

    def __post_init__(self) -> None:
        # Made once: building a quantum and a context per value cost more than the checks.
        object.__setattr__(self, "_quantum", Decimal(1).scaleb(-self.scale))
        object.__setattr__(self, "_context", Context(prec=self.precision + 1))
        # the compiled codec's quantize (``fast_value_source``): NaN instead of an exception
        object.__setattr__(self, "_quiet", Context(prec=self.precision + 1, traps=[]))
        object.__setattr__(self, "_canonical", _canonical_decimal(self.precision, self.scale))

    @property
    def zero(self) -> Decimal:
        return Decimal(0).quantize(Decimal(1).scaleb(-self.scale))

    def sql_type(self) -> str:
        return f"decimal({self.precision},{self.scale})"

    def sql_literal(self, value: Any) -> str:
        return format(value, "f")

    def json_source(self, v: str, t: str) -> str:
        return f"format({v}, 'f')"

    def json_decode_source(self, x: str, t: str) -> tuple[str, str]:
        # the text to_json writes (exactly `scale` places, no sign on zero, short enough) is
        # the stored value's own text: one pattern match says so. Anything else (another
        # release's "1.5", a hand-fixed batch) takes the full path.
        return f"type({x}) is str and {t}._canonical({x}) is not None", f"_Decimal({x})"

    def json_literal_source(self, j: str, x: str, t: str) -> str:
        return j  # the canonical text is what format(value, 'f') writes

    def fast_json_check_source(self, v: str, t: str, j: str) -> str | None:
        # The usual value is stored already: its text has exactly `scale` places, is short
        # enough and is no negative zero, which the pattern says at once (a NaN, an infinity
        # or str()'s exponent form never matches, so a match is format(value, 'f') too). Half
        # the cost of a quantize and a format, and the text is the row's JSON value.
        # Not at scale 0: Decimal('1E+1') writes '10' but is stored as Decimal('10').
        # The pattern is asked only when plain string tests do not settle it: a text with no
        # exponent, its point `scale` places from the end, no sign and short enough is a
        # stored positive value's (about half the pattern's cost; a negative takes the pattern).
        if not self.scale:
            return None
        s, p = self.scale, self.precision
        return (
            f"type({v}) is _Decimal and (({j} := str({v}))[-{s + 1}:-{s}] == '.'"
            f" and len({j}) <= {p + 1} and {j}[0] != '-' and 'E' not in {j}"
            f" or {t}._canonical({j}) is not None)"
        )

    def fast_value_source(self, v: str, t: str) -> tuple[str, str]:
        # validate's common case, inline: one quantize, exact and short enough (a zero takes
        # validate, which drops its sign; a quantize that fails gives NaN, never equal)
        q = f"_{v}q"
        check = (
            f"type({v}) is _Decimal and {v}.is_finite() and not {v}.is_zero()"
            f" and ({q} := {v}.quantize({t}._quantum, context={t}._quiet)) == {v}"
            f" and {q}.adjusted() < {self.precision - self.scale}"
        )
        return check, q

    def sql_literal_source(self, v: str, t: str) -> str:
        return f"format({v}, 'f')"

    def validate(self, value: Any) -> Decimal:
        if type(value) is Decimal:
            # The common case, a value that fits, is one quantize: exact (nothing rounded
            # away) and short enough before the point. Anything else takes the checks below,
            # which say what is wrong.
            fast: Decimal | None
            try:
                fast = value.quantize(self._quantum, context=self._context)
            except InvalidOperation:
                fast = None
            if fast is not None and fast == value and fast.adjusted() < self.precision - self.scale:
                return fast.copy_abs() if fast.is_zero() else fast
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            raise self._wrong_type(value)
        value = Decimal(value)
        if not value.is_finite():
            raise InvalidValue(f"{value} cannot be stored in DECIMAL")
        # Counted on the digits, not with arithmetic: the default context has 28 digits, so
        # quantize() on a DECIMAL(65,30) value raised InvalidOperation instead of saying why.
        _, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)
        fraction_digits = -exponent
        if fraction_digits > self.scale:
            beyond = digits[-(fraction_digits - self.scale) :]
            if any(beyond):
                raise InvalidValue(
                    f"{_shown(value, 80)} has more than {self.scale} decimal places "
                    f"(DECIMAL({self.precision},{self.scale}))"
                )
        integer_digits = 0 if value.is_zero() else max(0, len(digits) + exponent)
        if integer_digits > self.precision - self.scale:
            raise InvalidValue(
                f"{_shown(value, 80)} does not fit DECIMAL({self.precision},{self.scale}): "
                f"at most {self.precision - self.scale} digits before the point"
            )
        # The stored form, as MySQL gives it back: exactly `scale` places, no negative zero.
        # (So the cache, unique-index keys and change detection see one form per number.)
        with localcontext() as context:
            context.prec = self.precision + 1
            stored: Decimal = value.quantize(Decimal(1).scaleb(-self.scale))
        return stored.copy_abs() if stored.is_zero() else stored

    def to_sql(self, value: Any) -> Any:
        return value

    def from_sql(self, raw: Any) -> Decimal:
        return Decimal(raw)

    def to_json(self, value: Any) -> Any:
        return format(value, "f")

    def from_json(self, raw: Any) -> Decimal:
        try:  # a string (to_json's form) or an int; Decimal([0, [1], -2]) is a number too
            return Decimal(self._json_of(raw, str, int))
        except InvalidOperation as e:
            raise InvalidValue(f"{_shown(raw, 40)} is not a decimal") from e


@dataclass(frozen=True)
class StringType(ColumnType):
    max_length: int | None  # None: TEXT
    python_name = "str"
    zero = ""

    def sql_type(self) -> str:
        return f"varchar({self.max_length})" if self.max_length else "text"

    def sql_literal(self, value: Any) -> str:
        return "'" + str(escape_string(value)) + "'"

    def fast_check_source(self, v: str, t: str) -> str:
        # ASCII: valid UTF-8, and as many bytes as characters, so one length check does both
        limit = self.max_length or _TEXT_MAX_BYTES
        return f"type({v}) is str and {v}.isascii() and len({v}) <= {limit}"

    def json_source(self, v: str, t: str) -> str:
        return v

    def json_decode_source(self, x: str, t: str) -> tuple[str, str]:
        return self.fast_check_source(x, t), x

    def sql_literal_source(self, v: str, t: str) -> str:
        return f'("\'" + _escape_string({v}) + "\'")'

    def validate(self, value: Any) -> str:
        if not isinstance(value, str):
            raise self._wrong_type(value)
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise InvalidValue(f"not valid UTF-8 text ({e.reason} at position {e.start})") from e
        if self.max_length is not None:
            if len(value) > self.max_length:
                raise InvalidValue(
                    f"{len(value)} characters, more than max_length={self.max_length}"
                )
        elif size > _TEXT_MAX_BYTES:
            raise InvalidValue(f"{size} bytes, more than a TEXT column holds ({_TEXT_MAX_BYTES})")
        return value


@dataclass(frozen=True)
class BytesType(ColumnType):
    max_length: int | None  # None: BLOB
    python_name = "bytes"
    zero = b""

    def sql_type(self) -> str:
        return f"varbinary({self.max_length})" if self.max_length else "blob"

    def fast_check_source(self, v: str, t: str) -> str:
        return f"type({v}) is bytes and len({v}) <= {self.max_length or _BLOB_MAX_BYTES}"

    def json_source(self, v: str, t: str) -> str:
        return f"_b64({v}).decode('ascii')"

    def validate(self, value: Any) -> bytes:
        if isinstance(value, bytearray | memoryview):
            value = bytes(value)
        if not isinstance(value, bytes):
            raise self._wrong_type(value)
        limit = self.max_length or _BLOB_MAX_BYTES
        if len(value) > limit:
            kind = f"max_length={self.max_length}" if self.max_length else "a BLOB column holds"
            raise InvalidValue(f"{len(value)} bytes, more than {kind} ({limit})")
        return value

    def from_sql(self, raw: Any) -> bytes:
        return bytes(raw)

    def to_json(self, value: Any) -> Any:
        return base64.b64encode(value).decode("ascii")

    def from_json(self, raw: Any) -> bytes:
        try:
            return base64.b64decode(self._json_of(raw, str), validate=True)
        except binascii.Error as e:
            raise InvalidValue(f"{_shown(raw, 40)} is not base64") from e


class DateType(ColumnType):
    python_name = "date"

    def sql_type(self) -> str:
        return "date"

    def sql_literal(self, value: Any) -> str:
        return f"'{value.isoformat()}'"

    def fast_check_source(self, v: str, t: str) -> str:
        return f"type({v}) is _date and {v}.year >= 1000"

    def json_source(self, v: str, t: str) -> str:
        return f"{v}.isoformat()"

    def json_dump_source(self, v: str, t: str) -> str:
        # orjson writes a date as isoformat() does, without the method call (a subclass: not)
        return f"({v} if type({v}) is _date else {v}.isoformat())"

    def json_decode_source(self, x: str, t: str) -> tuple[str, str]:
        # fromisoformat may raise (a 30th of February): the decoder then takes the full path
        return f"type({x}) is str and _ISO_DATE({x}) is not None", f"_date.fromisoformat({x})"

    def sql_literal_source(self, v: str, t: str) -> str:
        return f'("\'" + {v}.isoformat() + "\'")'

    def json_literal_source(self, j: str, x: str, t: str) -> str:
        return f'("\'" + {j} + "\'")'  # ISO_DATE took only what isoformat() writes

    def validate(self, value: Any) -> date:
        if isinstance(value, datetime) or not isinstance(value, date):
            raise self._wrong_type(value)
        if not 1000 <= value.year <= 9999:
            raise InvalidValue(f"year {value.year} is outside MySQL's DATE range (1000-9999)")
        return value

    def to_json(self, value: Any) -> Any:
        return value.isoformat()

    def from_json(self, raw: Any) -> date:
        try:
            value = date.fromisoformat(self._json_of(raw, str))
        except ValueError as e:
            raise InvalidValue(f"{_shown(raw, 40)} is not an ISO date") from e
        if value.isoformat() != raw:  # 3.11 also reads '20260102' or '2026-W01-5'
            raise InvalidValue(f"{_shown(raw, 40)} is not written as to_json writes a date")
        return value


class DateTimeType(ColumnType):
    python_name = "datetime"

    def sql_type(self) -> str:
        return "datetime(6)"

    def sql_literal(self, value: Any) -> str:
        return f"'{value.isoformat(' ')}'"

    def fast_check_source(self, v: str, t: str) -> str:
        return f"type({v}) is _datetime and {v}.tzinfo is None and {v}.year >= 1000"

    def json_source(self, v: str, t: str) -> str:
        return f"{v}.isoformat()"

    def json_dump_source(self, v: str, t: str) -> str:
        # orjson writes a naive datetime as isoformat() does (checked by a property test)
        return f"({v} if type({v}) is _datetime else {v}.isoformat())"

    def json_decode_source(self, x: str, t: str) -> tuple[str, str]:
        # fromisoformat may raise (hour 25): the decoder then takes the full path
        check = f"type({x}) is str and _ISO_DATETIME({x}) is not None"
        return check, f"_datetime.fromisoformat({x})"

    def sql_literal_source(self, v: str, t: str) -> str:
        return f"(\"'\" + {v}.isoformat(' ') + \"'\")"

    def json_literal_source(self, j: str, x: str, t: str) -> str:
        # ISO_DATETIME took only what isoformat() writes: isoformat(' ') is it with a space
        return f"(\"'\" + {j}.replace('T', ' ') + \"'\")"

    def validate(self, value: Any) -> datetime:
        if not isinstance(value, datetime):
            raise self._wrong_type(value)
        if value.tzinfo is not None:
            raise InvalidValue(
                "timezone-aware datetimes are not stored (DATETIME has no zone); "
                "convert to naive UTC first"
            )
        if not 1000 <= value.year <= 9999:
            raise InvalidValue(f"year {value.year} is outside MySQL's DATETIME range (1000-9999)")
        return value

    def to_json(self, value: Any) -> Any:
        return value.isoformat()

    def from_json(self, raw: Any) -> datetime:
        try:
            value = datetime.fromisoformat(self._json_of(raw, str))
        except ValueError as e:
            raise InvalidValue(f"{_shown(raw, 40)} is not an ISO datetime") from e
        if value.isoformat() != raw:  # 3.11 also reads a date alone, '...T10', '.000000'...
            raise InvalidValue(f"{_shown(raw, 40)} is not written as to_json writes a datetime")
        return value


@dataclass(frozen=True)
class EnumType(ColumnType):
    enum: type[Enum]
    python_name = "Enum"

    def sql_type(self) -> str:
        # Backslashes too: MySQL reads them as escapes in the DDL ('a\b' would become 'ab')
        quoted = ",".join(
            "'" + str(m.value).replace("\\", "\\\\").replace("'", "''") + "'" for m in self.enum
        )
        return f"enum({quoted})"

    def sql_literal(self, value: Any) -> str:
        return "'" + str(escape_string(value.value)) + "'"

    def fast_check_source(self, v: str, t: str) -> str:
        return f"type({v}) is {t}.enum"

    def json_source(self, v: str, t: str) -> str:
        return f"{v}.value"

    def validate(self, value: Any) -> Enum:
        if isinstance(value, self.enum):
            return value
        try:  # the member's value is accepted too ("active" for Status.ACTIVE)
            return self.enum(value)
        except (ValueError, TypeError):
            members = ", ".join(m.name for m in self.enum)
            raise InvalidValue(
                f"{_shown(value)} is not a member of {self.enum.__name__} ({members})"
            ) from None

    def to_sql(self, value: Any) -> Any:
        return value.value

    def from_sql(self, raw: Any) -> Enum:
        return self.enum(raw)

    def to_json(self, value: Any) -> Any:
        return value.value

    def from_json(self, raw: Any) -> Enum:
        try:
            return self.enum(self._json_of(raw, str))
        except ValueError as e:
            raise InvalidValue(f"{_shown(raw, 40)} is not a member of {self.enum.__name__}") from e


@dataclass(frozen=True)
class ReferenceType(ColumnType):
    """A BIGINT UNSIGNED column holding the id of another entity."""

    target: type[Entity]
    python_name = "Reference"

    def sql_type(self) -> str:
        return "bigint unsigned"

    def sql_literal(self, value: Any) -> str:
        return str(int(value.id))

    def json_source(self, v: str, t: str) -> str:
        return f"{v}.id"

    def validate(self, value: Any) -> Any:
        from beeorm_celery.entity import Entity, Reference

        if isinstance(value, Reference):
            if value.entity_type is not self.target:
                raise InvalidValue(
                    f"a reference to {value.entity_type.__name__}, expected {self.target.__name__}"
                )
            ref_id = value.id
        elif isinstance(value, Entity):
            if type(value) is not self.target:
                raise InvalidValue(f"a {type(value).__name__}, expected {self.target.__name__}")
            ref_id = value.id
        elif type(value) is int:
            ref_id = value
        else:
            raise InvalidValue(
                f"expected {self.target.__name__}, Reference or int id, got {type(value).__name__}"
            )
        if not 0 < ref_id <= _UBIGINT_MAX:
            raise InvalidValue(f"{_shown(ref_id, 40)} is not a valid id")
        return Reference(self.target, ref_id)

    def to_sql(self, value: Any) -> Any:
        return value.id

    def from_sql(self, raw: Any) -> Any:
        from beeorm_celery.entity import Reference

        return Reference(self.target, int(raw))

    def to_json(self, value: Any) -> Any:
        return value.id

    def from_json(self, raw: Any) -> Any:
        from beeorm_celery.entity import Reference

        if type(raw) is not int:
            raise InvalidValue(f"{_shown(raw, 40)} is not an id")
        return Reference(self.target, raw)


class IdType(ColumnType):
    python_name = "int"

    def sql_type(self) -> str:
        return "bigint unsigned"

    def validate(self, value: Any) -> int:
        if type(value) is not int or not 0 < value <= _UBIGINT_MAX:
            raise InvalidValue(f"{_shown(value, 40)} is not a valid id")
        return value

    def from_sql(self, raw: Any) -> int:
        return int(raw)
