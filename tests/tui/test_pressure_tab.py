"""The Pressure tab driven through the real app: on the captured tree (deterministic), with
cgroup events changing on disk, without /proc/pressure, and live with a real stall."""

from __future__ import annotations

import copy
import io
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest
from rich.console import Console

from memtop.collect.sampler import Sampler
from memtop.procfs.pressure import DEFAULT_TRIGGER
from memtop.tui.app import MemtopApp
from memtop.tui.pressure import CgroupTree, PressureBanner, PressureTab, stall_line
from tests.pressure_support import THRASH_CODE, V1Cgroup, make_cold_file, v1_memory_available

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "pressure"
TREE = FIX / "tree"


def text_of(widget, width: int = 200) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(widget.content)
    return console.export_text()


def squeezed(text: str) -> str:
    """The text with runs of spaces as one: the figure grid pads its cells."""
    return re.sub(r" +", " ", text)


async def show_pressure(app: MemtopApp, pilot, root: Path) -> PressureTab:
    """GIVEN one snapshot of ``root`` delivered, WHEN the Pressure tab is opened."""
    await app.workers.wait_for_complete()
    app.tick()
    await pilot.pause()
    await pilot.press("7")
    app.tick()  # the tab's parts are read from the next tick on, for the selected process
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()
    return app.query_one(PressureTab)


