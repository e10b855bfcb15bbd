"""The Kernel tab's collector keeps bounded state over many ticks (memtop's own memory grew while
the tab was visible): 500 reads of a captured /proc tree whose slabinfo changes every tick, with
caches that come and go, as the sampler and the tab drive it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from memtop.collect.kernel import KernelCollector
from memtop.collect.sampler import Sampler
from memtop.procfs import PAGE_SIZE

TREE = Path(__file__).resolve().parent.parent / "fixtures" / "kernel" / "tree"
TICKS = 500
HISTORY_LEN = 50


def slab_line(name: str, num_slabs: int) -> str:
    return f"{name} {num_slabs * 16} {num_slabs * 16} 256 16 1 : tunables 0 0 0 : slabdata {num_slabs} {num_slabs} 0"


def test_collector_state_stays_bounded_over_many_ticks(tmp_path):
    # GIVEN a copy of the captured tree, its slabinfo rewritten each tick: one cache growing by a
    # slab (one page) per tick, and a transient cache (a new name) every 3 ticks, each living 10
    tree = tmp_path / "tree"
    shutil.copytree(TREE, tree, symlinks=True)
    proc = tree / "proc"
    captured = (proc / "slabinfo").read_text().splitlines()
    clock = {"now": 1000.0}
    sampler = Sampler(proc, clock=lambda: clock["now"], wall_clock=lambda: 1.7e9 + clock["now"])
    collector = KernelCollector(proc, history_len=HISTORY_LEN)
    counts = []
    try:
        for tick in range(TICKS):
            clock["now"] = 1000.0 + 2.0 * tick
            transient = [slab_line(f"transient-{n}", 1 + n % 5) for n in range(max(0, tick // 3 - 3), tick // 3 + 1)]
            lines = captured + [slab_line("memtop-growing", 20000 + tick)] + transient
            (proc / "slabinfo").write_text("\n".join(lines) + "\n")
            # WHEN the sampler ticks and the tab's collector reads
            view = collector.collect(sampler.sample(), None, namespaces=False)
            counts.append(collector.retained_counts())
    finally:
        sampler.close()
    n_caches = len(view.slabs)
    # THEN what it keeps stops growing: the history holds at most HISTORY_LEN reads, and the
    # cache names (and reclaim flags) it remembers stay near the number of caches that exist
    last = counts[-1]
    assert last["times"] == last["history"] == HISTORY_LEN
    for c in counts:
        assert c["history"] <= HISTORY_LEN
        assert c["columns"] <= n_caches + 64 + HISTORY_LEN // 3 + 1
        assert c["reclaim_flags"] <= n_caches + 64 + 1
        assert c["history_cells"] <= HISTORY_LEN * c["columns"]
    # (167 transient names were seen over 500 ticks: without pruning the columns would hold them all)
    assert len({name for name in (f"transient-{n}" for n in range(TICKS // 3 + 1))}) == 167
    assert counts[-1]["columns"] < 237 + 167
    assert all(len(v) == len(view.slab_history_times) <= HISTORY_LEN for v in view.slab_history.values())
    # AND the figures are still right: +1 page per 2 s tick is +30 pages a minute
    growing = next(r for r in view.slabs if r.cache.name == "memtop-growing")
    assert growing.growth_bytes_per_min == pytest.approx(30 * PAGE_SIZE)
    assert "memtop-growing" in view.slab_history
    assert view.slab_history["memtop-growing"][-1] == (20000 + TICKS - 1) * PAGE_SIZE
    # a cache that existed for only part of the history has None before it appeared
    newest = max((r for r in view.slabs if r.cache.name.startswith("transient-")), key=lambda r: int(r.cache.name[10:]))
    assert newest.growth_bytes_per_min is None
