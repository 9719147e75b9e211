"""Merged INSERTs stay under a byte cap (law 14), and packet errors are told apart (no services)."""

from __future__ import annotations

import pymysql
import pytest

from beeorm_celery.asyncflush.mysql_errors import (
    PACKET_SUSPECT_BYTES,
    ErrorClass,
    classify,
    is_packet_error,
)
from beeorm_celery.sql import statements, text_bytes
from tests.support.releases import RELEASE_2, ItemV2
from tests.unit.test_batch_columns import insert, offline_engine, update

ENGINE = offline_engine(*RELEASE_2)


def test_without_a_cap_consecutive_inserts_make_one_statement() -> None:
    ops = [insert(ENGINE, ItemV2, i, name="x" * 100) for i in range(1, 51)]
    [(sql, carried)] = statements(ops)
    assert len(carried) == 50 and sql.count("(") == 51  # the column list and 50 rows


@pytest.mark.parametrize("cap", [400, 1000, 5000])
def test_with_a_cap_every_statement_fits_and_every_row_is_carried_once(cap: int) -> None:
    ops = [insert(ENGINE, ItemV2, i, name="é" * (i % 40)) for i in range(1, 201)]
    planned = statements(ops, max_bytes=cap)
    assert len(planned) > 1
    assert [op.id for _, carried in planned for op in carried] == list(range(1, 201))
    assert all(text_bytes(sql) <= cap for sql, _ in planned)
    assert all(len(sql.encode()) == text_bytes(sql) for sql, _ in planned)


def test_a_row_larger_than_the_cap_stands_alone_and_order_is_kept() -> None:
    big = insert(ENGINE, ItemV2, 2, name="b" * 90)
    ops = [insert(ENGINE, ItemV2, 1, name="a"), big, update(ENGINE, ItemV2, 1, qty=2)]
    planned = statements(ops, max_bytes=120)
    assert [[op.id for op in carried] for _, carried in planned] == [[1], [2], [1]]
    assert planned[1][1] == [big] and text_bytes(planned[1][0]) > 120


def test_schema_lag_codes_are_their_own_class() -> None:
    assert classify(pymysql.err.OperationalError(1054, "Unknown column")) is ErrorClass.SCHEMA_LAG
    assert classify(pymysql.err.ProgrammingError(1146, "no table")) is ErrorClass.SCHEMA_LAG
    assert classify(pymysql.err.IntegrityError(1062, "dup")) is ErrorClass.PERMANENT
    assert classify(pymysql.err.OperationalError(1205, "lock")) is ErrorClass.TEMPORARY


def test_a_lost_link_means_too_large_only_after_a_large_statement() -> None:
    gone = pymysql.err.OperationalError(2006, "MySQL server has gone away")
    too_large = pymysql.err.OperationalError(1153, "Got a packet bigger than max_allowed_packet")
    assert is_packet_error(too_large, 10)
    assert is_packet_error(gone, PACKET_SUSPECT_BYTES)
    assert not is_packet_error(gone, PACKET_SUSPECT_BYTES - 1)
    assert not is_packet_error(pymysql.err.OperationalError(1205, "lock"), 10**9)


def test_a_row_too_large_is_a_permanent_error_naming_max_allowed_packet() -> None:
    from beeorm_celery.asyncflush.mysql_errors import ErrorClass, classify
    from beeorm_celery.asyncflush.packets import too_large_error

    op = insert(ENGINE, ItemV2, 5, name="big")
    error = too_large_error(300_000, 131_072, op)
    assert classify(error) is ErrorClass.PERMANENT
    assert "max_allowed_packet (131072 bytes)" in str(error) and "release_item 5" in str(error)
