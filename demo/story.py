"""The demo's narrative, one method per section. ``DemoRun.run()`` plays them in order.

Each section checks what it claims (rows in MySQL, cache contents, dead letters) and raises
``DemoFailed`` with the reason when something does not happen within a bounded wait.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.box import SIMPLE_HEAD
from rich.console import Console
from rich.table import Table

from beeorm_celery import Context, Engine
from demo import services
from demo.config import DemoConfig
from demo.engine import PRODUCER_ID_BLOCK_SIZE, build_engine, connect_producer_for
from demo.failure import permanent_failure
from demo.figures import Latency, ms, plan_flushes, split_flush
from demo.progress import QueuedVsApplied
from demo.report import final_stats
from demo.waiting import DemoFailed, wait_for
from demo.worker import REPO, WorkerProcess
from shop.models import Category, Order, Product

if TYPE_CHECKING:
    from celery import Celery

T = TypeVar("T")

CATEGORY_NAMES = (
    "Books", "Games", "Garden", "Kitchen", "Music", "Toys", "Tools", "Shoes", "Sports", "Office",
    "Pets", "Bikes", "Camping", "Baby", "Beauty", "Audio", "Cameras", "Phones", "Lamps", "Tea",
)  # fmt: skip
CUSTOMERS = ("Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances")


def _peek_from_another_process(table: str, entity_id: int) -> dict[str, Any] | None:
    """What a separate Python process reads for this entity (see demo/peek.py)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "demo.peek", table, str(entity_id)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        stderr = e.stderr if isinstance(e.stderr, str) else ""
        raise DemoFailed(f"python -m demo.peek failed: {e}\n{stderr[-2000:]}") from e
    found: dict[str, Any] | None = json.loads(done.stdout)
    return found


