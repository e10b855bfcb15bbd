"""Pilot tests of `memtop replay`: the app on a recording of real processes the test started."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static
from textual.worker import WorkerCancelled, WorkerState

from memtop.format import fmt_bytes
from memtop.output.record import RecordReader
from memtop.tui.arenas import ArenasTab
from memtop.tui.kernel import KernelTab
from memtop.tui.layers import LayersTab
from memtop.tui.pagecache import PageCacheTab
from memtop.tui.pressure import PressureTab
from memtop.tui.processes import ProcessesTab, RssChart
from memtop.tui.tmpfs import TmpfsTab
from memtop.tui.replay import FD_TABLE_NOT_RECORDED, ReplayApp, ReplayBar
from tests.record_support import MIB, comparable, record_growth, record_in_process, start_grower


@pytest.fixture
def grown_recording(tmp_path, children):
    """Five ticks; the child holds 40 MiB, and 24 MiB more from the fourth tick on."""
    path = tmp_path / "replay.db"
    child, captures = record_growth(children, path, 5, hold_mib=40, grow_mib=24, at=3, interval_s=2.0)
    return path, child, captures


async def settle(app, pilot) -> None:
    """Until no worker runs (a key pressed cancels the load the previous one started)."""
    await pilot.pause()
    while any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers):
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:
            pass
    await pilot.pause()


def bar_text(app) -> str:
    return app.query_one(ReplayBar).content.plain


def row_of(app, pid: int) -> str:
    table = app.query_one(ProcessesTab).table
    index = next(i for i, v in enumerate(table.rows) if v.pid == pid)
    table.scroll_to(y=index, animate=False)
    return "".join(seg.text for seg in table.render_line(index - int(table.scroll_offset.y)))


async def test_replay_shows_recorded_values_and_steps_through_time(grown_recording):
    path, child, captures = grown_recording
    reader = RecordReader(path)
    app = ReplayApp(reader, pid=child.pid)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            # GIVEN the first tick: the header, the position and the child's row are the recorded ones
            assert app.position == 0 and "tick 1/5" in bar_text(app)
            recorded = captures[0].snapshot.by_pid(child.pid)
            assert comparable(app.snapshot, app.snapshot.by_pid(child.pid)) == comparable(captures[0].snapshot, recorded)
            assert app.target == recorded.sample.identity
            assert fmt_bytes(recorded.sample.rss_bytes) in row_of(app, child.pid)

            # WHEN stepping forward twice THEN the third tick is shown, its chart from recorded history
            await pilot.press("full_stop", "full_stop")
            await settle(app, pilot)
            assert app.position == 2 and "tick 3/5" in bar_text(app)
            view = app.snapshot.by_pid(child.pid)
            assert comparable(app.snapshot, view) == comparable(captures[2].snapshot, captures[2].snapshot.by_pid(child.pid))
            history = app.snapshot.history(view)
            assert len(history.column(1)) == 3
            chart = app.query_one(RssChart)
            assert chart._drawn_key[:2] == (child.pid, view.sample.rss_bytes)
            assert chart._drawn_at == history.point_times()[-1]

            # WHEN jumping to the largest RSS change of the selected process THEN it is the growth
            await pilot.press("c")
            await settle(app, pilot)
            assert app.position == 3
            grown = app.snapshot.by_pid(child.pid).sample.rss_bytes
            assert grown - recorded.sample.rss_bytes >= 24 * MIB
            assert fmt_bytes(grown) in row_of(app, child.pid)

            # WHEN going to the ends, and back past the start
            await pilot.press("greater_than_sign")
            await settle(app, pilot)
            assert app.position == 4 and "tick 5/5" in bar_text(app)
            await pilot.press("less_than_sign")
            await settle(app, pilot)
            assert app.position == 0
            await pilot.press("comma")
            await settle(app, pilot)
            assert app.position == 0  # nothing before the first tick

            # THEN actions are not offered (they would act on the machine now) and t does nothing
            assert not {"t", "e", "D"} & {k.key_display for k in app.screen.query("FooterKey")}
            await pilot.press("t", "D")
            await pilot.pause()
            assert app.screen is app.screen_stack[0]
    finally:
        reader.close()


async def test_recorded_tabs_show_the_file_and_the_others_say_not_recorded(grown_recording):
    path, child, captures = grown_recording
    reader = RecordReader(path)
    app = ReplayApp(reader, pid=child.pid)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            await pilot.press("greater_than_sign")
            await settle(app, pilot)
            last = captures[-1]
            # Kernel: the recorded slabs and sockets, no live collector ever made
            await pilot.press("5")
            await settle(app, pilot)
            kernel = app.query_one(KernelTab)
            assert app.collector.latest is None  # the live Collector never ticked
            assert kernel.view.slabs == last.kernel.slabs and kernel.view.namespaces == last.kernel.namespaces
            assert kernel.view.fd_breakdown_reason == FD_TABLE_NOT_RECORDED
            # Pressure: the recorded PSI readings and cgroups, no live worker
            await pilot.press("7")
            await settle(app, pilot)
            pressure = app.query_one(PressureTab)
            assert list(pressure.samples) == [c.psi for c in captures]
            assert pressure.cgroups.tree == last.cgroup_tree
            assert not [w for w in app.workers if w.group in ("pressure", "pressure-trigger")]
            # Page cache and tmpfs: read at the first tick (every TAKEN_EVERY), shown with their age
            age = last.snapshot.system.monotonic - captures[0].snapshot.system.monotonic
            await pilot.press("4")
            await settle(app, pilot)
            assert captures[0].files is not None and all(c.files is None for c in captures[1:])
            assert app.query_one(PageCacheTab).table.files == captures[0].files.files
            assert ("page cache read" in bar_text(app)) == (age >= 0.5), (age, bar_text(app))
            # its thrashing charts: /proc/vmstat's rates between the recorded ticks (was "not recorded")
            page_cache = app.query_one(PageCacheTab)
            assert page_cache.vmstat_error is None and len(page_cache.vmstat.history) == len(captures) - 1
            first, second = captures[-2], captures[-1]
            seconds = second.snapshot.system.monotonic - first.snapshot.system.monotonic
            pgpgin = (second.vmstat["pgpgin"] - first.vmstat["pgpgin"]) / seconds
            assert page_cache.vmstat.latest.rates["pgpgin"] == pytest.approx(pgpgin)
            await pilot.press("6")
            await settle(app, pilot)
            assert app.query_one(TmpfsTab).report == captures[0].tmpfs
            # The heap tabs: recorded only with `memtop record --pid`, and they say so
            assert reader.target is None
            for key in ("2", "3"):
                await pilot.press(key)
                await settle(app, pilot)
                shown = " ".join(str(w.render()) for w in app.active_tab().query(Static))
                assert "not recorded at this tick of the file" in shown, (key, shown[:500])
    finally:
        reader.close()


async def test_a_recording_of_one_process_replays_its_heap_tabs(tmp_path, children):
    # GIVEN `memtop record --pid` of a process holding 40 MiB
    child = start_grower(children, 40)
    path = tmp_path / "heap.db"
    captures = record_in_process(path, 3, pid=child.pid)
    layers = next(c.layers for c in captures if c.layers is not None)
    arenas = next(c.arenas for c in captures if c.arenas is not None)
    reader = RecordReader(path)
    # WHEN it is replayed without naming the process
    app = ReplayApp(reader)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            # THEN the recorded process is selected and its Layers and Arenas are the recorded reports
            assert reader.target == app.target and app.target.pid == child.pid
            await pilot.press("2")
            await settle(app, pilot)
            assert app.query_one(LayersTab).report == layers
            await pilot.press("3")
            await settle(app, pilot)
            assert app.query_one(ArenasTab).analysis == arenas
    finally:
        reader.close()


# --- a deterministic look at the replay screen -------------------------------------------------

FIXED_META = {"schema_version": 1, "memtop_version": "0.1.0", "hostname": "fixture", "kernel": "6.18.0",
              "interval_s": 2.0, "start_time": 1_790_000_000.0, "max_bytes": 2**20, "page_size": 4096,
              "clock_ticks": 100, "cgroup_version": None, "cgroup_mount": None,
              "cgroup_error": "not recorded in this fixture", "psi_unavailable_reason": None}


def fixed_recording(path: Path) -> None:
    """Three ticks of the captured proc tree (tests/fixtures/proc-basic) with fixed clocks."""
    from memtop.collect.sampler import Sampler
    from memtop.output.record import RecordWriter, TickCapture
    from tests.tui.fixed import FIX, FakeClock

    clock = FakeClock()
    walls = iter(1_790_000_000.0 + 2 * i for i in range(3))
    sampler = Sampler(FIX, clock=clock, wall_clock=lambda: next(walls))
    writer = RecordWriter(path, dict(FIXED_META), max_bytes=2**20)
    try:
        for _ in range(3):
            writer.write(TickCapture(sampler.sample(), None, None, None, {}, {}, None))
            clock.now += 2.0
    finally:
        writer.close()
        sampler.close()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_replay_screen_looks(snap_compare, tmp_path, monkeypatch, size):
    import time

    monkeypatch.setenv("TZ", "UTC")  # the bar shows the tick's local time
    time.tzset()
    path = tmp_path / "fixed.db"
    fixed_recording(path)
    reader = RecordReader(path)

    async def run_before(pilot):
        app = pilot.app
        await settle(app, pilot)
        await pilot.press("full_stop")
        await settle(app, pilot)

    try:
        assert snap_compare(ReplayApp(reader, pid=7335), terminal_size=size, run_before=run_before)
    finally:
        reader.close()
        monkeypatch.delenv("TZ")
        time.tzset()
