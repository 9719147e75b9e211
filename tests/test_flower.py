"""Flower (from PyPI, started here) lists the apply tasks with their readable summaries."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import pytest

from tests.support.models import Category, Product
from tests.support.services import wait_until
from tests.support.workers import REPO

AUTH = ("ops", "flower-test")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def flower(celery_harness, tmp_path):
    h = celery_harness()
    port = _free_port()
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.support.worker_app",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
            "--persistent=False",
            f"--basic-auth={AUTH[0]}:{AUTH[1]}",
        ],
        cwd=REPO,
        env=h.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), timeout_s=60, message="flower did not start")
        yield h, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthcheck", timeout=2, auth=AUTH).status_code == 200
    except httpx.HTTPError:
        return False


def test_flower_lists_apply_tasks_with_their_summaries(flower):
    h, url = flower
    h.start_worker(concurrency=1, extra_args=("-E",))
    ctx = h.engine.new_context()
    category = ctx.new_entity(Category, name="Garden")
    product = ctx.new_entity(Product, name="Hose", category=category)
    ctx.flush_async()

    def summaries():
        tasks = httpx.get(f"{url}/api/tasks", timeout=5, auth=AUTH).json()
        return [
            t.get("args", "")
            for t in tasks.values()
            if t.get("name") == "beeorm_celery.apply" and t.get("state") == "SUCCESS"
        ]

    found = wait_until(summaries, timeout_s=60, message="flower never showed the task")
    expected = f"INSERT category {category.id}, INSERT product {product.id}"
    assert any(s.startswith("catalog#") and expected in s for s in found), found
