"""Statements built from operations: merged INSERTs, changed columns only, escaped values."""

from __future__ import annotations

from beeorm_celery.asyncflush import position
from beeorm_celery.operations import Operation, OpKind
from beeorm_celery.sql import operation_sql, statements
from tests.support.models import Category, Counter


def _insert(schema, entity_id, name):
    values = {"name": name} if schema.table == "category" else {"name": name, "value": 0}
    return Operation(OpKind.INSERT, schema, entity_id, values, {}, dict(values))


def test_consecutive_inserts_into_one_table_become_one_statement(offline):
    category, counter = offline.schema(Category), offline.schema(Counter)
    ops = [
        _insert(category, 1, "a"),
        _insert(category, 2, "b"),
        _insert(counter, 1, "c"),
        Operation(OpKind.UPDATE, category, 1, {"name": "z"}, {"name": "a"}),
        _insert(category, 3, "d"),
        Operation(OpKind.DELETE, counter, 1, {}, {"name": "c"}),
    ]
    planned = statements(ops)
    assert [sql for sql, _ in planned] == [
        "INSERT INTO `category` (`id`, `name`) VALUES (1, 'a'), (2, 'b')",
        "INSERT INTO `counter` (`id`, `name`, `value`) VALUES (1, 'c', 0)",
        "UPDATE `category` SET `name` = 'z' WHERE `id` = 1",
        "INSERT INTO `category` (`id`, `name`) VALUES (3, 'd')",
        "DELETE FROM `counter` WHERE `id` = 1",
    ]
    assert [len(carried) for _, carried in planned] == [2, 1, 1, 1, 1]


def test_an_update_without_changes_runs_nothing_and_values_are_escaped(offline):
    category = offline.schema(Category)
    assert statements([Operation(OpKind.UPDATE, category, 1, {}, {})]) == []
    evil = Operation(OpKind.UPDATE, category, 1, {"name": "x'); DROP TABLE t; --\\"}, {})
    assert operation_sql(evil) == (
        "UPDATE `category` SET `name` = 'x\\'); DROP TABLE t; --\\\\' WHERE `id` = 1"
    )


def test_the_position_table_sql_names_one_table():
    for sql in (position.APPLIED_TABLE_SQL, position.LOCK_SQL, position.ADVANCE_SQL):
        assert f"`{position.APPLIED_TABLE}`" in sql
    assert "FOR UPDATE SKIP LOCKED" in position.LOCK_SQL
