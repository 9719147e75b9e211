"""Holding a group for an outside fix, and the worker-start secret check (no services)."""

from __future__ import annotations

from beeorm_celery.asyncflush.batch import Batch, encode_entry
from beeorm_celery.asyncflush.holding import Hold, HoldKind, keeps_waiting
from beeorm_celery.asyncflush.settings import AsyncFlushSettings
from beeorm_celery.asyncflush.signing import secret_mismatch
from tests.support.releases import RELEASE_2, ItemV2
from tests.unit.test_batch_columns import insert, offline_engine

ENGINE = offline_engine(*RELEASE_2)
ENTRY = encode_entry(Batch("releases", [insert(ENGINE, ItemV2, 1, name="a")], 1), [b"prod"])
UNSIGNED = encode_entry(Batch("releases", [insert(ENGINE, ItemV2, 1, name="a")], 1), None)


def test_a_head_batch_waits_up_to_its_limit_unless_its_cause_already_waited() -> None:
    assert keeps_waiting(10, 60, cause_expired=False)
    assert not keeps_waiting(60, 60, cause_expired=False)
    assert not keeps_waiting(0, 60, cause_expired=True)


def test_each_kind_of_hold_has_its_own_limit() -> None:
    settings = AsyncFlushSettings(
        schema_lag_dead_letter_after_s=5, bad_signature_dead_letter_after_s=7
    )
    assert Hold(HoldKind.SCHEMA_LAG, "column a.b", "m").limit_s(settings) == 5
    assert Hold(HoldKind.SIGNATURE, "signature", "m").limit_s(settings) == 7
    assert AsyncFlushSettings().schema_lag_dead_letter_after_s == 1800


def test_the_worker_start_check_names_a_differing_secret() -> None:
    assert secret_mismatch("g", "1-0", ENTRY, [b"prod"]) is None
    assert secret_mismatch("g", "1-0", ENTRY, [b"next", b"prod"]) is None  # rotation
    differs = secret_mismatch("g", "1-0", ENTRY, [b"typo"])
    assert differs is not None and "differs from the producers'" in differs
    unsigned = secret_mismatch("g", "1-0", UNSIGNED, [b"prod"])
    assert unsigned is not None and "not signed" in unsigned
    no_secret = secret_mismatch("g", "1-0", ENTRY, [])
    assert no_secret is not None and "no signing_secret" in no_secret
    assert secret_mismatch("g", "1-0", UNSIGNED, []) is None
