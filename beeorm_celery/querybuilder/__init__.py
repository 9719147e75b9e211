"""The query builder (seed 004): fluent, immutable SELECTs on any table, with joins, whose
values are always bound parameters and whose names are checked and quoted.

::

    page = (engine.query("users").where("age", ">=", 18).order_by("id")
            .paginate_async(1, 20, timeout=2))            # a QueryFuture of a Page of dicts
    bio = (engine.query("users").select("users.id", "profiles.bio")
           .left_join("profiles", "users.id", "=", "profiles.user_id")
           .where("users.id", 5).first())                  # a dict or None
    products = engine.query(Product).where("price", "<", 10).as_entities().get()

``names`` checks what a call names, ``builder`` holds the immutable state and compiles it once,
``terminals`` runs it on ``engine.query_runner``. See docs/async-reads.md.
"""

from __future__ import annotations

from beeorm_celery.querybuilder.builder import Builder
from beeorm_celery.querybuilder.terminals import EntityQuery, Query

__all__ = ["Builder", "EntityQuery", "Query"]
