"""The batch codec across releases: named columns, schema lag, defaults, secrets (no services)."""

from __future__ import annotations

import json

import pytest

from beeorm_celery import AsyncFlushSettings, Engine, Registry
from beeorm_celery.asyncflush.batch import (
    FORMAT_VERSION,
    PAYLOAD_FIELD,
    SIGNATURE_FIELD,
    Batch,
    decode_entry,
    decode_payload,
    encode_entry,
)
from beeorm_celery.entity import Entity
from beeorm_celery.errors import MalformedBatchError, SchemaLagError, SignatureError
from beeorm_celery.operations import Operation, OpKind
from tests.support.releases import RELEASE_1, RELEASE_2, ItemV1, ItemV2


def offline_engine(*entities: type[Entity], secret: object = None) -> Engine:
    """An engine that never connects: the codec needs only the registered schemas."""
    registry = Registry(async_flush=AsyncFlushSettings(signing_secret=secret))  # type: ignore[arg-type]
    registry.register_mysql("mysql://root@127.0.0.1:1/never_connected")
    registry.register_redis("redis://127.0.0.1:1/0")
    registry.register_entity(*entities)
    return registry.validate()


def insert(engine: Engine, cls: type[Entity], entity_id: int, **values: object) -> Operation:
    schema = engine.schema(cls)
    full = {**schema.default_values(), **values}
    return Operation(OpKind.INSERT, schema, entity_id, dict(full), {}, full=full)


def update(engine: Engine, cls: type[Entity], entity_id: int, **values: object) -> Operation:
    return Operation(OpKind.UPDATE, engine.schema(cls), entity_id, dict(values), {})


def payload(*ops: Operation) -> bytes:
    return Batch("releases", list(ops), 1).encode()


V1 = offline_engine(*RELEASE_1)
V2 = offline_engine(*RELEASE_2)


def test_a_batch_names_the_columns_of_its_insert_rows_once_per_table() -> None:
    raw = payload(insert(V2, ItemV2, 1, name="a"), insert(V2, ItemV2, 2, name="b", qty=3))
    data = json.loads(raw)
    assert data["v"] == FORMAT_VERSION
    assert data["c"] == {"release_item": ["name", "qty", "color"]}
    assert data["ops"][1][3] == ["b", 3, "red"]  # the row itself stays the cache's array


def test_the_same_release_decodes_what_it_encoded() -> None:
    batch = decode_payload(V2, "releases", payload(insert(V2, ItemV2, 7, name="x", color="blue")))
    assert batch.operations[0].values == {"name": "x", "qty": 0, "color": "blue"}


def test_an_old_producers_insert_takes_the_new_columns_default() -> None:
    batch = decode_payload(V2, "releases", payload(insert(V1, ItemV1, 7, name="old", qty=2)))
    assert batch.operations[0].values == {"name": "old", "qty": 2, "color": "red"}


def test_a_new_producers_column_is_schema_lag_for_an_old_worker() -> None:
    with pytest.raises(SchemaLagError) as insert_lag:
        decode_payload(V1, "releases", payload(insert(V2, ItemV2, 7, name="new")))
    with pytest.raises(SchemaLagError) as update_lag:
        decode_payload(V1, "releases", payload(update(V2, ItemV2, 7, color="blue")))
    assert insert_lag.value.cause == update_lag.value.cause == "column release_item.color"
    assert "schema ahead: upgrade workers / run update_schema" in str(insert_lag.value)
    assert insert_lag.value.replayable


def test_an_unknown_table_and_a_newer_format_are_schema_lag() -> None:
    unknown_table = {"v": 3, "g": "releases", "t": 1, "ops": [["i", "other", 1, {}, {}]]}
    newer = {"v": FORMAT_VERSION + 1, "g": "releases", "t": 1, "ops": []}
    with pytest.raises(SchemaLagError, match="table 'other'"):
        decode_payload(V2, "releases", json.dumps(unknown_table).encode())
    with pytest.raises(SchemaLagError, match="newer than this worker reads"):
        decode_payload(V2, "releases", json.dumps(newer).encode())


def test_format_2_and_1_batches_are_still_read() -> None:
    v2 = {"v": 2, "g": "releases", "t": 1, "ops": [["i", "release_item", 1, ["a", 1], {}]]}
    v1 = {
        "v": 1,
        "g": "releases",
        "t": 1,
        "ops": [["i", "release_item", 2, {"name": "b", "qty": 2}, {}]],
    }
    assert decode_payload(V1, "releases", json.dumps(v2).encode()).operations[0].values == {
        "name": "a",
        "qty": 1,
    }
    # a format-1 INSERT lacking a column that has a default takes it too
    decoded = decode_payload(V2, "releases", json.dumps(v1).encode()).operations[0].values
    assert decoded == {"name": "b", "qty": 2, "color": "red"}


def test_unreadable_bytes_are_not_replayable_but_a_refused_value_is() -> None:
    with pytest.raises(MalformedBatchError) as garbage:
        decode_payload(V2, "releases", b"\x00not json")
    bad_value = {
        "v": 3,
        "g": "releases",
        "t": 1,
        "ops": [["u", "release_item", 1, {"qty": "x"}, {}]],
    }
    with pytest.raises(MalformedBatchError) as refused:
        decode_payload(V2, "releases", json.dumps(bad_value).encode())
    assert not garbage.value.replayable
    assert refused.value.replayable


def test_a_header_that_does_not_fit_its_rows_is_refused() -> None:
    data = json.loads(payload(insert(V2, ItemV2, 1, name="a")))
    data["c"]["release_item"] = ["name", "qty"]
    with pytest.raises(MalformedBatchError, match="header names 2 columns"):
        decode_payload(V2, "releases", json.dumps(data).encode())


def test_rotation_signs_with_the_first_secret_and_accepts_any() -> None:
    batch = Batch("releases", [insert(V2, ItemV2, 1, name="a")], 1)
    old_entry = encode_entry(batch, [b"old"])
    new_entry = encode_entry(batch, [b"new", b"old"])
    rotating = AsyncFlushSettings(signing_secret=["new", "old"]).secrets
    assert rotating == (b"new", b"old")
    for entry in (old_entry, new_entry):
        decode_entry(V2, "releases", "1-0", entry, rotating)
    with pytest.raises(SignatureError, match="wrong signature"):
        decode_entry(V2, "releases", "1-0", old_entry, (b"new",))
    with pytest.raises(SignatureError, match="not signed"):
        decode_entry(V2, "releases", "1-0", {PAYLOAD_FIELD: old_entry[PAYLOAD_FIELD]}, rotating)
    assert new_entry[SIGNATURE_FIELD] != old_entry[SIGNATURE_FIELD]


def test_one_secret_as_str_or_bytes_and_none() -> None:
    assert AsyncFlushSettings(signing_secret="s").secrets == (b"s",)
    assert AsyncFlushSettings(signing_secret=b"s").secret_bytes == b"s"
    assert AsyncFlushSettings().secrets == ()
    assert AsyncFlushSettings().secret_bytes is None
