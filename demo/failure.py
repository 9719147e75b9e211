"""Section 6: a batch MySQL refuses for good, its dead letter, the fix and the replay."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.box import SIMPLE_HEAD
from rich.table import Table

from demo.waiting import DemoFailed
from shop.models import Category, Product

if TYPE_CHECKING:
    from beeorm_celery.asyncflush.deadletters import DeadLetter
    from demo.story import DemoRun

# Far above the ids the demo's counter hands out: a row "another system" numbered itself.
LEGACY_CATEGORY_ID = 900_001
CONFLICT_NAME = "Gift cards"
FIXED_NAME = "Gift cards (legacy import)"
# How long a read may take to show a change made by the worker: the worker drops the cache
# keys right after its COMMIT, and other processes' local caches hear of it through pub/sub.
READ_SETTLE_S = 5.0


def permanent_failure(run: DemoRun) -> None:
    engine, mysql, say = run.eng, run.mysql, run.say
    run.section("6 · A permanent failure, its dead letter, the fix and the replay")

    # Not committed yet while this process flushes: flush_async() asks MySQL who holds the
    # name (a row MySQL already had would be refused there, with DuplicateKeyError), and MySQL
    # shows nothing uncommitted. Only the worker's INSERT meets the row, once it is committed.
    mysql.execute("BEGIN")
    mysql.execute(
        "INSERT INTO `category` (`id`, `name`) VALUES (%s, %s)", LEGACY_CATEGORY_ID, CONFLICT_NAME
    )
    run.expected["category"] += 1
    say(
        f"another system writes category '{CONFLICT_NAME}' (id {LEGACY_CATEGORY_ID}) straight "
        "into MySQL, past the ORM and its caches, in a transaction not yet committed"
    )

    ctx = engine.new_context()
    gift = ctx.new_entity(Category, name=CONFLICT_NAME)
    ctx.flush_async()
    say(
        f"flush_async()  new Category {gift.id} '{CONFLICT_NAME}': valid, and no committed row "
        "holds the name: cached, queued"
    )
    product = ctx.new_entity(
        Product, name="Gift card 25 EUR", sku="GIFT-25", category=run.categories[0]
    )
    ctx.flush_async()
    run.expected["product"] += 1
    say(f"flush_async()  Product {product.id} 'Gift card 25 EUR': the next batch of group catalog")
    mysql.execute("COMMIT")
    say("the other system commits: only MySQL can refuse the queued category now")

    dead = run.until(
        lambda: engine.dead_letters.list("catalog"),
        "the conflicting category was never dead-lettered",
    )[0]
    run.until(
        lambda: mysql.has_row("product", product.id),
        f"Product {product.id}, queued after the failing batch, never reached MySQL",
    )
    say(
        f"the worker got error {dead.error_code}, moved the batch to the dead letters, dropped "
        f"its cache keys and went on: Product {product.id} is in MySQL"
    )
    run.console.print(_dead_letter_table(dead))

    settled = _settle(lambda: run.fresh_context().get_by_id(Category, gift.id) is None)
    holder = run.fresh_context().get_by_unique_index(Category, "name", CONFLICT_NAME)
    if not settled or holder is None or holder.id != LEGACY_CATEGORY_ID:
        raise DemoFailed(
            f"after the dead letter, reads should show MySQL's truth: Category {gift.id} absent "
            f"and '{CONFLICT_NAME}' held by {LEGACY_CATEGORY_ID}; got {holder!r}; "
            + _where_is(run, gift.id)
        )
    say(
        f"reads fall back to MySQL's truth: get_by_id(Category, {gift.id}) -> None, "
        f"get_by_unique_index(Category, 'name', '{CONFLICT_NAME}') -> id {holder.id}"
    )

    # The fix goes through the same group's queue, ahead of the replay: order per group holds.
    legacy = ctx.get_by_id(Category, LEGACY_CATEGORY_ID)
    if legacy is None:
        raise DemoFailed(f"Category {LEGACY_CATEGORY_ID} cannot be read back")
    legacy = ctx.edit(legacy)
    legacy.name = FIXED_NAME
    ctx.flush_async()
    say(f"fix: rename category {LEGACY_CATEGORY_ID} to '{FIXED_NAME}' (flush_async, group catalog)")
    replay_id = engine.dead_letters.retry(dead.id)
    say(
        f"engine.dead_letters.retry('{dead.id}') -> queued again as batch {replay_id}, "
        "behind the fix"
    )
    began = time.monotonic()
    run.until(
        lambda: mysql.has_row("category", gift.id),
        f"the replayed Category {gift.id} never reached MySQL",
    )
    run.expected["category"] += 1
    if engine.dead_letters.count() != 0:
        raise DemoFailed(f"dead letters left after the replay: {engine.dead_letters.count()}")
    landed = _settle(lambda: _name_of(run, gift.id) == CONFLICT_NAME)
    if not landed or mysql.column("category", LEGACY_CATEGORY_ID, "name") != FIXED_NAME:
        raise DemoFailed(
            f"after the replay, Category {gift.id} should read '{CONFLICT_NAME}' and Category "
            f"{LEGACY_CATEGORY_ID} '{FIXED_NAME}'; {_where_is(run, gift.id)}"
        )
    say(
        f"replayed: Category {gift.id} '{CONFLICT_NAME}' is in MySQL "
        f"{time.monotonic() - began:.2f}s later and reads back; dead letters: 0"
    )


def _name_of(run: DemoRun, category_id: int) -> str | None:
    category = run.fresh_context().get_by_id(Category, category_id)
    return category.name if category is not None else None


def _where_is(run: DemoRun, category_id: int) -> str:
    """Category ``category_id`` as each layer holds it, for a failure message."""
    assert run.reader is not None
    reader = run.reader
    schema = reader.schema(Category)
    local = reader.local_cache(schema)
    in_local = "no local cache" if local is None else repr(local.get(category_id))
    in_redis = reader.redis("default").get(reader.keys.entity(schema, category_id))
    in_mysql = run.mysql.column("category", category_id, "name")
    return (
        f"reader's local cache: {in_local}; Redis: {in_redis!r}; MySQL: {in_mysql!r}; "
        f"a read now: {_name_of(run, category_id)!r}"
    )


def _settle(condition: Callable[[], bool]) -> bool:
    """Whether ``condition()`` turns true within READ_SETTLE_S (see there why it may lag)."""
    deadline = time.monotonic() + READ_SETTLE_S
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _dead_letter_table(dead: DeadLetter) -> Table:
    table = Table(
        title="engine.dead_letters.list()", title_justify="left", box=SIMPLE_HEAD, show_header=False
    )
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("id", dead.id)
    table.add_row("group", dead.group)
    table.add_row("error_code", str(dead.error_code))
    table.add_row("error", dead.error)
    table.add_row("attempts", str(dead.attempts))
    table.add_row("failed_at", dead.failed_at.isoformat(timespec="milliseconds"))
    table.add_row("sql", "\n".join(dead.sql))
    return table
