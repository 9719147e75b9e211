"""Every MySQL error lands in exactly one class; unknown codes are neither lost nor final."""

from __future__ import annotations

import pymysql
import pytest
import redis

from beeorm_celery.asyncflush.mysql_errors import (
    PERMANENT_CODES,
    TEMPORARY_CODES,
    ErrorClass,
    classify,
    error_code,
    error_message,
)


def test_no_code_is_both_temporary_and_permanent():
    assert not TEMPORARY_CODES & PERMANENT_CODES


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (pymysql.err.OperationalError(1213, "Deadlock found"), ErrorClass.TEMPORARY),
        (pymysql.err.OperationalError(1205, "Lock wait timeout"), ErrorClass.TEMPORARY),
        (pymysql.err.OperationalError(2013, "Lost connection"), ErrorClass.TEMPORARY),
        (pymysql.err.OperationalError(1021, "Disk full"), ErrorClass.TEMPORARY),
        (pymysql.err.IntegrityError(1062, "Duplicate entry"), ErrorClass.PERMANENT),
        (pymysql.err.DataError(1406, "Data too long"), ErrorClass.PERMANENT),
        (pymysql.err.InternalError(1031, "Table storage engine can't"), ErrorClass.UNKNOWN),
        (pymysql.err.InterfaceError("(0, '')"), ErrorClass.TEMPORARY),
        (pymysql.err.InterfaceError(0, ""), ErrorClass.TEMPORARY),  # as PyMySQL raises it
        (redis.ConnectionError("log out of reach"), ErrorClass.TEMPORARY),
        (ValueError("a bug"), ErrorClass.UNKNOWN),
    ],
)
def test_classify(error, expected):
    assert classify(error) is expected


def test_code_and_message_are_read_from_pymysql_errors_only():
    error = pymysql.err.IntegrityError(1062, "Duplicate entry 'x' for key 'name'")
    assert (error_code(error), error_message(error)) == (1062, "Duplicate entry 'x' for key 'name'")
    assert error_code(OSError("boom")) is None
    assert error_message(OSError("boom")) == "OSError: boom"
