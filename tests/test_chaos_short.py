"""The short fault run (``make chaos`` is the long one): every fault once, then the oracle.

One run for the whole module, on a private MariaDB the run installs, crashes and restarts
(the shared server on 3306 is never touched) and on the shared Redis under a prefix of its own.
Each test reads one part of its report; the report itself is printed when one fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from bench.chaos import SHORT, ChaosReport, run
from bench.chaos_faults import FAULT_KINDS


@pytest.fixture(scope="module")
def report(redis_url: str) -> Iterator[ChaosReport]:
    lines: list[str] = []
    result = run(replace(SHORT, redis_url=redis_url), say=lines.append)
    print("\n".join(lines))
    print(result.render())
    yield result


def explain(report: ChaosReport) -> str:
    return "\n" + report.render()


def test_every_fault_was_injected(report: ChaosReport) -> None:
    for kind in FAULT_KINDS:
        assert report.faults.counts[kind] >= 1, f"no {kind}" + explain(report)


def test_held_locks_and_forced_deadlocks_reached_the_workers(report: ChaosReport) -> None:
    errors = report.findings.worker_errors
    assert errors["1205"] >= 1, "no lock wait timeout was retried" + explain(report)
    assert errors["1213"] >= 1, "no deadlock was retried" + explain(report)


def test_every_batch_landed_once_and_in_order(report: ChaosReport) -> None:
    f = report.findings
    assert f.changes_checked > 100, "the producers flushed almost nothing" + explain(report)
    assert (f.lost, f.doubled, f.out_of_order) == (0, 0, 0), explain(report)
    assert f.batches_applied == f.batches_expected, explain(report)
    assert not any(f.pending.values()), "batches were left in the logs" + explain(report)


def test_mysql_and_the_caches_match_the_oracle(report: ChaosReport) -> None:
    f = report.findings
    assert (f.wrong_state, f.cache_mismatches) == (0, 0), explain(report)


def test_the_cache_converged_with_mysql(report: ChaosReport) -> None:
    assert report.findings.cache_diverged == 0, explain(report)


def test_only_the_provoked_dead_letters_exist(report: ChaosReport) -> None:
    f = report.findings
    assert f.dead_letters_provoked > 0, explain(report)
    assert (f.dead_letters_missing, f.dead_letters_unexpected) == (0, 0), explain(report)
    assert f.poison_applied == 0, explain(report)


def test_no_worker_died_no_task_failed_and_no_producer_broke(report: ChaosReport) -> None:
    assert report.worker_deaths == 0, explain(report)
    assert not report.findings.worker_failures, explain(report)
    assert not report.producer_errors, explain(report)
