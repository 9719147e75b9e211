"""``SpinPlan``: a call polls for its reply only when the reply is expected within the budget."""

from __future__ import annotations

from beeorm_celery.reply_wait import SpinPlan

_BUDGET_NS = 200_000
_SMALL, _LARGE = 2_300, 17_000  # bytes: the requests of a 10- and a 100-entity flush


def test_before_anything_is_observed_every_call_polls() -> None:
    plan = SpinPlan(_BUDGET_NS)
    assert plan.spin_ns(_SMALL) == _BUDGET_NS
    assert plan.spin_ns(_LARGE) == _BUDGET_NS


def test_a_zero_budget_never_polls() -> None:
    plan = SpinPlan(0)
    assert plan.spin_ns(_SMALL) == 0
    plan.observed(_SMALL, 10_000)
    assert plan.spin_ns(_SMALL) == 0


def test_mixed_sizes_poll_for_the_quick_replies_only() -> None:
    plan = SpinPlan(_BUDGET_NS)
    for _ in range(20):
        plan.observed(_SMALL, 90_000)
        plan.observed(_LARGE, 350_000)
    assert plan.spin_ns(_SMALL) == _BUDGET_NS
    assert plan.spin_ns(_LARGE) == 0
    # in between: what the line says (polling while the mean is within 1.5 budgets)
    assert plan.spin_ns(10_000) == _BUDGET_NS
    assert plan.spin_ns(15_000) == 0


def test_large_requests_only_then_a_quick_reply_brings_polling_back() -> None:
    plan = SpinPlan(_BUDGET_NS)
    for _ in range(10):
        plan.observed(_LARGE, 350_000)
    assert plan.spin_ns(_LARGE) == 0
    # one size seen: the wait taken as proportional to the size
    assert plan.spin_ns(_SMALL) == _BUDGET_NS
    assert plan.spin_ns(15_000) == 0
    for _ in range(10):
        plan.observed(_SMALL, 120_000)  # a little slower than proportional: still quick
    assert plan.spin_ns(_SMALL) == _BUDGET_NS
    assert plan.spin_ns(_LARGE) == 0


def test_a_server_that_slowed_down_stops_the_polling_and_one_that_recovered_resumes_it() -> None:
    plan = SpinPlan(_BUDGET_NS)
    for _ in range(10):
        plan.observed(_SMALL, 90_000)
    assert plan.spin_ns(_SMALL) == _BUDGET_NS
    for _ in range(50):
        plan.observed(_SMALL, 600_000)  # a busy server: every reply late
    assert plan.spin_ns(_SMALL) == 0
    for _ in range(40):
        plan.observed(_SMALL, 120_000)  # quick again (blocked on: a little slower)
    assert plan.spin_ns(_SMALL) == _BUDGET_NS


def test_a_mean_pulled_up_by_a_few_slow_replies_still_polls() -> None:
    plan = SpinPlan(_BUDGET_NS)
    for n in range(64):
        # mostly 120 us, one in three 400 us or more (counted as 400): a mean above 200 us
        plan.observed(_SMALL, 450_000 if n % 3 == 0 else 120_000)
    assert plan.expected_ns(_SMALL) > _BUDGET_NS
    assert plan.spin_ns(_SMALL) == _BUDGET_NS


def test_one_stall_of_the_server_does_not_stop_the_polling() -> None:
    plan = SpinPlan(_BUDGET_NS)
    for _ in range(20):
        plan.observed(_SMALL, 90_000)
    plan.observed(_SMALL, 50_000_000)  # 50 ms: counted as twice the budget
    assert plan.spin_ns(_SMALL) == _BUDGET_NS
