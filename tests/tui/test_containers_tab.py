"""The Containers tab through the real app, on a real memory cgroup the test makes: its row holds
the kernel's figures, its detail says what the limit counts and what reclaim can free, a real OOM
kill in it is listed with its victim, and a hostile cgroup name reaches the screen escaped."""

from __future__ import annotations

import copy
import io
import time

import pytest
from rich.console import Console

from memtop.tui.app import MemtopApp
from memtop.tui.containers import _RECLAIM_WORDS, ContainersTab, ContainersTable
from tests.containers_support import GROW, HOLD_ANON, TestCgroup, hierarchy  # noqa: F401 - a fixture

MiB = 2**20


def text_of(widget, width: int = 240) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(widget.render())
    return console.export_text()


async def tick(app, pilot) -> ContainersTab:
    app.tick()
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()
    return app.query_one(ContainersTab)


async def show_containers(app, pilot) -> ContainersTab:
    """The Containers tab, after the two ticks its figures need (the first reads, the second
    has deltas)."""
    await pilot.press("8")
    await tick(app, pilot)
    return await tick(app, pilot)


def row_of(tab: ContainersTab, cgroup: str) -> list[str]:
    table = tab.query_one(ContainersTable)
    return [str(cell) for cell in table.get_row(cgroup)]


async def test_a_limited_cgroup_shows_the_kernels_figures(hierarchy):
    with TestCgroup(hierarchy, limit=64 * MiB, name=f"\x1b[2Jmt-{time.monotonic_ns()}") as cg:
        holder = cg.start(HOLD_ANON, "24")
        try:
            app = MemtopApp(sample=False)
            async with app.run_test(size=(120, 40)) as pilot:
                tab = await show_containers(app, pilot)
                entry = tab.view.containers.by_cgroup(cg.cgroup_path)
                assert entry is not None
                usage = cg.usage()
                # THEN its row: the kernel's usage (moving a little), the limit, the anon held
                assert abs(entry.current - usage) < 4 * MiB
                row = row_of(tab, cg.cgroup_path)
                assert row[2] == "64.0 MiB" and entry.split["anon"] >= 24 * MiB
                # AND the escape sequence of its name is shown escaped, never raw
                assert "\x1b" not in "".join(row) and row[0].startswith("cgroup \\e[2Jmt-")
                # WHEN it is highlighted THEN its detail says what the limit counts
                table = tab.query_one(ContainersTable)
                table.move_cursor(row=tab._keys.index(cg.cgroup_path))
                await pilot.pause()
                detail = text_of(tab.query_one("#containers-detail"))
                assert "of limit 64.0 MiB" in detail and "1 process:" in detail
                assert "reclaim can free before an OOM kill" in detail and "\x1b" not in detail
                assert f"cgroup {cg.cgroup_path}".replace("\x1b", "\\e") in detail
                # AND what is unknown is said in words, one line per reason (not field by field)
                unknown = {**entry.unknown, **entry.reclaim.unknown}
                unknown_lines = [line for line in detail.splitlines() if line.startswith("unknown: ")]
                # (cgroup v2, in the matrix's VM, may know every figure: then no such line)
                assert bool(unknown_lines) == bool(unknown) and "split." not in detail
                assert len(unknown_lines) <= len(set(unknown.values()))
                # (v1: memory.stat lacks a line for each of several figures: one line for them all)
                assert sum("memory.stat has no line for it" in line for line in unknown_lines) <= 1
                # each figure named once, the reclaim line's by its own words (the kernel split's
                # "slab reclaimable" and the reclaim's read the same twice)
                words = " ".join(detail.split())  # (lines break between words)
                labels = [k.rsplit(".", 1)[-1].replace("_", " ") for k in entry.unknown]
                labels += [_RECLAIM_WORDS.get(k, k.replace("_", " ")) + " (reclaim)" for k in entry.reclaim.unknown]
                assert all(label in words for label in labels) and len(set(labels)) == len(labels)
                assert words.count("slab reclaimable") <= 1  # (v1: unknown in both)
        finally:
            holder.close()