async def test_tab_on_the_captured_tree():
    app = MemtopApp(root=TREE / "proc", sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await show_pressure(app, pilot, TREE / "proc")
        psi = text_of(tab.query_one("#pressure-psi"))
        assert "memory" in psi and "5.97%" in psi and "1.81%" in psi
        assert "captured tree" in text_of(tab.query_one("#pressure-trigger"))
        tree = text_of(tab.query_one(CgroupTree))
        assert "memtop-test" in tree and "32.0 MiB" in tree and "v1, /sys/fs/cgroup/memory" in tree
        detail = squeezed(text_of(tab.query_one("#pressure-detail")))
        # The largest process is selected at start: the thrasher in the limited cgroup.
        assert "in cgroup v1 /memtop-test" in detail
        assert "oom_kill 1" in detail and "(+" not in detail  # nothing new since start
        assert "uses 100% of its limit" in detail and "full avg10" in detail
        # the most severe first: the cgroup at its limit above the system's PSI warning
        assert 0 <= detail.index("CRITICAL: ") < detail.index("WARNING: "), detail
        assert "no stall since memtop started" not in detail  # no trigger armed on a captured tree
        assert "(no trigger armed)" in detail
        # The help screen lists the sources of the tab's figures.
        await pilot.press("question_mark")
        await pilot.pause()
        assert any("memory.events" in src for _, src in app.screen.figure_sources)


async def test_v2_cgroup_of_the_selected_process():
    root = FIX / "v2tree" / "proc"  # hand-written v2 files (see its README)
    app = MemtopApp(root=root, sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await show_pressure(app, pilot, root)
        detail = squeezed(text_of(tab.query_one("#pressure-detail")))
        assert "PID 4242 in cgroup v2 /system.slice/postgresql.service" in detail
        assert "high 240 MiB" in detail and "swap 0 B of max" in detail
        assert "memory.pressure\n some avg10 3.20%" in detail and "full avg10 1.10%" in detail
        assert "stalled on memory 1.10%" in detail  # cgroup full avg10 > 0
        assert "uses 100% of its limit" in detail  # 255 of 256 MiB
        tree = text_of(tab.query_one(CgroupTree))
        assert "postgresql.service" in tree and "v2, /sys/fs/cgroup" in tree
        assert "No PSI to show" in text_of(tab.query_one("#pressure-psi"))  # the v2 tree has no proc/pressure


async def test_events_since_start_are_highlighted(tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(TREE, root)
    app = MemtopApp(root=root / "proc", sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await show_pressure(app, pilot, root / "proc")
        assert "oom_kill+" not in text_of(tab.query_one(CgroupTree))
        # WHEN the kernel counts two more OOM kills and more failed charges in the cgroup
        cg = root / "sys/fs/cgroup/memory/memtop-test"
        oom = (cg / "memory.oom_control").read_text().replace("oom_kill 1", "oom_kill 3")
        (cg / "memory.oom_control").write_text(oom)
        (cg / "memory.failcnt").write_text(str(int((cg / "memory.failcnt").read_text()) + 10) + "\n")
        app.tick()
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        # THEN the tree and the detail show the increase, and a finding names it
        tree = text_of(tab.query_one(CgroupTree))
        assert "failcnt+10 oom_kill+2" in tree
        # AND at the pane's own width the names keep their room (use% gives way), the events
        # fold under themselves (the fresh-eyes report: names cut to "fe-t…" once failcnt moved)
        widget = tab.query_one(CgroupTree)
        shown = text_of(widget, widget.content_size.width)
        assert "memtop-test" in shown and "failcnt+10" in shown and "oom_kill+2" in shown, shown
        detail = squeezed(text_of(tab.query_one("#pressure-detail")))
        assert "oom_kill 3 (+2)" in detail
        assert "killed 2 processes in cgroup /memtop-test since memtop started" in detail


async def test_a_tick_with_the_same_figures_repaints_nothing(tmp_path):
    """Issue 20, item 2: every tick brings new cgroup and PSI readings; when they show the same
    once formatted, the PSI table, the tree and the detail are not rebuilt nor repainted. A
    changed figure is drawn."""
    root = tmp_path / "tree"
    shutil.copytree(TREE, root)
    app = MemtopApp(root=root / "proc", sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await show_pressure(app, pilot, root / "proc")
        panels = {"psi": tab.query_one("#pressure-psi"), "tree": tab.query_one(CgroupTree),
                  "detail": tab.query_one("#pressure-detail")}
        refreshed = {name: 0 for name in panels}

        def counting(name, refresh):
            def wrapper(*args, **kw):
                refreshed[name] += 1
                return refresh(*args, **kw)
            return wrapper

        for name, widget in panels.items():
            widget.refresh = counting(name, widget.refresh)

        async def tick():
            app.tick()
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()

        await tick()
        assert refreshed == {"psi": 0, "tree": 0, "detail": 0}
        # WHEN the cgroup's usage grows by 5 MiB: the tree and the detail show it
        cg = root / "sys/fs/cgroup/memory/memtop-test"
        usage = int((cg / "memory.usage_in_bytes").read_text())
        (cg / "memory.usage_in_bytes").write_text(f"{usage + (5 << 20)}\n")
        await tick()
        assert refreshed["tree"] >= 1 and refreshed["psi"] == 0
        assert "36.9 MiB" in text_of(tab.query_one(CgroupTree))
        assert "36.9 MiB" in squeezed(text_of(tab.query_one("#pressure-detail")))


async def test_each_part_redraws_only_what_it_feeds(tmp_path):
    """Issue 20, item 2: the PSI and cgroups results arrive apart, and a result is handed over
    again (marked running) while its part reads anew. A result read again redraws nothing; a
    new PSI reading redraws the PSI table and charts, not the cgroup tree; a new cgroup figure
    redraws the detail's figures, not its findings and stall log (laid out once while the same)."""
    root = tmp_path / "tree"
    shutil.copytree(TREE, root)
    app = MemtopApp(root=root / "proc", sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await show_pressure(app, pilot, root / "proc")
        calls = {"psi": 0, "charts": 0, "tree": 0, "findings+log": 0}

        def counting(name, method):
            def wrapper(*args, **kw):
                calls[name] += 1
                return method(*args, **kw)
            return wrapper

        tab._show_psi = counting("psi", tab._show_psi)
        tab._show_charts = counting("charts", tab._show_charts)
        tab._show_tree = counting("tree", tab._show_tree)
        tab._findings_and_log = counting("findings+log", tab._findings_and_log)
        sample = app.sample
        psi, cgroups = sample.result("psi"), sample.result("cgroups")

        def show(**parts):
            tab.show_sample(replace(sample, parts=MappingProxyType({**sample.parts, **parts})))

        # WHEN both results come again marked running (their parts reading anew): nothing drawn
        show(psi=replace(psi, running=True), cgroups=replace(cgroups, running=True))
        assert calls == {"psi": 0, "charts": 0, "tree": 0, "findings+log": 0}
        # WHEN a new PSI reading comes alone: the PSI table and charts, not the tree
        show(psi=replace(psi, value=copy.copy(psi.value)))
        assert calls["psi"] == 1 and calls["charts"] == 1 and calls["tree"] == 0
        # WHEN a figure of the selected cgroup changes (not what its findings read): the detail
        # shows it, its findings and stall log are not laid out again
        before = squeezed(text_of(tab.query_one("#pressure-detail")))
        stat = root / "sys/fs/cgroup/memory/memtop-test/memory.stat"
        stat.write_text(re.sub(r"(?m)^total_shmem \d+", f"total_shmem {7 << 20}", stat.read_text()))
        app.tick()
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        detail = squeezed(text_of(tab.query_one("#pressure-detail")))
        assert "shmem 0 B" in before and "shmem 7.00 MiB" in detail
        assert calls["tree"] >= 1 and calls["findings+log"] == 0
        assert "Findings" in detail and "(no trigger armed)" in detail


async def test_a_root_without_pressure_says_why(tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(TREE, root)
    shutil.rmtree(root / "proc" / "pressure")
    app = MemtopApp(root=root / "proc", sample=False)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await show_pressure(app, pilot, root / "proc")
        psi = text_of(tab.query_one("#pressure-psi"))
        assert "No PSI to show" in psi and "CONFIG_PSI" in psi and "psi=0" in psi
        # The cgroups are still shown.
        assert "memtop-test" in text_of(tab.query_one(CgroupTree))


async def test_everything_is_reachable_at_80x24():
    app = MemtopApp(root=TREE / "proc", sample=False)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await show_pressure(app, pilot, TREE / "proc")
        body = tab.query_one("#pressure-body")
        # The panes stack and the whole tab scrolls; it has the focus, so the scroll keys reach it.
        assert tab.has_class("-narrow") and app.focused is body
        assert body.max_scroll_y > 0 and body.scroll_y == 0
        await pilot.press("end")
        await pilot.pause()
        assert body.scroll_y == body.max_scroll_y
        # THEN the last cgroup row is on screen, and the stall log above it.
        tree = tab.query_one(CgroupTree)
        assert tree.region.bottom <= body.region.bottom
        assert "(no trigger armed)" in squeezed(text_of(tab.query_one("#pressure-detail"), 76))
        await pilot.press("home")
        await pilot.pause()
        assert body.scroll_y == 0


def test_snapshot_of_the_tab(snap_compare):
    async def run_before(pilot):
        await show_pressure(pilot.app, pilot, TREE / "proc")

    assert snap_compare(MemtopApp(root=TREE / "proc", sample=False), terminal_size=(120, 40), run_before=run_before)


@pytest.mark.live
async def test_a_real_stall_raises_the_banner_on_another_tab(tmp_path):
    reason = v1_memory_available()
    if reason:
        pytest.skip(reason)
    cold = make_cold_file(tmp_path / "cold", 128 << 20)
    # The live /proc and the default trigger. The sampler thread stays off (one snapshot is
    # posted by hand), so that no tick lands while the app shuts down.
    app = MemtopApp(sample=False, interval=1.0, psi_trigger=DEFAULT_TRIGGER)
    with V1Cgroup(32 << 20) as cg:
        async with app.run_test(size=(120, 40)) as pilot:
            app.tick()
            banner = app.query_one(PressureBanner)
            deadline = time.monotonic() + 20
            while not app.trigger_armed and time.monotonic() < deadline:
                await pilot.pause(0.1)
            assert app.trigger_armed, app.trigger_text
            assert app.active_tab().TAB_ID == "processes"
            thrash = cg.start(THRASH_CODE, str(cold))
            try:
                deadline = time.monotonic() + 30
                while not banner.has_class("-alert") and time.monotonic() < deadline:
                    await pilot.pause(0.2)
            finally:
                thrash.close()
            assert banner.has_class("-alert"), "no stall alert within 30 s of thrashing a 32 MiB cgroup"
            assert "memory stall" in str(banner.content) and str(banner.content).endswith(" (tab 7)")
            assert app.stall_log and "memory stall" in stall_line(app.stall_log[-1].event)
            assert app.active_tab().TAB_ID == "processes"  # raised without visiting the tab
            # Clicking the banner opens the Pressure tab, whose log lists the stall (once the
            # banner is laid out: the layout pass after the alert comes at the next refresh).
            deadline = time.monotonic() + 10
            while banner.region.height == 0 and time.monotonic() < deadline:
                await pilot.pause(0.05)
            await pilot.click(PressureBanner)
            await pilot.pause()
            tab = app.active_tab()
            assert isinstance(tab, PressureTab)
            # AND the line at its top says where the log is (below the cgroup's detail: End)
            trigger = text_of(tab.query_one("#pressure-trigger"))
            assert "last stall" in trigger and "(stall log: End)" in trigger, trigger
            # AND "no finding" says it is of now, and points at the stalls logged
            from rich.console import Console

            from memtop.format import counted

            console = Console(width=300, record=True)
            console.print(tab._findings_and_log([]))
            none = console.export_text()
            logged = sum(e.count for e in tab.log_entries)
            assert "none now:" in none and f"; {counted(logged, 'stall')} in the stall log below" in none, none



async def test_an_event_name_that_is_rich_markup_is_shown_as_written():
    """The kernel names memory.events' keys (and memtop reads only those it knows), but a
    replayed file may carry any string as a key: the recording's decoder checks types, not names.
    The events column was a str cell of a Rich Table, read as markup: `[/x]` raised MarkupError
    and ended the app, `[i]` styled the rest. A cgroup read from the captured tree, its events
    renamed on the way through the recording's codec, is shown as written."""
    from dataclasses import replace

    from memtop.collect.recording import codec
    from memtop.model.pressure import CgroupMemory

    app = MemtopApp(root=TREE / "proc", sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await show_pressure(app, pilot, TREE / "proc")
        real = next(cg for cg in tab.cgroups.tree if cg.path == "/memtop-test")
        crafted = codec.encode(replace(real, events={"[/x]": 3, "[i]odd": 2}))
        read = codec.decode(crafted, CgroupMemory, where="crafted")  # what replay would hand the tab
        tree = tab.query_one(CgroupTree)
        tree.show((read,), {read.path: {"[/x]": 1, "[i]odd": 1}}, None, "replayed")
        await pilot.pause()
        assert "[/x]+2 [i]odd+1" in text_of(tree), text_of(tree)
        assert app.is_running
