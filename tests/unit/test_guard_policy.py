"""The guard's limits on a given clock: cooldown, stops per minute, the walk budget.

These are the rules alone (times are arguments, so nothing sleeps); tests/live/test_guard.py shows
them holding in a running guard against real processes.
"""

from __future__ import annotations

from memtop.guard.policy import Cooldown, StopLimit, WalkBudget
from memtop.model.process import ProcessIdentity

A = ProcessIdentity(100, 5000)
A_REUSED = ProcessIdentity(100, 9000)  # the same PID, another process


def test_cooldown_is_per_process_identity():
    cooldown = Cooldown(300)
    cooldown.start(A, now=1000)
    assert cooldown.remaining(A, 1000) == 300
    assert cooldown.remaining(A, 1299.5) == 0.5
    assert cooldown.remaining(A, 1300) == 0
    assert cooldown.remaining(A_REUSED, 1100) == 0  # a reused PID is not in A's cooldown


def test_cooldown_forgets_gone_and_expired_processes():
    cooldown = Cooldown(300)
    cooldown.start(A, now=0)
    cooldown.start(A_REUSED, now=0)
    cooldown.forget_gone({A}, now=10)
    assert cooldown.remaining(A, 10) == 290 and cooldown.remaining(A_REUSED, 10) == 0
    cooldown.forget_gone({A}, now=301)
    assert cooldown.remaining(A, 301) == 0


def test_stop_limit_is_a_sliding_minute():
    limit = StopLimit(2)
    assert limit.allowed(0)
    limit.record(0)
    limit.record(30)
    assert not limit.allowed(59.9)
    assert limit.next_slot_in(45) == 15
    assert limit.allowed(60)  # the stop at 0 left the window
    limit.record(60)
    assert not limit.allowed(89) and limit.count(89) == 2
    assert limit.allowed(90.1)


def test_walk_budget_bounds_the_average_and_allows_one_overdraft():
    budget = WalkBudget(6.0, now=0)  # 6 CPU s per minute: 0.1 s per second
    assert budget.can_walk(0)
    budget.spend(10.0, now=0)  # one long walk overdraws
    assert not budget.can_walk(0)
    assert not budget.can_walk(39)  # -4 + 3.9
    assert budget.can_walk(41)
    # refilled, never above its capacity
    budget.can_walk(10_000)
    assert budget.tokens == 6.0