class DemoRun:
    def __init__(self, config: DemoConfig, console: Console) -> None:
        self.config = config
        self.console = console
        self.started = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="beeorm-demo-"))
        self.worker = WorkerProcess(
            config.worker_env, self.workdir / "worker.log", backend=config.backend
        )
        self.expected: Counter[str] = Counter()  # rows each table must hold at the end
        self.engine: Engine | None = None
        self.reader: Engine | None = None  # "another process": its own engine and caches
        self.probe: services.MySQLProbe | None = None
        self.app: Celery | Any = None  # the producer side: a Celery app or a Dramatiq broker
        self.categories: list[Category] = []

    # --- helpers

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def section(self, title: str) -> None:
        self.console.print()
        self.console.rule(f"[bold]{title}", align="left")

    @property
    def eng(self) -> Engine:
        assert self.engine is not None
        return self.engine

    @property
    def mysql(self) -> services.MySQLProbe:
        assert self.probe is not None
        return self.probe

    def fresh_context(self) -> Context:
        """A new Context of the reader engine: what any other process would read."""
        assert self.reader is not None
        return self.reader.new_context()

    def worker_check(self) -> None:
        self.worker.check_alive()

    def until(self, condition: Callable[[], T | None], failure: str) -> T:
        """Wait (bounded) for something the worker does; fails early if the worker died."""
        return wait_for(condition, self.config.land_timeout_s, failure, self.worker_check)

    # --- the story

    def run(self) -> None:
        self.setup()
        order_id = self.reads_before_the_sql()
        self.start_worker(order_id)
        self.flush_speed()
        self.bulk_run()
        permanent_failure(self)
        final_stats(self)

    def setup(self) -> None:
        config = self.config
        self.section("1 · Setup")
        removed = services.reset(config)
        self.engine = build_engine(config, id_block_size=PRODUCER_ID_BLOCK_SIZE)
        self.reader = build_engine(config)
        created = self.eng.update_schema()
        self.probe = services.MySQLProbe(config.mysql)
        self.app = connect_producer_for(config, self.eng)
        tables = ", ".join(s.table for s in self.eng.schemas)
        self.say(
            f"MySQL   {config.mysql.safe_url}: database recreated, tables {tables} "
            f"({len(created)} statements from engine.update_schema())"
        )
        self.say(
            f"Redis   {config.redis_url}: keys under [cyan]{config.key_prefix}:[/] "
            f"({removed} left from an earlier run removed)"
        )
        self.say(
            f"Broker  {config.broker_url}: queues under [cyan]{config.broker_key_prefix}[/] "
            + (
                "(Dramatiq's namespace, BEEORM_DRAMATIQ_NAMESPACE in worker_dramatiq.py)"
                if config.backend == "dramatiq"
                else "(kombu global_keyprefix, set by BEEORM_BROKER_KEY_PREFIX in celeryconfig.py)"
            )
        )
        ctx = self.eng.new_context()
        self.categories = [ctx.new_entity(Category, name=name) for name in CATEGORY_NAMES]
        ctx.flush()
        self.expected["category"] += len(self.categories)
        self.say(
            f"{len(self.categories)} categories written with a plain [bold]flush()[/]: "
            "in MySQL and in the caches before it returned"
        )

    def reads_before_the_sql(self) -> int:
        self.section("2 · Reads served before the SQL lands")
        self.say("No worker is running yet, so nothing can write this order to MySQL.")
        ctx = self.eng.new_context()
        order = ctx.new_entity(
            Order, customer="Ada Lovelace", total=Decimal("42.00"), placed_at=datetime.now()
        )
        ctx.flush_async()
        self.expected["order"] += 1
        self.say(f"ctx.flush_async()  Order {order.id} for Ada Lovelace: returned")

        seen = _peek_from_another_process("order", order.id)
        if seen is None or seen.get("customer") != "Ada Lovelace":
            raise DemoFailed(f"another process did not read Order {order.id}: it got {seen!r}")
        self.say(
            f"another process (python -m demo.peek), fresh Context, get_by_id(Order, {order.id})"
            f" -> [green]{seen['customer']}, total {seen['total']}[/]"
        )
        key = self.eng.keys.entity(self.eng.schema(Order), order.id)
        if not self.eng.redis("default").exists(key):
            raise DemoFailed(f"Redis has no {key} right after flush_async()")
        self.say(f"Redis   {key} [green]present[/]")
        if self.mysql.has_row("order", order.id):
            raise DemoFailed(
                f"MySQL already holds Order {order.id} though no demo worker runs: is another "
                f"worker consuming the demo's queues ({self.config.broker_key_prefix}...)?"
            )
        self.say(f"MySQL   SELECT COUNT(*) FROM `order` WHERE id = {order.id} -> [red]0[/]")
        pending = self.eng.async_stats()["orders"].pending
        self.say(f"engine.async_stats()['orders'].pending -> {pending} batch waiting in Redis")
        return order.id

    def start_worker(self, order_id: int) -> None:
        self.section(f"3 · A real {self.config.backend.capitalize()} worker")
        self.say(f"$ {self.worker.display_command}")
        self.worker.start()
        ready_s = self.worker.wait_ready(self.config.worker_ready_timeout_s)
        self.say(f"pid {self.worker.pid}, ready after {ready_s:.1f}s (log: {self.worker.log_path})")
        began = time.monotonic()
        self.until(
            lambda: self.mysql.has_row("order", order_id),
            f"Order {order_id} never reached MySQL after the worker started",
        )
        self.say(
            f"Order {order_id} is in MySQL {time.monotonic() - began:.2f}s after the worker "
            "was ready: the batch waited in Redis, the task in the broker"
        )

    def _new_batch(self, ctx: Context, n: int, products: int, orders: int) -> None:
        """Track ``products`` products and ``orders`` orders: one web request's worth."""
        now = datetime.now()
        for i in range(products):
            product = ctx.new_entity(
                Product,
                name=f"{CATEGORY_NAMES[(n + i) % 20]} item {n}-{i}",
                price=Decimal(f"{(n * 7 + i) % 200 + 1}.99"),
                stock=(n + i) % 50,
                category=self.categories[(n + i) % len(self.categories)],
                created_at=now,
            )
            product.sku = f"SKU-{product.id:07d}"
        for i in range(orders):
            ctx.new_entity(
                Order,
                customer=CUSTOMERS[(n + i) % len(CUSTOMERS)],
                total=Decimal(f"{(n * 13 + i) % 500 + 5}.50"),
                placed_at=now,
            )
        self.expected["product"] += products
        self.expected["order"] += orders

    def flush_speed(self) -> None:
        """flush() and flush_async() alternately, same shapes, same moment: the same noise."""
        config = self.config
        self.section("4 · flush_async() vs flush()")
        products, orders = split_flush(config.per_flush)
        shapes = (("1 order", 0, 1), (f"{config.per_flush} entities", products, orders))
        ctx = self.eng.new_context()
        table = Table(
            title=f"one call ({config.speed_calls} of each, alternating, while the worker runs)",
            caption=f"{config.per_flush} entities = {products} products + {orders} orders",
            caption_justify="left",
            title_justify="left",
            box=SIMPLE_HEAD,
        )
        table.add_column("flush of", no_wrap=True)
        table.add_column("call", no_wrap=True)
        for column in ("p50", "p90", "p99", "max"):
            table.add_column(column, justify="right", no_wrap=True)
        ratios: list[str] = []
        for label, shape_products, shape_orders in shapes:
            sync, deferred = Latency("flush()", []), Latency("flush_async()", [])
            for n in range(config.speed_calls):
                for latency, flush in ((sync, ctx.flush), (deferred, ctx.flush_async)):
                    self._new_batch(ctx, n, shape_products, shape_orders)  # off the clock
                    began = time.perf_counter()
                    flush()
                    latency.seconds.append(time.perf_counter() - began)
            for latency in (sync, deferred):
                table.add_row(
                    label if latency is sync else "",
                    latency.label,
                    ms(latency.p50),
                    ms(latency.p90),
                    ms(latency.p99),
                    ms(latency.max),
                )
            ratios.append(f"{sync.p50 / deferred.p50:.1f}x for {label}")
        self.console.print(table)
        self.say(
            f"At the median flush_async() is faster by {' and '.join(ratios)}. It never waits "
            "for MySQL: a remote, busy or locked MySQL slows flush() down, not flush_async(). "
            "This MySQL is local, the kindest case for flush(); the figures move with whatever "
            "else this machine is doing."
        )

    def bulk_run(self) -> Latency:
        config = self.config
        self.section(f"5 · {config.entities:,} entities through flush_async(), two async groups")
        plan = plan_flushes(config.entities, config.per_flush)
        totals = {"catalog": sum(p for p, _ in plan), "orders": sum(o for _, o in plan)}
        self.say(
            f"{len(plan):,} flushes of up to {config.per_flush} entities (products: group "
            "[cyan]catalog[/], orders: group [cyan]orders[/]), two batches each"
        )
        baseline = {g: s.applied_operations for g, s in self.eng.async_stats().items()}
        ctx = self.eng.new_context()
        seconds: list[float] = []
        with QueuedVsApplied(self.console, self.eng, totals, baseline) as view:
            began = time.monotonic()
            for n, (products, orders) in enumerate(plan):
                self._new_batch(ctx, 1000 + n, products, orders)  # entities made off the clock
                start = time.perf_counter()
                ctx.flush_async()
                seconds.append(time.perf_counter() - start)
                view.queued({"catalog": products, "orders": orders})
                if n % 200 == 0:
                    self.worker_check()
            queued_s = time.monotonic() - began
            lag_s = view.wait_applied(config.land_timeout_s, self.worker_check)
        rate = config.entities / queued_s if queued_s else 0.0
        latency = Latency("flush_async()", seconds)
        self.say(
            f"queued {config.entities:,} entities in {queued_s:.1f}s ({rate:,.0f}/s from one "
            f"thread); the worker applied the last of them {lag_s:.2f}s later"
        )
        self.say(
            f"flush_async() meanwhile, sharing {os.cpu_count()} cores with the worker and MySQL "
            f"at full speed: p50 {ms(latency.p50)}, p99 {ms(latency.p99)}"
        )
        return latency

    def close(self) -> dict[str, Any]:
        """Stop the worker and close the engines; returns what happened, for the last lines."""
        outcome: dict[str, Any] = {}
        if self.worker.process is not None:
            began = time.monotonic()
            outcome["exit_code"] = self.worker.stop()
            outcome["stop_s"] = time.monotonic() - began
        for engine in (self.engine, self.reader):
            if engine is not None:
                engine.close()
        if self.config.backend == "dramatiq" and self.app is not None:
            self.app.close()  # the Dramatiq broker's connections
        if self.probe is not None:
            self.probe.close()
        return outcome