async def test_a_view_with_the_same_figures_updates_no_cell_and_repaints_nothing(hierarchy):
    """Issue 20, item 2: each update_cell drops the table's whole rendered picture, so only the
    cells that changed are updated; the title, detail and OOM panels are not redrawn either."""
    with TestCgroup(hierarchy, limit=64 * MiB, name=f"mt-same-{time.monotonic_ns()}") as cg:
        holder = cg.start(HOLD_ANON, "8")
        try:
            app = MemtopApp(sample=False)
            async with app.run_test(size=(120, 40)) as pilot:
                tab = await show_containers(app, pilot)
                table = tab.query_one(ContainersTable)
                assert cg.cgroup_path in tab._keys
                # (shown once more by hand first: the tick's title may carry a "read at" note)
                tab.show_view(copy.copy(tab.view))
                await pilot.pause()
                panels = [tab.query_one(f"#containers-{name}") for name in ("title", "detail", "oom")]
                refreshed = []
                for panel in panels:
                    panel.refresh = lambda *a, _refresh=panel.refresh, **kw: (refreshed.append(kw), _refresh(*a, **kw))[1]
                updates = table._update_count
                # WHEN the same figures are shown again (a new view object, the same values)
                tab.show_view(copy.copy(tab.view))
                assert table._update_count == updates and refreshed == []
        finally:
            holder.close()


async def test_an_oom_kill_in_a_cgroup_is_listed_with_its_victim(hierarchy):
    with TestCgroup(hierarchy, limit=48 * MiB) as cg:
        grower = cg.start(GROW, "0.02")
        try:
            app = MemtopApp(sample=False)
            async with app.run_test(size=(120, 40)) as pilot:
                await pilot.press("8")
                tab = await tick(app, pilot)
                grower.proc.stdin.write(b"go\n")
                grower.proc.stdin.flush()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    time.sleep(0.3)
                    tab = await tick(app, pilot)
                    oom = tab.view.oom
                    if any(e.cgroup == cg.cgroup_path for e in oom.events):
                        break
                [event] = [e for e in tab.view.oom.events if e.cgroup == cg.cgroup_path]
                assert event.kills == cg.oom_kills() == 1
                assert [v.pid for v in event.victims] == [grower.pid]
                shown = text_of(tab.query_one("#containers-oom"))
                assert f"1 kill in {cg.cgroup_path}" in shown and f"{grower.pid} " in shown
        finally:
            grower.close()


async def test_processes_tab_names_each_process_container_and_filters_by_it(hierarchy):
    # GIVEN two processes in a cgroup the test made (a hostile name), and memtop at 200 columns
    name = f"mt-box\x1b]0;x\x07-{time.monotonic_ns() % 10**6}"
    with TestCgroup(hierarchy, limit=64 * MiB, name=name) as cg:
        first, second = cg.start(HOLD_ANON, "1"), cg.start(HOLD_ANON, "1")
        app = MemtopApp(sample=False)
        async with app.run_test(size=(200, 40)) as pilot:
            from memtop.tui.processes import ProcessesTab, ProcessTable

            app.tick()
            await pilot.pause()
            await app.workers.wait_for_complete()
            app.tick()
            await pilot.pause()
            table = app.query_one(ProcessTable)
            # THEN each holder's row says its container: the cgroup's name, escaped
            shown = "mt-box\\e]0;x\\a-"
            assert table.containers[first.pid].cgroup == cg.cgroup_path
            for pid in (first.pid, second.pid):
                index = next(i for i, v in enumerate(table.rows) if v.pid == pid)
                texts = table._line(index, 200)[0]
                assert any(t.startswith(shown[:14]) for t in texts), texts
                assert not any("\x1b" in t or "\x07" in t for t in texts)
            # WHEN the filter is the container's name
            await pilot.press("slash", *"mt-box", "enter")
            await pilot.pause()
            # THEN exactly the cgroup's processes are listed
            assert {v.pid for v in table.rows} == {first.pid, second.pid}
            # AND the selected row's detail names the container
            table.select_pid(first.pid)
            await pilot.pause()
            detail = text_of(app.query_one(ProcessesTab).query_one("#process-detail-line"))
            assert f"in cgroup {shown[:14]}" in detail and "\x1b" not in detail



async def test_a_cgroup_name_with_rich_markup_is_shown_as_written(hierarchy):
    """A cgroup's name is the name of a directory its owner chose, and a DataTable's str cell is
    Rich markup: `[i]` hid itself and styled the rest of the name. Cells are Text: the name
    is shown as written."""
    name = f"[i]mt{time.monotonic_ns() % 10**4}"  # short: the column shows 22 characters
    with TestCgroup(hierarchy, limit=64 * MiB, name=name) as cg:
        holder = cg.start(HOLD_ANON, "1")
        try:
            app = MemtopApp(sample=False)
            async with app.run_test(size=(120, 40)) as pilot:
                tab = await show_containers(app, pilot)
                await pilot.pause()
                assert tab.view.containers.by_cgroup(cg.cgroup_path) is not None
                table = tab.query_one(ContainersTable)
                shown = "".join(table.render_line(y).text for y in range(table.size.height))
                assert f"cgroup {name} " in shown, shown
        finally:
            holder.close()


