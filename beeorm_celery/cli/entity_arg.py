"""The ENTITY argument of the cache commands: a registered class name or its table."""

from __future__ import annotations

import click

from beeorm_celery.engine import Engine
from beeorm_celery.entity import Entity


def entity_named(engine: Engine, name: str) -> type[Entity]:
    """The registered entity called ``name`` (class name or table, case-insensitive)."""
    for schema in engine.schemas:
        if name.lower() in (schema.name.lower(), schema.table.lower()):
            return schema.entity
    known = ", ".join(sorted(s.name for s in engine.schemas)) or "none"
    raise click.BadParameter(
        f"no registered entity {name!r}; this engine has: {known}", param_hint="'ENTITY'"
    )
