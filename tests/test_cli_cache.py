"""``beeorm-celery cache clear`` / ``cache verify [--fix]`` on a real engine."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner, Result

from beeorm_celery import Engine
from beeorm_celery.cli import cli
from tests.support.models import ALL, Counter, Product
from tests.support.sql import execute


def run(engine: Engine, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=engine, env={"COLUMNS": "200"})


def test_verify_lists_rows_changed_by_sql_and_fix_clears_them(make_engine: Any) -> None:
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    product = ctx.new_entity(Product, name="p", stock=1)
    other = ctx.new_entity(Product, name="q", stock=1)
    ctx.flush()
    engine.new_context().get_by_ids(Product, [product.id, other.id])
    assert run(engine, "cache", "verify", "Product").exit_code == 0
    execute(engine, "UPDATE product SET stock = 9 WHERE id = %s", (product.id,))
    found = run(engine, "cache", "verify", "product", "--json")
    assert found.exit_code == 1, found.output
    (row,) = json.loads(found.output)
    assert (row["id"], row["kind"], row["cached"], row["mysql"]) == (
        product.id,
        "row",
        "{'stock': 1}",
        "{'stock': 9}",
    )
    fixed = run(engine, "cache", "verify", "Product", "--fix")
    assert fixed.exit_code == 0 and "(cleared)" in fixed.output, fixed.output
    assert run(engine, "cache", "verify", "Product").exit_code == 0
    assert engine.new_context().get_by_id(Product, product.id).stock == 9


def test_clear_drops_rows_and_names_unknown_entities(make_engine: Any) -> None:
    engine = make_engine(*ALL)
    ctx = engine.new_context()
    counter = ctx.new_entity(Counter, name="c", value=1)
    ctx.flush()
    engine.new_context().get_by_id(Counter, counter.id)
    execute(engine, "UPDATE counter SET value = 2, name = 'd' WHERE id = %s", (counter.id,))
    done = run(engine, "cache", "clear", "Counter", str(counter.id))
    assert done.exit_code == 0 and "cleared 1 row(s) of Counter" in done.output, done.output
    assert engine.new_context().get_by_id(Counter, counter.id).value == 2
    assert engine.new_context().get_by_unique_index(Counter, "name", "d").id == counter.id
    assert engine.new_context().get_by_unique_index(Counter, "name", "c") is None
    unknown = run(engine, "cache", "clear", "Nope", "1")
    assert unknown.exit_code == 2 and "Counter" in unknown.output
    assert run(engine, "cache", "clear", "Counter").exit_code == 2  # no id
