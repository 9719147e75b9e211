"""What a drain step checks beside MySQL's own errors.

An UPDATE or DELETE that matches no row (the row was deleted behind the batch's back, or never
existed) is not a success: MySQL would say "0 rows" and move on, and the cache would keep a row
MySQL lacks. ``check_matched`` turns it into a permanent error, so the batch is dead-lettered
with the reason and its cache keys dropped. The pool connects with CLIENT_FOUND_ROWS, so 0
means "no such row", never "nothing to change".
"""

from __future__ import annotations

from collections.abc import Sequence

import pymysql

from beeorm_celery.operations import INSERT, Operation

# MySQL's ER_KEY_NOT_FOUND ("Can't find record in ..."): permanent, in mysql_errors.
ROW_GONE_CODE = 1032


class RowGoneError(pymysql.err.IntegrityError):
    """An UPDATE / DELETE of a batch matched no row."""


def check_matched(carried: Sequence[Operation], matched: int) -> None:
    """Raise ``RowGoneError`` when a single-row UPDATE / DELETE statement matched nothing."""
    op = carried[0]
    if op.kind is not INSERT and matched == 0:
        raise RowGoneError(ROW_GONE_CODE, f"row {op.id} of {op.table} no longer exists")
