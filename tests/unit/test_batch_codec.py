"""A batch survives encode/decode exactly; anything the worker cannot account for is refused."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import pytest

from beeorm_celery.asyncflush.batch import (
    FORMAT_VERSION,
    Batch,
    decode_entry,
    decode_payload,
    encode_entry,
)
from beeorm_celery.errors import MalformedBatchError
from beeorm_celery.operations import Operation, OpKind
from tests.support.models import Category, Product, Status


def _product_insert(engine, product_id=7):
    schema = engine.schema(Product)
    values = {
        "name": "Widget 'quoted'",
        "price": Decimal("12.50"),
        "stock": 3,
        "active": True,
        "status": Status.BLOCKED,
        "weight": 1.25,
        "description": None,
        "photo": b"\x00\xffbytes",
        "released": date(2026, 1, 2),
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 600000),
        "category": None,
    }
    return Operation(OpKind.INSERT, schema, product_id, values, {}, dict(values))


def test_insert_update_delete_round_trip_with_typed_values(offline):
    category = engine_schema = offline.schema(Category)
    ops = [
        _product_insert(offline),
        Operation(OpKind.UPDATE, engine_schema, 3, {"name": "New"}, {"name": "Old"}),
        Operation(OpKind.DELETE, category, 4, {}, {"name": "Gone"}),
    ]
    batch = Batch("catalog", ops, 1_700_000_000_000)

    decoded = decode_payload(offline, "catalog", batch.encode(), "1-0")

    assert decoded.id == "1-0" and decoded.created_at_ms == batch.created_at_ms
    assert [(o.kind, o.table, o.id, o.values, o.before) for o in decoded.operations] == [
        (o.kind, o.table, o.id, o.values, o.before) for o in ops
    ]


def test_a_signed_entry_is_checked_and_a_tampered_one_refused(offline):
    batch = Batch("catalog", [_product_insert(offline)], 1)
    fields = encode_entry(batch, b"secret")
    assert decode_entry(offline, "catalog", "1-0", fields, b"secret").operations[0].id == 7
    with pytest.raises(MalformedBatchError, match="wrong signature"):
        decode_entry(offline, "catalog", "1-0", fields, b"another secret")
    with pytest.raises(MalformedBatchError, match="not signed"):
        decode_entry(offline, "catalog", "1-0", encode_entry(batch, None), b"secret")


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        (b"{not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        ({"v": 99, "g": "catalog", "t": 1, "ops": [["d", "category", 1, {}, {}]]}, "version"),
        ({"v": FORMAT_VERSION, "g": "orders", "t": 1, "ops": []}, "belongs to group"),
        ({"v": FORMAT_VERSION, "g": "catalog", "t": 1, "ops": []}, "operations"),
        ({"v": 2, "g": "catalog", "t": 1, "ops": [["d", "secrets", 1, {}, {}]]}, "not an entity"),
        ({"v": 2, "g": "catalog", "t": 1, "ops": [["x", "category", 1, {}, {}]]}, "unknown kind"),
        ({"v": 2, "g": "catalog", "t": 1, "ops": [["d", "category", -1, {}, {}]]}, "bad id"),
        (
            {"v": 2, "g": "catalog", "t": 1, "ops": [["u", "category", 1, {"nope": 1}, {}]]},
            "unknown to this worker",
        ),
    ],
)
def test_what_a_worker_cannot_account_for_is_malformed(offline, payload, said):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(MalformedBatchError, match=said):
        decode_payload(offline, "catalog", raw, "1-0")


def test_the_summary_names_the_batch_and_its_changes(offline):
    ops = [_product_insert(offline, n) for n in range(1, 6)]
    summary = Batch("catalog", ops, 1, id="17-0").summary()
    assert summary == "catalog#17-0: INSERT product x5 (1..5)"


def test_a_batch_says_which_layout_its_producer_cached_each_table_in(offline):
    category = offline.schema(Category)
    ops = [
        _product_insert(offline),
        Operation(OpKind.UPDATE, category, 3, {"name": "New"}, {"name": "Old"}),
    ]
    payload = Batch("catalog", ops, 1).encode()
    assert decode_payload(offline, "catalog", payload, "1-0").foreign_tables == frozenset()

    # another release cached product under another layout: its rows here were not patched
    data = json.loads(payload)
    data["l"]["product"] = "0ther000"
    other = json.dumps(data).encode()
    assert decode_payload(offline, "catalog", other, "1-0").foreign_tables == {"product"}

    # an older producer did not say: every table it wrote counts as foreign
    del data["l"]
    older = json.dumps(data).encode()
    assert decode_payload(offline, "catalog", older, "1-0").foreign_tables == {
        "product",
        "category",
    }


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({2: -1}, "bad id"),
        ({2: 2**64}, "bad id"),
        ({2: True}, "bad id"),
        ({2: "8"}, "bad id"),
        ({0: "x"}, "unknown kind"),
        ({4: []}, "'before' is not an object"),
        ({4: {"nope": 1}}, "unknown to this worker"),  # an INSERT's 'before' is decoded too
        ({3: "row"}, "values are not an object"),
        ({"value": ("price", "1.555")}, "bad value for product.price"),
        ({"value": ("name", "x" * 300)}, "bad value for product.name"),
        ({"value": ("created_at", "2026-02-30T00:00:00")}, "bad value for product.created_at"),
    ],
)
def test_a_later_insert_into_the_same_table_is_checked_as_the_first_was(offline, change, said):
    """The decoder's shortcut for INSERTs into a table the batch already named takes only
    what the full checks take: anything else still gets their error."""
    payload = json.loads(Batch("catalog", [_product_insert(offline)], 1).encode())
    second = json.loads(json.dumps(payload["ops"][0]))
    second[2] = 8
    for at, value in change.items():
        if at == "value":
            column, text = value
            second[3][payload["c"]["product"].index(column)] = text
        else:
            second[at] = value
    payload["ops"].append(second)
    with pytest.raises(MalformedBatchError, match=said):
        decode_payload(offline, "catalog", json.dumps(payload).encode(), "1-0")


def test_inserts_after_the_first_carry_the_sql_the_full_path_writes(offline):
    ops = [_product_insert(offline, n) for n in range(1, 4)]
    decoded = decode_payload(offline, "catalog", Batch("catalog", ops, 1).encode(), "1-0")
    schema = offline.schema(Product)
    for op in decoded.operations:
        assert op.sql_row is not None
        assert op.sql_row == schema.row_codec.sql_row(op.id, op.values)
