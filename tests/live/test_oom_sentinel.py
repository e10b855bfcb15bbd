"""When the OOM watch reads while the Containers tab is hidden (memtop.collect.parts.OomSentinel),
on a real Collector with worker threads reading this machine's cgroups: a baseline at the first
tick, then nothing until /proc/vmstat's oom_kill moves (the sentinel reads a vmstat file the test
writes, this machine's own text with oom_kill set) or the baseline's time comes again; a
reading asked for is forced past the Collector's spacing and wanted until it has arrived."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from memtop.collect.collector import Collector
from memtop.collect.parts import OomSentinel, default_parts
from memtop.collect.sampler import Sampler
from memtop.procfs import PROC

VMSTAT = Path("/proc/vmstat").read_text()


def _write(root: Path, kills: int | None) -> None:
    text = re.sub(r"^oom_kill \d+\n", "", VMSTAT, flags=re.M)
    (root / "vmstat").write_text(text + (f"oom_kill {kills}\n" if kills is not None else ""))


@pytest.fixture
def collector():
    c = Collector(PROC, parts=default_parts(PROC), sampler=Sampler(PROC), workers=2)
    c.interval_s = 0.2
    c.part_duty = 1e9  # no reading is ever due by time alone: only the forced ones run
    yield c
    c.close()


def _tick(collector, sentinel, readings: list[int]) -> tuple[str, ...]:
    sample = collector.tick()
    wanted = sentinel.wants(collector, sample)
    collector.want("oom-watch", wanted)
    result = sample.result("containers")
    if result is not None and result.tick not in readings:
        readings.append(result.tick)
    return wanted


def _until_read(collector, sentinel, readings, count, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(readings) < count and time.monotonic() < deadline:
        _tick(collector, sentinel, readings)
        time.sleep(0.2)
    assert len(readings) == count, readings


def test_a_baseline_then_a_reading_at_the_tick_after_oom_kill_moves(collector, tmp_path):
    _write(tmp_path, 3)
    sentinel = OomSentinel(tmp_path, every_s=3600)
    readings: list[int] = []
    assert _tick(collector, sentinel, readings) == ("containers",)  # the baseline, asked at once
    _until_read(collector, sentinel, readings, 1)
    assert _tick(collector, sentinel, readings) == ()  # read: not wanted any more
    for _ in range(5):  # nothing moved: nothing read
        assert _tick(collector, sentinel, readings) == ()
        time.sleep(0.1)
    assert len(readings) == 1
    _write(tmp_path, 4)  # a kill, seconds after a reading: the Collector's spacing would wait
    asked = collector.tick()
    assert sentinel.wants(collector, asked) == ("containers",)
    collector.want("oom-watch", ("containers",))
    _until_read(collector, sentinel, readings, 2)
    assert readings[-1] >= asked.processes.tick  # from the processes of the tick it was asked at, or later
    assert _tick(collector, sentinel, readings) == ()


def test_the_baseline_comes_again_after_its_time_without_vmstat(collector, tmp_path):
    _write(tmp_path, None)  # a kernel before 4.13 has no oom_kill line
    sentinel = OomSentinel(tmp_path, every_s=1.0)
    readings: list[int] = []
    _until_read(collector, sentinel, readings, 1)
    _until_read(collector, sentinel, readings, 2)  # a second, once its second has passed
    (tmp_path / "vmstat").unlink()
    (tmp_path / "vmstat").mkdir()  # unreadable: reading it fails, the time alone says when
    _until_read(collector, sentinel, readings, 3)


def test_a_kill_read_before_its_victim_left_is_read_again_until_the_watch_stops_waiting(tmp_path):
    # GIVEN the real containers part, whose OOM watch holds an event still waiting for its victim
    # (its counter moved while the victim was listed, and no kernel log named it). The event is
    # made from two ticks given to the watch; every reading after them is this machine's.
    from memtop.model.oom import CgroupCounters, OomTick, OomWatch, ProcessBrief

    parts = default_parts(PROC)
    [containers] = [p for p in parts if p.name == "containers"]
    containers.watch = OomWatch(pending_s=3.0)
    collector = Collector(PROC, parts=parts, sampler=Sampler(PROC), workers=2)
    collector.interval_s = 0.2
    collector.part_duty = 1e9
    try:
        _write(tmp_path, 3)
        sentinel = OomSentinel(tmp_path, every_s=3600)
        readings: list[int] = []
        _until_read(collector, sentinel, readings, 1)  # the baseline
        assert _tick(collector, sentinel, readings) == ()
        victim = ProcessBrief(4_000_000, 1, "grower", "/gone", 80 << 20, 80 << 20, 0, "R")
        now = time.monotonic()
        for t, kills in ((now - 1.0, 0), (now, 1)):
            cgroups = {"/gone": CgroupCounters("/gone", 2, kills, oom=kills)}
            containers.watch.update(OomTick(t, time.time(), 3, None, None, 4096, cgroups, {victim.pid: victim}))
        assert containers.watch.awaiting_victims == 1
        # WHEN the sentinel sees a reading whose watch still waits, THEN it asks for the next one,
        # and so on while the watch waits (3 s here), and not after
        _write(tmp_path, 4)  # the kill moved vmstat: one reading asked for it
        started = time.monotonic()
        _until_read(collector, sentinel, readings, 2)
        while containers.watch.awaiting_victims and time.monotonic() - started < 10:
            _tick(collector, sentinel, readings)
            time.sleep(0.2)
        assert containers.watch.awaiting_victims == 0
        waited = len(readings)
        assert waited >= 4, readings  # read again at the ticks while the event waited
        for _ in range(8):
            _tick(collector, sentinel, readings)
            time.sleep(0.2)
        assert len(readings) <= waited + 1  # at most the reading already asked for when it stopped
    finally:
        collector.close()
