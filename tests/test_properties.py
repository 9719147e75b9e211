"""Properties, checked on generated values (hypothesis), bounded in examples and time.

- any value a field accepts comes back exactly, from the cache ``flush_async`` wrote and from
  MySQL after a worker applied the batch (in this process, and through a real Celery worker);
- any other value is refused with ``ValidationError``, never another exception;
- the batch decoder, fed random bytes, random JSON and damaged batches, returns a batch or
  raises ``MalformedBatchError``, and nothing else, in bounded time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from beeorm_celery import Engine, Entity, ValidationError, consume_async_flush_events
from beeorm_celery.asyncflush.batch import (
    PAYLOAD_FIELD,
    SIGNATURE_FIELD,
    Batch,
    decode_entry,
    decode_payload,
)
from beeorm_celery.errors import MalformedBatchError
from tests.support import models, services
from tests.support.models import Category, Product, Status
from tests.support.workers import REPO


def bounded(max_examples: int) -> settings:
    """A fixed number of examples and no per-example deadline: MySQL and Redis round trips
    vary with the load of a shared machine."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,  # no .hypothesis/ directory left in the repository
    )


FIELDS = ("name", "price", "stock", "active", "status", "weight", "description", "photo",
          "released", "created_at", "category")  # fmt: skip
_BIGINT = 2**63
_DATETIME_MIN, _DATETIME_MAX = datetime(1000, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)
_TEXT_BYTES = 65_535


def _utf8_text(**kwargs: Any) -> st.SearchStrategy[str]:
    return st.text(alphabet=st.characters(codec="utf-8"), **kwargs)


def _accepted_prices() -> st.SearchStrategy[Any]:
    """DECIMAL(10,2): at most 8 digits before the point, at most 2 after (more zeros are fine)."""
    limit = Decimal("99999999.99")
    return st.one_of(
        st.decimals(min_value=-limit, max_value=limit, places=2),
        st.decimals(min_value=-limit, max_value=limit, places=0),
        st.integers(-99_999_999, 99_999_999),
        st.decimals(min_value=-limit, max_value=limit, places=2).map(
            lambda d: d.quantize(Decimal("1.0000"))
        ),
        st.sampled_from(
            [limit, -limit, Decimal("0.00"), Decimal("-0.00"), Decimal("1E+7"), Decimal("1E-2")]
        ),
    )


def accepted_values() -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments of a Product that validation accepts, edges included."""
    return st.fixed_dictionaries(
        {
            "name": _utf8_text(min_size=1, max_size=200),
            "price": _accepted_prices(),
            "stock": st.integers(-_BIGINT, _BIGINT - 1),
            "active": st.booleans(),
            "status": st.sampled_from(Status) | st.sampled_from([s.value for s in Status]),
            "weight": st.none() | st.floats(allow_nan=False, allow_infinity=False),
            "description": st.none() | _utf8_text(max_size=2_000),
            "photo": st.none() | st.binary(max_size=2_000),
            "released": st.none()
            | st.dates(min_value=date(1000, 1, 1), max_value=date(9999, 12, 31)),
            "created_at": st.none()
            | st.datetimes(min_value=_DATETIME_MIN, max_value=_DATETIME_MAX),
            "category": st.none() | st.integers(1, 2**64 - 1),
        }
    )


def _anything() -> st.SearchStrategy[Any]:
    """Values of every type a field could be handed, most of them wrong for most fields."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=10**20, max_value=10**6000),
        st.floats(),
        st.decimals(),
        st.text(max_size=300),
        st.binary(max_size=300),
        st.dates(),
        st.datetimes(),
        st.datetimes(timezones=st.just(UTC)),
        st.sampled_from(Status),
        st.lists(st.integers(), max_size=2),
    )


