"""Record -> replay round trip: what a RecordReader rebuilds from the file equals what the
sampler and the tabs' readers produced while recording, for real processes the test starts."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from dataclasses import replace

from memtop.collect.record import Recorder
from memtop.output.record import DEFAULT_MAX_BYTES, RecordReader, RecordWriter
from memtop.procfs.vmstat import read_vmstat
from tests.record_support import MIB, record_growth, record_in_process, same_processes, start_grower
from tests.support import status_kb

TREE = Path(__file__).resolve().parent.parent / "fixtures" / "kernel" / "tree" / "proc"


def test_every_recorded_figure_reads_back_equal(tmp_path, children):
    # GIVEN a child holding 48 MiB that grows by 32 MiB before the third tick
    path = tmp_path / "rec.db"
    # WHEN four ticks are recorded
    child, captures = record_growth(children, path, 4, hold_mib=48, grow_mib=32, at=2)
    vmrss_now = status_kb(child.pid, "VmRSS")
    reader = RecordReader(path)
    try:
        assert len(reader) == 4
        assert reader.meta["hostname"] == captures[0].snapshot.system.hostname
        assert reader.meta["interval_s"] == 2.0 and reader.meta["schema_version"] == 2
        for i, capture in enumerate(captures):
            tick = reader.load(i)
            live, replayed = capture.snapshot, tick.snapshot
            # THEN every process view is equal: the sample (status, stat, rollup, fds), the fault
            # rates, the RSS/fd history the chart draws, the rollup age
            assert same_processes(replayed, live)
            assert replayed.system == live.system
            assert replayed.history_times == live.history_times
            assert replayed.available_history == live.available_history
            assert replayed.rollups_read == live.rollups_read
            # and so are the Kernel tab's figures, system PSI, the cgroups and vmstat
            assert tick.kernel.slabs == capture.kernel.slabs
            assert tick.kernel.namespaces == capture.kernel.namespaces
            assert tick.kernel.file_nr == capture.kernel.file_nr
            assert tick.kernel.meminfo == capture.kernel.meminfo
            assert tick.kernel.categories == capture.kernel.categories
            assert tick.pressure.samples[-1] == capture.psi
            assert tick.pressure.tree == capture.cgroup_tree
            assert dict(tick.pressure.details) == dict(capture.cgroup_details)
            assert dict(tick.vmstat) == dict(capture.vmstat)
        # AND the child's recorded RSS is what /proc says and what it asked for
        last = reader.load(3).snapshot.by_pid(child.pid)
        assert last.sample.rss_bytes == vmrss_now
        assert last.sample.rss_bytes >= 80 * MIB
        assert "record-test-grower" in last.sample.cmdline
        history = reader.load(3).snapshot.history(last).column(1)
        assert len(history) == 4 and history[2] - history[1] >= 32 * MIB
        # AND the jump key's ranking puts the growth first
        series = reader.rss_series(child.pid, last.sample.identity.start_ticks)
        assert reader.largest_changes(series)[0] == 2
        # AND vmstat was read with the same reader as the Page cache tab
        assert set(tick.vmstat) == set(read_vmstat())
    finally:
        reader.close()
    # AND the file closed cleanly: no WAL beside it
    assert not os.path.exists(f"{path}-wal")


def test_a_kernel_view_read_at_an_earlier_tick_replays_with_its_own_meminfo(tmp_path, children):
    # GIVEN parts spaced so far apart that the Kernel part runs at the first tick only (a busy
    # machine spaces a costly part out the same way), and a child that grows by 32 MiB after it
    path = tmp_path / "rec.db"
    # WHEN three ticks are recorded
    child, captures = record_growth(children, path, 3, hold_mib=16, grow_mib=32, at=1, part_duty=1e9)
    reader = RecordReader(path)
    try:
        first = captures[0].kernel
        for i, capture in enumerate(captures):
            tick = reader.load(i)
            # THEN each tick's Kernel view is the one read at the first tick
            assert capture.kernel.tick == first.tick
            # and its meminfo, slab line and categories are that tick's, as they were live,
            # although the tick's own meminfo (the header's) has moved on by the child's growth
            assert tick.kernel.meminfo == first.meminfo
            assert tick.kernel.categories == first.categories
            assert tick.snapshot.system.meminfo == capture.snapshot.system.meminfo
        # (the machine's AnonPages need not have grown: other processes free memory meanwhile)
        grown = [c.snapshot.by_pid(child.pid).sample.rss_bytes for c in (captures[0], captures[2])]
        assert grown[1] - grown[0] >= 32 * MIB
        assert captures[2].snapshot.system.meminfo != first.meminfo
    finally:
        reader.close()


def test_the_bound_drops_the_oldest_ticks_and_the_file_stays_under_it(tmp_path):
    # GIVEN a small bound, and ticks of a captured proc tree (a fixed number of processes:
    # the live machine's count changes under a test, and one tick of 1,000 processes alone
    # would be larger than this bound)
    path = tmp_path / "ring.db"
    max_bytes = 96 * 1024
    sizes = []

    def after_write(writer, i):
        pages = writer.conn.execute("PRAGMA page_count").fetchone()[0]
        sizes.append(max(pages * writer.page_size, writer.file_bytes()))  # the file and its -wal

    # WHEN 150 ticks are written
    record_in_process(path, 150, max_bytes=max_bytes, interval_s=0.5, after_write=after_write, root=TREE)
    # THEN the database never grew past the bound, nor did the file once closed
    assert max(sizes) <= max_bytes, sizes
    assert os.path.getsize(path) <= max_bytes
    reader = RecordReader(path)
    try:
        # AND the oldest ticks are gone, the newest kept, contiguous
        assert 0 < reader.seqs[0] and reader.seqs[-1] == 149
        assert reader.seqs == list(range(reader.seqs[0], 150))
        assert len(reader) >= 3
        # AND the oldest tick left is whole, and no process row outlives its ticks
        assert reader.load(0).snapshot.processes
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT count(*) FROM procs WHERE last_seq < (SELECT min(seq) FROM ticks)").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM sections WHERE seq < (SELECT min(seq) FROM ticks)").fetchone()[0] == 0
        conn.close()
        reader.verify()
    finally:
        reader.close()


def test_a_process_missing_for_a_tick_keeps_its_row(tmp_path, children):
    # GIVEN a process the sampler did not see at the second tick (a read that failed), but did
    # at the first and the third
    child = start_grower(children, 8)
    path = tmp_path / "gap.db"
    recorder = Recorder()
    writer = RecordWriter(path, recorder.meta(2.0, DEFAULT_MAX_BYTES))
    try:
        first = recorder.capture()
        writer.write(first)
        second = recorder.capture()
        without = replace(second, snapshot=replace(
            second.snapshot, processes=tuple(v for v in second.snapshot.processes if v.pid != child.pid)))
        writer.write(without)
        writer.write(recorder.capture())
    finally:
        writer.close()
        recorder.close()
    # THEN the file holds it at ticks 0 and 2, as one process
    reader = RecordReader(path)
    try:
        present = [reader.load(i).snapshot.by_pid(child.pid) is not None for i in range(3)]
        assert present == [True, False, True]
        identity = first.snapshot.by_pid(child.pid).sample.identity
        assert [i for i, _ in reader.rss_series(child.pid, identity.start_ticks)] == [0, 2]
    finally:
        reader.close()
