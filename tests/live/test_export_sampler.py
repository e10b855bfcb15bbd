"""The exporter's collection (memtop.collect.export) against real processes started by the tests."""

from __future__ import annotations

import pytest

from memtop.collect.export import ExportSampler
from tests.support import IS_ROOT, compile_c, rollup_kb, run_as_user

# A C target of ~1 MiB RSS (smaller than pytest, its shell and PID 1: outside a top 3), which
# grows to 400 MiB when asked.
GROWER = r"""
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    char line[64];
    printf("READY\n"); fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) return 1;
    /* volatile stores: gcc drops a malloc+memset whose memory is never read */
    volatile char *p = malloc(400 << 20);
    for (long i = 0; i < (400L << 20); i += 4096) p[i] = 1;
    printf("GROWN %d\n", p[12288]); fflush(stdout);
    fgets(line, sizeof line, stdin);
    return 0;
}
"""


def test_a_process_entering_the_top_n_has_its_smaps_rollup_read_that_tick(children, gcc):
    # GIVEN a small process, outside the top 3 by RSS
    child = children.start([compile_c(GROWER, name="export-grower")])
    sampler = ExportSampler(top=3)
    try:
        first = sampler.sample()
        assert child.pid not in {s.pid for s in first.processes}
        # WHEN it grows to 400 MiB between two ticks
        assert child.ask("grow") == "GROWN 1"
        second = sampler.sample()
        # AND while it stays idle in the top N, its PSS is read again at every tick
        read_at = []
        for _ in range(7):
            tick = sampler.sample()
            identity = next(s for s in tick.processes if s.pid == child.pid).identity
            read_at.append(sampler.sampler._rollups[identity].tick)
    finally:
        sampler.close()
    assert read_at == list(range(read_at[0], read_at[0] + 7))
    # THEN it is in the top 3 at once, with a PSS read this tick (not the one from its first look)
    row = next(s for s in second.processes if s.pid == child.pid)
    assert row.rollup is not None and row.rollup.pss >= 400 << 20
    assert row.rollup.pss == pytest.approx(rollup_kb(child.pid, "Pss"), rel=0.05)
    assert len(second.processes) == 3
    assert [s.rss_bytes for s in second.processes] == sorted((s.rss_bytes for s in second.processes), reverse=True)


def _sample_as_user():
    sampler = ExportSampler(top=1000)
    try:
        sample = sampler.sample()
    finally:
        sampler.close()
    return dict(sample.errors), sum(1 for s in sample.processes if s.rollup is None), len(sample.processes)


@pytest.mark.skipif(not IS_ROOT, reason="dropping to another user needs root")
def test_as_an_ordinary_user_what_needs_root_is_reported_not_zeroed():
    errors, without_rollup, processes = run_as_user(65534, _sample_as_user)
    assert "slabinfo" in errors and "root" in errors["slabinfo"]
    assert "processes" not in errors and "meminfo" not in errors and "vmstat" not in errors
    # Other users' smaps_rollup is refused: those rows have RSS but no PSS (absent, not 0).
    assert processes > 0 and without_rollup > 0
