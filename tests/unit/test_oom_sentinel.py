"""When the OOM watch reads while the Containers tab is hidden (memtop.collect.parts.OomSentinel):
a baseline, then every `every` ticks, and at once when /proc/vmstat's oom_kill moves; on this
machine's own /proc/vmstat text with oom_kill set by the test."""

from __future__ import annotations

import re
from pathlib import Path

from memtop.collect.parts import OomSentinel

VMSTAT = Path("/proc/vmstat").read_text()


def _write(root: Path, kills: int | None) -> None:
    text = re.sub(r"^oom_kill \d+\n", "", VMSTAT, flags=re.M)
    (root / "vmstat").write_text(text + (f"oom_kill {kills}\n" if kills is not None else ""))


def _ticks(sentinel: OomSentinel, n: int) -> list[int]:
    """The ticks (1-based, counted from the sentinel's start) at which it said to read."""
    return [sentinel._ticks for _ in range(n) if sentinel.due()]


def test_a_baseline_then_every_n_ticks_when_nothing_moves(tmp_path):
    _write(tmp_path, 3)
    sentinel = OomSentinel(tmp_path, first=15, every=150)
    assert _ticks(sentinel, 400) == [15, 165, 315]
    _write(tmp_path, 3)
    assert _ticks(OomSentinel(tmp_path), 301) == [1, 151, 301]  # the defaults: the first tick, then every 5 minutes at 2 s


def test_a_kill_is_read_at_the_next_tick(tmp_path):
    _write(tmp_path, 3)
    sentinel = OomSentinel(tmp_path, first=15, every=150)
    assert _ticks(sentinel, 20) == [15]
    _write(tmp_path, 4)
    assert sentinel.due()  # tick 21: oom_kill moved
    assert _ticks(sentinel, 10) == []  # and stays put


def test_a_kill_before_the_baseline_waits_for_it(tmp_path):
    _write(tmp_path, 0)
    sentinel = OomSentinel(tmp_path, first=15, every=150)
    assert _ticks(sentinel, 5) == []
    _write(tmp_path, 1)
    assert _ticks(sentinel, 15) == [15]  # no baseline to compare with before it


def test_without_oom_kill_or_vmstat_the_ticks_alone_say_when(tmp_path):
    _write(tmp_path, None)  # a kernel before 4.13 has no oom_kill line
    assert _ticks(OomSentinel(tmp_path, first=2, every=5), 12) == [2, 7, 12]
    missing = tmp_path / "nothing-here"
    missing.mkdir()
    assert _ticks(OomSentinel(missing, first=2, every=5), 12) == [2, 7, 12]
