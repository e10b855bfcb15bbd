"""Live: the guard's ranking on real processes: real read-only walks (memtop.actions.trim.predict),
cached per process identity, walked again when the process's anonymous memory moved, and
bounded by the walk budget."""

from __future__ import annotations

import time

import pytest

from memtop.guard.config import Rules
from memtop.guard.policy import Ranking, WalkBudget, scan
from tests.actions_support import target_binary
from tests.guard_support import PressureCgroup
from tests.pressure_support import v1_memory_available
from tests.support import IS_ROOT

pytestmark = [pytest.mark.live, pytest.mark.skipif(not IS_ROOT, reason="walks other processes' heaps: root")]

MIB = 1 << 20


@pytest.fixture
def cgroup():
    reason = v1_memory_available()
    if reason:
        pytest.skip(reason)
    cg = PressureCgroup(1 << 30)
    try:
        yield cg
    finally:
        cg.close()


def test_ranking_walks_once_caches_and_walks_again_when_memory_moved(cgroup, gcc):
    # GIVEN two processes in a cgroup, 60 and 30 MiB of free-but-kept heap, and one with 2 MiB
    big = cgroup.start([target_binary(), "60"])
    small = cgroup.start([target_binary(), "30"])
    tiny = cgroup.start([target_binary(), "2"])
    rules = Rules(allow_cgroups=(cgroup.memory_path,))
    ranking = Ranking(cache_age_s=120, min_release=16 * MIB, budget=WalkBudget(60, time.monotonic()))
    # WHEN candidates are scanned and ranked
    candidates = [c for c in scan(rules, 16 * MIB) if c.excluded is None]
    # THEN only processes with enough anonymous memory are candidates, largest first
    assert [c.identity.pid for c in candidates] == [big.pid, small.pid]
    report = ranking.refresh(candidates)
    assert [e.identity.pid for e in report.walked] == [big.pid, small.pid]
    ordered = ranking.ordered(candidates)
    assert [c.identity.pid for c, _ in ordered] == [big.pid, small.pid]
    assert abs(ordered[0][1].release_bytes - 60 * MIB) < 2 * MIB and ordered[0][1].walk_cpu_s > 0
    # WHEN ranked again at once: the cached predictions stand, nothing is walked
    assert ranking.refresh([c for c in scan(rules, 16 * MIB) if c.excluded is None]).walked == []
    # WHEN the small one spikes again by 40 MiB (its anonymous memory moved by more than half the minimum)
    assert small.ask("alloc 40", timeout=60) == "allocated"
    candidates = [c for c in scan(rules, 16 * MIB) if c.excluded is None]
    report = ranking.refresh(candidates)
    # THEN it alone is walked again
    assert [e.identity.pid for e in report.walked] == [small.pid]
    assert tiny.pid not in ranking.entries


def test_the_walk_budget_defers_walks(cgroup, gcc):
    a = cgroup.start([target_binary(), "40"])
    b = cgroup.start([target_binary(), "30"])
    rules = Rules(allow_cgroups=(cgroup.memory_path,))
    # GIVEN a budget of 1 ms of CPU per minute, spent at once by one walk of 40 MiB (tens of ms)
    ranking = Ranking(cache_age_s=120, min_release=16 * MIB, budget=WalkBudget(0.001, time.monotonic()),
                      max_walk_s=60)
    candidates = [c for c in scan(rules, 16 * MIB) if c.excluded is None]
    report = ranking.refresh(candidates)
    # THEN the first walk happened (it may overdraw), the next waits for the bucket to refill
    assert [e.identity.pid for e in report.walked] == [a.pid]
    assert report.deferred == 1 and b.pid not in {i.pid for i in ranking.entries}
    assert report.walked[0].walk_cpu_s > 0.001 and ranking.budget.tokens < 0


def test_a_walk_longer_than_allowed_is_stopped_and_remembered_as_refused(cgroup, gcc):
    # GIVEN a process with 200 MiB of free-kept heap in 1000-byte chunks (a walk of ~200,000 chunks)
    big = cgroup.start([target_binary(), "200"], timeout=60)
    rules = Rules(allow_cgroups=(cgroup.memory_path,))
    candidates = [c for c in scan(rules, 16 * MIB) if c.excluded is None]
    # WHEN one walk may last 1 ms
    ranking = Ranking(cache_age_s=120, min_release=16 * MIB, budget=WalkBudget(60, time.monotonic()), max_walk_s=0.001)
    report = ranking.refresh(candidates)
    # THEN the walk was stopped, and the process is remembered as refused (not walked again for cache_age)
    (entry,) = report.walked
    assert entry.identity.pid == big.pid and entry.release_bytes is None
    assert "took longer than 0.001 s" in entry.refusal
    assert ranking.ordered(candidates) == [] and ranking.refresh(candidates).walked == []
    # AND a walk stopped because the guard is stopping (asked once the walk began) is not remembered
    ranking = Ranking(cache_age_s=120, min_release=16 * MIB, budget=WalkBudget(60, time.monotonic()))
    answers = iter([False])  # "not stopping" when the walk starts, "stopping" from then on
    report = ranking.refresh(candidates, should_stop=lambda: next(answers, True))
    assert report.walked == [] and ranking.entries == {}
    assert ranking.budget.tokens < 60  # the stopped walk's CPU still counts