def _field_values(entity: Entity) -> dict[str, Any]:
    return {name: entity.__dict__[name] for name in FIELDS}


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _assert_round_trip(engine: Engine, stored: dict[str, Any], entity_id: int) -> None:
    """What the cache and then MySQL (cache key dropped) hold is what was stored."""
    schema = engine.schema(Product)
    cached = engine.new_context().get_by_id(Product, entity_id)
    assert cached is not None, "the flushed product is not in the cache"
    engine.redis("default").delete(engine.keys.entity(schema, entity_id))
    loaded = engine.new_context().get_by_id(Product, entity_id)
    assert loaded is not None, "the flushed product is not in MySQL"
    for source, entity in (("cache", cached), ("MySQL", loaded)):
        got = _field_values(entity)
        for name, want in stored.items():
            assert _same(want, got[name]), f"{name} from {source}: {got[name]!r}, stored {want!r}"


# --- round trips


def test_any_accepted_value_comes_back_exactly_from_the_cache_and_from_mysql(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(*models.ALL)

    @bounded(200)
    @given(values=accepted_values())
    @example(
        values={
            "name": "é" * 200,
            "price": Decimal("-99999999.99"),
            "stock": -(2**63),
            "active": False,
            "status": "blocked",
            "weight": 5e-324,
            "description": "é" * (_TEXT_BYTES // 2),
            "photo": bytes(range(256)) * 255,
            "released": date(1000, 1, 1),
            "created_at": _DATETIME_MAX,
            "category": 2**64 - 1,
        }
    )
    @example(
        values={
            "name": " trailing space \x00 nul ",
            "price": Decimal("1.500"),
            "stock": 2**63 - 1,
            "active": True,
            "status": Status.ACTIVE,
            "weight": -0.0,
            "description": "",
            "photo": b"",
            "released": date(9999, 12, 31),
            "created_at": _DATETIME_MIN,
            "category": None,
        }
    )
    def round_trip(values: dict[str, Any]) -> None:
        ctx = engine.new_context()
        product = ctx.new_entity(Product, **values)
        ctx.flush_async()
        stored = _field_values(product)  # the validated form (a status given by value...)
        report = consume_async_flush_events(engine, groups=["catalog"])
        assert report["catalog"].applied_batches == 1
        assert report["catalog"].dead_lettered == 0
        _assert_round_trip(engine, stored, product.id)

    round_trip()


def test_any_other_value_is_refused_with_a_validation_error_and_nothing_queued(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(*models.ALL)
    log_key = engine.keys.log("catalog")

    @bounded(300)
    @given(field=st.sampled_from(FIELDS), value=_anything())
    @example(field="price", value=Decimal("1234567890123456789012345678.123"))
    @example(field="price", value=10**5000)
    @example(field="price", value=Decimal("1E+5000"))
    @example(field="weight", value=10**400)
    @example(field="stock", value=True)
    @example(field="category", value=0)
    def refused_or_round_trip(field: str, value: Any) -> None:
        ctx = engine.new_context()
        product = ctx.new_entity(Product, name="x")
        setattr(product, field, value)
        before = engine.redis("default").xlen(log_key)
        try:
            ctx.flush_async()
        except ValidationError as e:
            assert e.field == field
            assert engine.redis("default").xlen(log_key) == before, "a refused flush queued"
            return
        stored = _field_values(product)
        consume_async_flush_events(engine, groups=["catalog"])
        _assert_round_trip(engine, stored, product.id)

    refused_or_round_trip()


def test_accepted_values_come_back_exactly_through_a_real_celery_worker(
    celery_harness: Callable[..., Any],
) -> None:
    harness = celery_harness()
    harness.start_worker(concurrency=1, queues=("catalog",))
    engine: Engine = harness.engine

    @bounded(10)
    @given(batch=st.lists(accepted_values(), min_size=1, max_size=10))
    def through_a_worker(batch: list[dict[str, Any]]) -> None:
        ctx = engine.new_context()
        products = [ctx.new_entity(Product, **values) for values in batch]
        ctx.flush_async()
        stored = [_field_values(p) for p in products]
        services.wait_until(
            lambda: engine.async_stats()["catalog"].pending == 0,
            timeout_s=30,
            message="the worker did not apply the batch",
        )
        for product, values in zip(products, stored, strict=True):
            _assert_round_trip(engine, values, product.id)

    through_a_worker()
    assert engine.dead_letters.count() == 0


# --- the batch decoder


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        ["2020-01-02", "2020-01-02T03:04:05.123456", "1.5", "1E+400", "AAEC", "active"]
    ),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
_column = st.sampled_from([*FIELDS, "id", "nope"])
_values = st.dictionaries(_column, _json, max_size=5) | _json
_op = (
    st.tuples(
        st.sampled_from(["i", "u", "d", "x"]) | _json,
        st.sampled_from(["product", "category", "counter", "nope"]) | _json,
        st.integers(-3, 2**70) | _json,
        _values,
        _values,
    ).map(list)
    | _json
)
_payload = st.fixed_dictionaries(
    {
        "v": st.just(1) | _json,
        "g": st.just("catalog") | _json,
        "t": st.integers(0, 2**45) | _json,
        "ops": st.lists(_op, max_size=4) | _json,
    },
    optional={"r": st.text(max_size=12) | _json},
)


def _decodes_or_refuses(engine: Engine, payload: bytes) -> None:
    try:
        batch = decode_payload(engine, "catalog", payload, "1-0")
    except MalformedBatchError:
        return
    assert isinstance(batch, Batch) and batch.operations


def test_decoding_random_bytes_returns_a_batch_or_raises_malformed_batch_error(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(*models.ALL, update_schema=False)

    @bounded(500)
    @given(raw=st.binary(max_size=400))
    @example(raw=b"\xff\xfe")
    @example(raw=b"[" * 100_000)
    @example(
        raw=b'{"v": 1, "g": "catalog", "t": 1, "ops": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    )
    def random_bytes(raw: bytes) -> None:
        _decodes_or_refuses(engine, raw)

    random_bytes()


def test_decoding_random_json_returns_a_batch_or_raises_malformed_batch_error(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(*models.ALL, update_schema=False)

    def op(values: dict[str, Any], kind: str = "u") -> bytes:
        return json.dumps(
            {"v": 1, "g": "catalog", "t": 1, "ops": [[kind, "product", 1, values, {}]]}
        ).encode()

    @bounded(500)
    @given(payload=_payload)
    @example(payload=json.loads(op({"weight": 10**400})))
    @example(payload=json.loads(op({"price": "1234567890123456789012345678.123"})))
    @example(payload=json.loads(op({"price": [0, [1], -2]})))
    @example(payload=json.loads(op({"active": "no"})))
    @example(payload=json.loads(op({"photo": "not base64!"})))
    @example(payload=json.loads(op({"created_at": "2020-01-01T00:00:00+05:00"})))
    @example(payload={"v": 1, "g": "catalog", "t": 1, "ops": [["d", "product", 2**70, {}, {}]]})
    def random_json(payload: Any) -> None:
        _decodes_or_refuses(engine, json.dumps(payload).encode())

    random_json()


def test_a_decoded_batch_never_holds_a_value_validation_would_refuse(
    make_engine: Callable[..., Engine],
) -> None:
    """What the decoder lets through is what a flush could have queued: nothing looser."""
    engine = make_engine(*models.ALL, update_schema=False)
    schema = engine.schema(Product)

    @bounded(300)
    @given(column=st.sampled_from(FIELDS), raw=_json)
    @example(column="active", raw="no")
    @example(column="active", raw=[1])
    @example(column="active", raw=7)
    def one_value(column: str, raw: Any) -> None:
        payload = json.dumps(
            {"v": 1, "g": "catalog", "t": 1, "ops": [["u", "product", 1, {column: raw}, {}]]}
        )
        try:
            batch = decode_payload(engine, "catalog", payload.encode(), "1-0")
        except MalformedBatchError:
            return
        value = batch.operations[0].values[column]
        if value is None:
            return
        encoded = schema.columns_by_name[column].type.to_json(value)
        assert encoded == raw or _json_equal(encoded, raw), (
            f"{column}: the batch said {raw!r}, the decoder made it {value!r}"
        )

    one_value()


def _json_equal(encoded: Any, raw: Any) -> bool:
    """The same JSON value written another way (1.0 for 1, "1.50" for "1.5", 1.5 for "1.5")."""
    if isinstance(encoded, bool) or isinstance(raw, bool):
        return encoded is raw
    numbers = (str, int, float)
    if isinstance(encoded, numbers) and isinstance(raw, numbers):
        try:
            return Decimal(str(encoded)) == Decimal(str(raw))
        except ArithmeticError:
            return False
    return False


def test_damaged_batches_decode_or_are_refused(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(*models.ALL)
    ctx = engine.new_context()
    category = ctx.new_entity(Category, name="Bees")
    product = ctx.new_entity(
        Product,
        name="Honey 🍯",
        price=Decimal("12.50"),
        weight=0.5,
        photo=b"\x00\x01",
        released=date(2024, 5, 1),
        created_at=datetime(2024, 5, 1, 12, 0, 0, 123456),
        category=category,
    )
    ctx.flush_async()
    entries = engine.redis("default").xrange(engine.keys.log("catalog"), "-", "+")
    assert len(entries) == 1 and product.id
    valid = entries[0][1][PAYLOAD_FIELD]  # the bytes a worker would read
    _decodes_or_refuses(engine, valid)

    @bounded(500)
    @given(data=st.data())
    def damaged(data: st.DataObject) -> None:
        raw = bytearray(valid)
        for _ in range(data.draw(st.integers(1, 6))):
            position = data.draw(st.integers(0, len(raw) - 1))
            raw[position] = data.draw(st.integers(0, 255))
        _decodes_or_refuses(engine, bytes(raw))

    damaged()


def test_log_entries_with_random_fields_are_refused_and_signatures_are_checked(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(*models.ALL, update_schema=False)

    @bounded(300)
    @given(
        fields=st.dictionaries(
            st.sampled_from([PAYLOAD_FIELD, SIGNATURE_FIELD, b"x"]), st.binary(max_size=64)
        ),
        secret=st.none() | st.binary(min_size=1, max_size=16),
    )
    def random_entry(fields: dict[bytes, bytes], secret: bytes | None) -> None:
        try:
            decode_entry(engine, "catalog", "1-0", fields, secret)
        except MalformedBatchError:
            return
        assert secret is None, "a batch with a random signature was accepted"

    random_entry()


_HUGE_EXPONENT_SCRIPT = textwrap.dedent(
    """
    import json
    from decimal import Decimal
    from beeorm_celery import Registry, ValidationError
    from beeorm_celery.asyncflush.batch import decode_payload
    from beeorm_celery.errors import MalformedBatchError
    from tests.support.models import ALL, Product

    registry = Registry()
    registry.register_mysql("mysql://root@127.0.0.1:1/never_connected")
    registry.register_redis("redis://127.0.0.1:1/0")
    registry.register_entity(*ALL)
    engine = registry.validate()
    payload = {"v": 1, "g": "catalog", "t": 1,
               "ops": [["u", "product", 1, {"price": "1E+100000000"}, {}]]}
    try:
        decode_payload(engine, "catalog", json.dumps(payload).encode())
        print("decoded")
    except MalformedBatchError:
        print("refused")
    """
)


def test_a_decimal_with_a_huge_exponent_is_refused_in_bounded_time() -> None:
    """``Decimal("1E+100000000")`` is finite and has no decimals; it must not cost minutes."""
    command = [sys.executable, "-c", _HUGE_EXPONENT_SCRIPT]
    try:
        result = subprocess.run(
            command, cwd=REPO, capture_output=True, timeout=20, check=False, text=True
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(
            "decoding a price of 1E+100000000 ran for more than 20s (a poison entry that "
            "holds a worker and its group)"
        ) from None
    assert result.stdout.strip() == "refused", result.stdout + result.stderr[-2000:]
