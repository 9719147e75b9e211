"""Two releases of one entity, for rolling-deploy tests: release 2 adds a column with a default.

Producers and workers of different releases share the table ``release_item`` and the async group
``releases``; a test worker runs one of them (``BEEORM_TEST_MODELS=RELEASE_1``/``RELEASE_2``).
"""

from __future__ import annotations

from beeorm_celery import Entity, Field


class ItemV1(Entity, table="release_item", redis_cache=True, async_group="releases"):
    name: str = Field(max_length=100)
    qty: int = 0


class ItemV2(Entity, table="release_item", redis_cache=True, async_group="releases"):
    name: str = Field(max_length=100)
    qty: int = 0
    color: str = Field(max_length=20, default="red")


RELEASE_1 = (ItemV1,)
RELEASE_2 = (ItemV2,)
GROUPS = ("releases",)


class Bulky(Entity, async_group="bulky"):
    """Rows up to three TEXT columns large: backlogs of big rows (law 14)."""

    a: str = ""
    b: str = ""
    c: str = ""


BULKY = (Bulky,)
