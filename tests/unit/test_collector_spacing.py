"""The Collector keeps every part under 0.5 % of a core: a run that cost c seconds of CPU is not
started again sooner than PART_DUTY * c after it ended, and the tab says when it was read.
Real ticks of /proc (the Sampler), on a clock the test advances 2 s per tick; the parts burn
real CPU time."""

from __future__ import annotations

import time

from memtop.collect.collector import PART_DUTY, Collector, Job, Part
from memtop.collect.sampler import Sampler
from memtop.procfs import PROC
from memtop.tui.widgets import spaced_note


class Burner(Part):
    def __init__(self, name: str, cpu_s: float):
        self.name = name
        self.cpu_s = cpu_s
        self.ticks: list[int] = []

    def collect(self, job: Job) -> int:
        start = time.thread_time()
        while time.thread_time() - start < self.cpu_s:
            pass
        self.ticks.append(job.snapshot.tick)
        return len(self.ticks)


def test_an_expensive_part_is_spaced_by_its_cost_and_a_cheap_one_runs_every_tick():
    clock = [1000.0]
    # 5 s apart; every tick
    expensive, cheap = Burner("expensive", 5.0 / PART_DUTY), Burner("cheap", 0.2 / PART_DUTY)
    collector = Collector(PROC, parts=[expensive, cheap], sampler=Sampler(PROC, clock=lambda: clock[0]), workers=0)
    try:
        collector.want("test", {"expensive", "cheap"})
        for _ in range(12):
            clock[0] += 2.0
            sample = collector.tick()
        assert len(cheap.ticks) == 12
        gaps = [b - a for a, b in zip(expensive.ticks, expensive.ticks[1:])]
        # each run cost ≥ 5 s / PART_DUTY of CPU: ≥ 5 s to the next (3 ticks of 2 s), and it does run again
        assert len(expensive.ticks) >= 3 and all(g >= 3 for g in gaps), expensive.ticks
        result = sample.result("expensive")
        assert result.cpu_s >= 5.0 / PART_DUTY
        assert PART_DUTY * result.cpu_s > collector.interval_s
        # the tab says when it was read and how often; a part read every tick says nothing
        assert spaced_note(result).startswith("read at ") and ", every ~" in spaced_note(result)
        assert spaced_note(sample.result("cheap")) == ""
        # a Collector that does not space runs out (part_duty 0: the fixed-tree TUI tests) says nothing
        assert spaced_note(result, collector.interval_s, duty=0.0) == ""
    finally:
        collector.close()
