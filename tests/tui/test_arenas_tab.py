"""The Arenas tab, driven through the real app: fixed data (a captured analysis of the
16-thread target) for behaviour and looks, and one live walk of the real target."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from memtop.format import exact_bytes
from memtop.model.process import ProcessIdentity
from memtop.tui.app import MemtopApp
from memtop.tui.arenas import ArenasTab, ConfirmMallocInfo
from tests.arenas_support import load_analysis, load_malloc_info_result
from tests.support import IS_ROOT, compile_c
from tests.tui.fixed import show_tab

IDENTITY = ProcessIdentity(4242, 777)


def _text(app, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def _activate(pilot) -> ArenasTab:
    """Switch to the Arenas tab and wait until the app reports it active."""
    return await show_tab(pilot, "arenas")


async def _show_fixed(pilot, *, malloc_info: bool = False) -> ArenasTab:
    app = pilot.app
    tab = await _activate(pilot)
    # selected (as the Processes tab would do), but without a walk: the data is fixed
    app.target = tab.identity = IDENTITY
    tab.show_analysis(load_analysis())
    if malloc_info:
        tab.show_malloc_info(load_malloc_info_result(IDENTITY))
    # The footer offers r and m once it has recomposed with the new bindings, a few message
    # rounds later (one pause was not always enough: a CI snapshot without them).
    app.refresh_bindings()
    for _ in range(100):
        await pilot.pause()
        if "r" in footer_keys(app):
            break
    return tab


async def test_table_histogram_diagnosis_and_malloc_info_from_captured_data():
    app = MemtopApp(sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        # GIVEN the walk of the 16-thread target
        tab = await _show_fixed(pilot)
        table = app.query_one("#arenas-table", DataTable)
        # THEN 16 arenas and a total row, main first
        assert table.row_count == 17
        assert str(table.get_row_at(0)[1]) == "main"
        assert str(table.get_row_at(16)[1]) == "all"
        summary = _text(app, "#arenas-summary")
        assert "17 threads, 16 arenas, cap 16" in summary and "MALLOC_ARENA_MAX unset" in summary
        notes = _text(app, "#arenas-notes")
        assert "Arena explosion: 16 arenas" in notes and "MALLOC_ARENA_MAX=2 would save about 39.4 MiB" in notes
        assert "Set: MALLOC_ARENA_MAX=2 ./t" in notes
        assert "mmap_threshold 128 KiB (not moved)" in notes
        assert "64 MiB-aligned heaps: 15" in notes
        assert "arena #0 main" in _text(app, "#arenas-histogram")
        # WHEN the cursor moves down two rows THEN the histogram follows the arena
        table.focus()
        await pilot.press("down", "down")
        await pilot.pause()
        assert tab.selected_arena == 2
        histogram = _text(app, "#arenas-histogram")
        assert f"arena #2 {tab.analysis.heap.arenas[2].address:#x}" in histogram
        assert "malloc_info" not in histogram

        # WHEN malloc_info arrives (of another run of the same deterministic target, so equal but for
        # the flag bits; arena 3 altered here by two pages) THEN three columns join the table and only
        # the differing figure is marked
        result = load_malloc_info_result(IDENTITY)
        altered = list(result.info.arenas)
        altered[3] = replace(altered[3], system_current=altered[3].system_current + 8192)
        tab.show_malloc_info(replace(result, info=replace(result.info, arenas=tuple(altered))))
        await pilot.pause()
        columns = [str(c.label) for c in table.columns.values()]
        assert columns[-3:] == ["MI SYSTEM", "MI FREE+TOP", "MI FAST"]
        # at 120 columns ARENA and HEAPS give way, so that the comparison is whole on screen
        assert "ARENA" not in columns and "HEAPS" not in columns
        assert table.virtual_size.width <= table.size.width
        assert str(table.get_row_at(16)[0]) == "all"  # the totals row still says so
        mi_system, mi_rest = columns.index("MI SYSTEM"), columns.index("MI FREE+TOP")
        marked = [str(table.get_row_at(row)[mi_system]).startswith("≠") for row in range(16)]
        assert marked == [row == 3 for row in range(16)]
        assert not any(str(table.get_row_at(row)[mi_rest]).startswith("≠") for row in range(16))
        assert "malloc_info" in _text(app, "#arenas-histogram")
        # a wide terminal shows them again
        await pilot.resize_terminal(170, 40)
        await pilot.pause()
        columns = [str(c.label) for c in table.columns.values()]
        assert columns[:3] == ["#", "ARENA", "HEAPS"] and columns[-3:] == ["MI SYSTEM", "MI FREE+TOP", "MI FAST"]
        assert str(table.get_row_at(0)[1]) == "main"


def footer_keys(app) -> set[str]:
    return {k.key_display for k in app.screen.query("FooterKey")}


async def test_keys_without_a_process_and_in_read_only_mode():
    app = MemtopApp(sample=False, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await _activate(pilot)
        assert "No process selected" in _text(app, "#arenas-summary")
        app.query_one("#arenas-table", DataTable).focus()
        # r and m act on a selected process: without one they are not offered and do nothing
        assert not {"r", "m"} & footer_keys(app)
        await pilot.press("r", "m")
        await pilot.pause()
        assert not tab.walking and len(app.screen_stack) == 1
        app.target = tab.identity = IDENTITY
        tab.show_analysis(load_analysis())
        app.refresh_bindings()
        await pilot.pause()
        # read-only: r walks (it only reads), m (a call into the process through gdb) is not offered
        assert "r" in footer_keys(app) and "m" not in footer_keys(app)
        await pilot.press("m")
        await pilot.pause()
        assert len(app.screen_stack) == 1  # no confirmation was offered


def test_arenas_tab_snapshot(snap_compare):
    async def run_before(pilot):
        await _show_fixed(pilot, malloc_info=True)

    assert snap_compare(MemtopApp(sample=False), terminal_size=(120, 40), run_before=run_before)


def test_arenas_tab_snapshot_80x24(snap_compare):
    async def run_before(pilot):
        await _show_fixed(pilot)

    assert snap_compare(MemtopApp(sample=False), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.live
@pytest.mark.skipif(not IS_ROOT, reason="the heap walk reads /proc/PID/mem: needs root (or CAP_SYS_PTRACE)")
async def test_live_walk_of_the_real_target(children):
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing")
    source = (Path(__file__).resolve().parent.parent / "live" / "arenas_target.c").read_text()
    child = children.start([compile_c(source, name="arenas16"), "4"])
    from memtop.procfs.process import read_stat

    identity = ProcessIdentity(child.pid, read_stat(child.pid).start_ticks)
    app = MemtopApp(sample=False, part_workers=2)
    async with app.run_test(size=(120, 40)) as pilot:
        app.tick()
        # GIVEN the Arenas tab is visible WHEN a process is selected THEN the Collector walks it
        tab = await _activate(pilot)
        app.select(identity)
        for _ in range(300):  # the walk runs in a worker; its message is handled on the app's loop
            if tab.analysis is not None or tab.error is not None:
                break
            await pilot.pause(0.1)
        assert tab.error is None and tab.analysis.heap.valid, tab.analysis.heap_reason
        table = app.query_one("#arenas-table", DataTable)
        assert table.row_count == len(tab.analysis.heap.arenas) + 1 == 6  # main + 4 threads, and the total
        assert f"PID {child.pid} " in _text(app, "#arenas-summary")
        # WHEN m is pressed and confirmed THEN malloc_info comes through gdb and joins the table
        app.query_one("#arenas-table", DataTable).focus()
        await pilot.press("m")
        await pilot.pause(0.2)
        assert isinstance(app.screen, ConfirmMallocInfo)
        await pilot.press("y")
        for _ in range(300):
            await pilot.pause(0.1)
            if tab.malloc_info is not None and not tab.walking:
                break
        assert tab.malloc_info is not None and tab.malloc_info.info is not None
        assert len(tab.malloc_info.info.arenas) == 5
        columns = [str(c.label) for c in table.columns.values()]
        assert columns[-3:] == ["MI SYSTEM", "MI FREE+TOP", "MI FAST"]
        # system bytes agree (the walk was made again right after), so no arena is marked there
        assert not any(str(table.get_row_at(row)[columns.index("MI SYSTEM")]).startswith("≠") for row in range(5))
        assert child.ask("ping") == "pong"  # nothing was written to the target's stdout


@pytest.mark.live
@pytest.mark.skipif(not IS_ROOT, reason="the heap walk reads /proc/PID/mem: needs root (or CAP_SYS_PTRACE)")
async def test_a_moved_mmap_threshold_is_explained_once_in_exact_sizes(children):
    """The tour saw the moved-threshold paragraph twice on the tab (as a finding, then again
    under tuning), its size as 1588 KiB in one and 1.55 MiB in the other."""
    from memtop.heap.arena_advice import analyze_arenas
    from tests.live.test_arenas_tuning import FREE_A_BIG_CHUNK, _env
    from tests.support import python_child

    child = python_child(FREE_A_BIG_CHUNK, env=_env())
    children.append(child)
    analysis = analyze_arenas(child.pid, census=False)
    assert analysis.tuning is not None and analysis.tuning.threshold_moved, analysis.heap_reason
    app = MemtopApp(sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await _activate(pilot)
        app.target = tab.identity = ProcessIdentity(analysis.pid, analysis.start_ticks)
        tab.show_analysis(analysis)
        await pilot.pause()
        notes = _text(app, "#arenas-notes")
        assert notes.count("the dynamic mmap threshold has moved") == 1, notes
        threshold = analysis.tuning.mmap_threshold
        assert f"mmap_threshold {exact_bytes(threshold)} (moved)" in notes and f"to {exact_bytes(threshold)}:" in notes