async def test_at_80_columns_the_table_fits_and_the_detail_keeps_the_rest(hierarchy):
    """At 80x24 the table ended at KERNE (PSS, reclaim, time to limit and OOM off screen, Right
    scrolling one character at a time; a helper's tour): narrower than 120 columns it keeps
    container, used, limit, anon, PSS, time to limit and OOM; the detail still has the split."""
    with TestCgroup(hierarchy, limit=64 * MiB) as cg:
        holder = cg.start(HOLD_ANON, "8")
        try:
            app = MemtopApp(sample=False)
            async with app.run_test(size=(80, 24)) as pilot:
                tab = await show_containers(app, pilot)
                table = tab.query_one(ContainersTable)
                assert [str(c.label) for c in table.columns.values()] == [
                    "CONTAINER", "USED", "LIMIT", "ANON", "PSS", "TO LIMIT", "OOM"]
                assert table.virtual_size.width <= table.size.width <= 80
                assert row_of(tab, cg.cgroup_path)[2] == "64.0 MiB"  # LIMIT, in its column
                # AND the detail's end, cut by the footer, is reached with ] (the table keeping
                # the focus and its keys), and [ goes back
                table.move_cursor(row=tab._keys.index(cg.cgroup_path))
                await pilot.pause()
                body = tab.query_one("#containers-body")
                assert body.max_scroll_y > 0 and body.scroll_y == 0
                for _ in range(body.max_scroll_y // 4 + 1):
                    await pilot.press("right_square_bracket")
                await pilot.pause()
                assert body.scroll_y == body.max_scroll_y and app.focused is table
                detail = tab.query_one("#containers-detail")
                assert detail.region.bottom <= body.region.bottom  # its last line on screen
                # AND its lines break between figures, never inside one ("dirty 96.0" / "KiB")
                assert_laid_out(detail, 80)
                await pilot.press("left_square_bracket")
                await pilot.pause()
                assert body.scroll_y == body.max_scroll_y - 4
                await pilot.resize_terminal(130, 40)
                await pilot.pause()
                assert len(table.columns) == 11 and row_of(tab, cg.cgroup_path)[2] == "64.0 MiB"
                # AND the panels are laid out again to the new width
                assert_laid_out(detail, 130)
                assert max(map(len, detail.content.plain.split("\n"))) > 80
        finally:
            holder.close()


def assert_laid_out(panel, width: int) -> None:
    lines = panel.content.plain.split("\n")
    assert len(lines) > 4
    for line in lines:
        assert len(line) <= width and line.split(" ")[0].rstrip(",;:.)") not in ("B", "KiB", "MiB", "GiB", "%"), line


async def test_a_recorded_oom_kill_is_replayed_with_its_victim(hierarchy, tmp_path):
    """`memtop record` keeps the Containers tab (every TAKEN_EVERY ticks, with its OOM watch):
    a kill between two of its readings is in the replay, with the victim, at the tick it was seen."""
    from memtop.collect.record import TAKEN_EVERY
    from memtop.output.record import RecordReader
    from memtop.tui.replay import ReplayApp, ReplayBar
    from tests.record_support import record_in_process
    from tests.tui.test_record_replay import settle

    path = tmp_path / "oom.db"
    with TestCgroup(hierarchy, limit=48 * MiB) as cg:
        grower = cg.start(GROW, "0.02")
        try:
            def before(i):
                if i == 1:  # between the first reading of the containers and the next
                    grower.proc.stdin.write(b"go\n")
                    grower.proc.stdin.flush()
                    deadline = time.monotonic() + 60
                    while cg.oom_kills() < 1 and time.monotonic() < deadline:
                        time.sleep(0.1)
                    assert cg.oom_kills() == 1

            # ticks back to back: the containers read at the first and at the TAKEN_EVERY-th, as 30 s apart
            captures = record_in_process(path, TAKEN_EVERY + 1, before_tick=before, part_duty=0)
        finally:
            grower.close()
    first, last = captures[0].containers, captures[-1].containers
    assert first is not None and last is not None
    assert all(c.containers is None for c in captures[1:-1])  # read every TAKEN_EVERY ticks only
    assert not [e for e in first.oom.events if e.cgroup == cg.cgroup_path]
    [event] = [e for e in last.oom.events if e.cgroup == cg.cgroup_path]
    assert event.kills == 1 and [v.pid for v in event.victims] == [grower.pid]

    reader = RecordReader(path)
    app = ReplayApp(reader)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            await pilot.press("8")
            await settle(app, pilot)
            tab = app.query_one(ContainersTab)
            # the first tick: the cgroup with its limit, no kill yet
            assert tab.view == first
            assert "48.0 MiB" in row_of(tab, cg.cgroup_path)
            since = time.strftime("%H:%M:%S", time.localtime(first.oom.since_wall))
            # (the watch was younger than 10 minutes: a kill just before it would not be seen)
            assert f"no OOM kill since {since}, when memtop started watching" in text_of(tab.query_one("#containers-oom"))
            # the last tick: the kill and its victim, as recorded
            await pilot.press("greater_than_sign")
            await settle(app, pilot)
            assert tab.view == last
            shown = text_of(tab.query_one("#containers-oom"))
            assert f"1 kill in {cg.cgroup_path}" in shown and f"{grower.pid} " in shown
            # a tick between two readings shows the earlier one, with its age
            await pilot.press("comma")
            await settle(app, pilot)
            assert tab.view == first
            assert "containers read" in app.query_one(ReplayBar).content.plain
    finally:
        reader.close()


async def test_a_kill_before_the_tab_is_opened_is_listed_when_it_is(hierarchy):
    """While another tab is shown the OOM watch reads once for a baseline, then not until
    /proc/vmstat's oom_kill moves: a kill while the user looks at Processes is read at the next
    tick (forced past the Collector's spacing, which a reading of ~0.1 s makes ~10 s) and listed,
    with its victim, when Containers is opened."""
    with TestCgroup(hierarchy, limit=48 * MiB) as cg:
        grower = cg.start(GROW, "0.02")
        try:
            app = MemtopApp(sample=False)  # parts run in the tick's thread: asked after a tick, read at the next
            async with app.run_test(size=(120, 40)) as pilot:
                readings = []

                async def ticks(n):
                    for _ in range(n):
                        sample = app.tick()
                        result = sample.result("containers")
                        if result is not None and result.tick == sample.processes.tick:
                            readings.append(result.tick)
                    await pilot.pause()

                await ticks(1)
                assert app.active_tab().TAB_ID == "processes" and readings == []  # asked for
                await ticks(1)
                assert len(readings) == 1  # the watch's baseline
                await ticks(5)
                assert len(readings) == 1  # nothing moved: nothing read
                grower.proc.stdin.write(b"go\n")
                grower.proc.stdin.flush()
                deadline = time.monotonic() + 60
                while cg.oom_kills() < 1 and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert cg.oom_kills() == 1
                killed_at = time.time()
                await ticks(1)  # the sentinel sees oom_kill move
                await ticks(1)
                assert len(readings) == 2  # read at once, not ~10 s later
                assert not app.query(ContainersTab)  # never shown: built when first shown
                await pilot.press("8")
                for _ in range(50):  # the tab is built when first shown
                    await pilot.pause(0.05)
                    tabs = app.query(ContainersTab)
                    if tabs and tabs.first().view is not None:
                        break
                tab = app.query_one(ContainersTab)
                [event] = [e for e in tab.view.oom.events if e.cgroup == cg.cgroup_path]
                assert event.kills == 1 and [v.pid for v in event.victims] == [grower.pid]
                shown = text_of(tab.query_one("#containers-oom"))
                assert f"1 kill in {cg.cgroup_path}" in shown and f"{grower.pid} " in shown
                [victim] = event.victims
                if victim.kernel is not None:  # named by the kernel log: its time is the kill's, not the reading's
                    killed = event.wall_time - (event.time - victim.kernel.usec / 1e6)
                    assert killed_at - 2 <= killed <= event.wall_time
                    assert f"killed ~{time.strftime('%H:%M:%S', time.localtime(killed))}" in shown
        finally:
            grower.close()


async def test_a_recorded_cgroup_name_with_rich_markup_is_replayed_as_written(hierarchy, tmp_path):
    """A recording holds the names users chose for their cgroups: replay draws them as text too."""
    from memtop.output.record import RecordReader
    from memtop.tui.replay import ReplayApp
    from tests.record_support import record_in_process
    from tests.tui.test_record_replay import settle

    name = f"[b]rc{time.monotonic_ns() % 10**4}\x1b[31m"
    path = tmp_path / "markup.db"
    with TestCgroup(hierarchy, limit=64 * MiB, name=name) as cg:
        holder = cg.start(HOLD_ANON, "1")
        try:
            [capture] = record_in_process(path, 1)
        finally:
            holder.close()
    assert capture.containers.containers.by_cgroup(cg.cgroup_path) is not None
    reader = RecordReader(path)
    app = ReplayApp(reader)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            await pilot.press("8")
            await settle(app, pilot)
            table = app.query_one(ContainersTable)
            shown = "".join(table.render_line(y).text for y in range(table.size.height))
            assert f"cgroup {name[:-5]}\\e[31m" in shown and "\x1b" not in shown, shown
    finally:
        reader.close()
