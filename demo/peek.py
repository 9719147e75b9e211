"""``python -m demo.peek order 1``: another process reads one entity and prints it as JSON.

The demo runs this as a subprocess to show that what ``flush_async()`` did is visible to every
process at once, not only to the one that flushed: this one has its own engine, connections
and local caches, and reads through a fresh Context like a web request would.
"""

from __future__ import annotations

import json
import sys

from demo.config import load
from demo.engine import build_engine
from shop.models import ENTITIES


def main(argv: list[str]) -> int:
    table, entity_id = argv[0], int(argv[1])
    config = load()
    entity_type = next(e for e in ENTITIES if e.__name__.lower() == table)
    with build_engine(config) as engine:
        entity = engine.new_context().get_by_id(entity_type, entity_id)
        if entity is None:
            print("null")
            return 0
        schema = engine.schema(entity_type)
        values = {c.name: getattr(entity, c.name) for c in schema.columns}
        print(json.dumps(values, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
