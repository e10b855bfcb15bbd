"""Pilot tests of the app shell and the Processes tab, on fixed data."""

import shutil

import pytest

from memtop.tui.app import TABS, tab_classes
from memtop.tui.tab import TabView
from memtop.tui.widgets import KeysFooter
from memtop.text import cut
from memtop.tui.processes import ProcessTable
from tests.tui.fixed import FIX, feed, fixed_app, show_tab


async def test_number_keys_switch_tabs():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        for i, tab in enumerate(TABS):
            await pilot.press(str(i + 1))
            assert app.query_one("TabbedContent").active == f"tab-{tab.id}"
        await pilot.press("1")
        assert app.active_tab().TAB_ID == "processes"


def test_the_tab_list_names_each_tab_as_its_class_does():
    assert [(spec.id, spec.title) for spec in TABS] == [(cls.TAB_ID, cls.TAB_TITLE) for cls in tab_classes()]


async def test_only_the_processes_tab_is_built_at_start_and_the_others_when_first_shown():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        assert [view.TAB_ID for view in app.query(TabView)] == ["processes"]
        await pilot.press("5")
        await pilot.pause()
        kernel = app.active_tab()
        assert kernel is not None and kernel.TAB_ID == "kernel" and kernel.is_mounted
        await pilot.press("1", "5")
        await pilot.pause()
        assert app.active_tab() is kernel  # built once, kept
        assert sorted(view.TAB_ID for view in app.query(TabView)) == ["kernel", "processes"]


async def test_switching_tabs_leaves_no_footer_keys_alive():
    """Textual's footer binds each key it composes to its own ``compact`` and forgot none of
    them: every tab switch kept the keys it replaced (1,020 after 80 switches, +64 MiB an hour
    in bench/soak.py). KeysFooter forgets the removed ones."""
    import gc
    import weakref

    from textual.widgets._footer import FooterKey

    app = fixed_app()
    composed = weakref.WeakSet()  # every key the footer showed, alive or not
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        for _ in range(2):
            for i in range(len(TABS)):
                await pilot.press(str(i + 1))
                await pilot.pause()
                composed.update(app.query(FooterKey))
        shown = len(app.query(FooterKey))
        gc.collect()
        # 16 switches composed about a hundred keys: those shown now are alive, the rest gone
        assert shown >= 5 and len(composed) <= shown, (len(composed), shown)


async def test_the_styles_of_removed_widgets_and_the_render_caches_are_let_go_once_a_minute():
    """Textual's StylesCache.get_inner_outer (an lru_cache keyed on the StylesCache) keeps the
    caches of removed widgets, and Textual's and Rich's other bounded caches hold what was ever
    drawn; the once-a-minute trim clears them (memtop/tui/ownheap.py), and the screen drawn
    afterwards is the same."""
    import gc

    from rich.cells import cached_cell_len
    from textual._styles_cache import StylesCache
    from textual.geometry import Region
    from textual.widget import Widget

    from memtop.tui import ownheap

    def removed_widgets_caches() -> int:
        gc.collect()
        live = {id(o._styles_cache) for o in gc.get_objects() if isinstance(o, Widget)}
        return sum(isinstance(o, StylesCache) and id(o) not in live for o in gc.get_objects())

    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        for key in "12341234":  # each switch replaces the footer's keys
            await pilot.press(key)
            await pilot.pause()
        assert removed_widgets_caches() > 20
        before = app.export_screenshot()
        filled = [f for f in (cached_cell_len, Region.intersection, StylesCache.get_inner_outer)
                  if f.cache_info().currsize > 0]
        assert len(filled) == 3
        dropped = ownheap.clear_render_caches()
        assert dropped >= sum(1 for _ in filled) and all(f.cache_info().currsize == 0 for f in filled)
        assert removed_widgets_caches() == 0
        app.screen.refresh(repaint=True, layout=True)
        await pilot.pause()
        assert app.export_screenshot() == before


async def test_the_footer_is_rebuilt_only_when_the_keys_it_shows_change():
    from textual.widgets._footer import FooterKey

    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        footer = app.query_one(KeysFooter)
        keys = list(footer.query(FooterKey))
        assert "t" in [k.key for k in keys]  # Processes: trim is offered
        for _ in range(3):  # as a tick, a focus move or a tab's redraw does: the keys shown stay the same
            app.refresh_bindings()
            await pilot.pause()
        assert list(footer.query(FooterKey)) == keys and all(k.is_attached for k in keys)
        await pilot.press("4")  # Page cache: e (evict) is offered, t is not
        await pilot.pause()
        shown = [k.key for k in footer.query(FooterKey)]
        assert "e" in shown and "t" not in shown


async def test_rows_sorted_by_rss_and_resorted_by_pid():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        table = app.query_one(ProcessTable)
        rss = [v.sample.rss_bytes for v in table.rows if v.sample.rss_bytes is not None]
        assert rss == sorted(rss, reverse=True) and len(rss) >= 2
        # s opens the sort chooser; pick PID
        await pilot.press("s")
        await pilot.pause()
        options = app.screen.query_one("#sort-options")
        options.highlighted = [o.id for o in options._options].index("pid")
        await pilot.press("enter")
        await pilot.pause()
        assert table.sort_key == "pid"
        assert [v.pid for v in table.rows] == sorted(v.pid for v in table.rows)
        # unknown values sort last whatever the direction
        table.set_sort("pss", True)
        pss = [v.sample.rollup.pss if v.sample.rollup else None for v in table.rows]
        known = [p for p in pss if p is not None]
        assert pss[: len(known)] == sorted(known, reverse=True) and all(p is None for p in pss[len(known):])


async def test_filter_by_name_user_and_pid():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        table = app.query_one(ProcessTable)
        table.focus()
        await pilot.press("slash")
        await pilot.press(*"a) b")
        await pilot.pause()
        assert {v.pid for v in table.rows} == {7335, 7337}
        await pilot.press("enter")
        assert table.has_focus
        await pilot.press("slash", "ctrl+u", *"1077")  # ctrl+u clears the input line
        await pilot.pause()
        assert [v.pid for v in table.rows] == [1077]
        await pilot.press("escape")
        await pilot.pause()
        assert len(table.rows) == 4


async def test_a_filter_that_hides_the_selected_process_gives_it_back_when_cleared():
    """Select a process, filter with no match, Esc: the cursor landed on the top row, and the
    tabs that follow the selection (Layers, Page cache's (a)) silently switched to that process
    (a helper's tour). The process a filter hid is selected again when it is shown again,
    unless the user chose another meanwhile."""
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        table = app.query_one(ProcessTable)
        table.focus()
        home = table.rows[-1].pid  # not the top row: where a lost cursor lands
        assert table.select_pid(home)
        await pilot.pause()
        await pilot.press("slash", *"[bold red]zz", "enter")
        await pilot.pause()
        assert table.rows == [] and app.target is None
        totals = str(app.query_one("#process-totals").render())
        assert "RSS 0 B   PSS 0 B   USS 0 B   swap 0 B" in totals, totals  # not "?": nothing is unknown
        await pilot.press("slash", "escape")
        await pilot.pause()
        assert table.cursor_pid == home and app.target.pid == home
        # AND a process chosen under a filter stays chosen when it is cleared
        await pilot.press("slash", *"a) b", "enter")
        await pilot.pause()
        assert {v.pid for v in table.rows} == {7335, 7337}
        await pilot.press("down")
        await pilot.pause()
        chosen = table.cursor_pid
        await pilot.press("slash", "escape")
        await pilot.pause()
        assert table.cursor_pid == chosen and app.target.pid == chosen
        # AND a process found by a filter and taken with Enter stays selected when it is cleared
        # (the fresh-eyes report: Esc went back to the process selected before filtering)
        assert table.select_pid(1077)
        await pilot.press("slash", *"7337", "enter")
        await pilot.pause()
        assert [v.pid for v in table.rows] == [7337] and app.target.pid == 7337
        await pilot.press("escape")
        await pilot.pause()
        assert table.cursor_pid == 7337 and app.target.pid == 7337 and len(table.rows) > 1


async def test_selection_follows_the_process_across_refreshes(tmp_path):
    root = tmp_path / "proc"
    shutil.copytree(FIX, root)
    app = fixed_app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        table = app.query_one(ProcessTable)
        table.focus()
        assert table.select_pid(1077)
        # WHEN the process above it in the list exits and the order changes
        shutil.rmtree(root / "7335")
        await feed(app, pilot, ticks=2)
        # THEN the cursor is still on PID 1077 and the app's target is that process
        assert table.cursor_pid == 1077 and table.selected_view.pid == 1077
        assert app.target.pid == 1077
        # WHEN the selected process itself exits, THEN the cursor stays at the same place
        index = table._cursor_index
        shutil.rmtree(root / "1077")
        await feed(app, pilot)
        assert table.cursor_pid is not None and table._cursor_index == min(index, len(table.rows) - 1)
        await pilot.press("down")
        assert table._cursor_index == min(index + 1, len(table.rows) - 1)


async def test_enter_opens_layers_with_the_selected_process():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        table = app.query_one(ProcessTable)
        table.focus()
        table.select_pid(7335)
        await pilot.press("enter")
        assert app.active_tab().TAB_ID == "layers"
        assert app.target.pid == 7335


async def test_pause_and_interval_keys():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        def footer_p() -> list[str]:
            return [k.description for k in app.screen.query("FooterKey") if k.key == "p"]

        assert footer_p() == ["Pause"]
        await pilot.press("p")
        assert app.paused
        await pilot.pause()
        assert footer_p() == ["Resume"]  # the footer says what p does now
        await pilot.press("plus")
        assert app.interval == 3.0
        await pilot.press("minus", "minus")
        assert app.interval == 1.0
        await pilot.press("p")
        assert not app.paused
        await pilot.pause()
        assert footer_p() == ["Pause"]


async def test_help_names_the_source_of_every_column():
    from memtop.tui.columns import COLUMNS

    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "HelpScreen"
        figures = dict(app.screen.figure_sources)
        for col in COLUMNS:
            assert col.title in figures and figures[col.title]
        # its first line is what the tab answers, the text `memtop help processes` prints too
        shown = " ".join(str(w.render()) for w in app.screen.query("Static"))
        from memtop.tui.processes import ProcessesTab

        assert app.screen.about == ProcessesTab.TAB_ABOUT
        assert "Who uses memory, live: RSS, PSS" in shown
        await pilot.press("escape")
        assert app.screen.__class__.__name__ != "HelpScreen"


async def test_a_small_terminal_says_so():
    app = fixed_app()
    async with app.run_test(size=(70, 20)) as pilot:
        await feed(app, pilot)
        assert app.screen.has_class("-too-small")
        assert "needs at least 80x24" in str(app.query_one("#too-small").render())


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_processes_tab_looks(snap_compare, size):
    async def run_before(pilot):
        await feed(pilot.app, pilot, ticks=3)
        pilot.app.query_one(ProcessTable).select_pid(7335)
        await pilot.pause()

    assert snap_compare(fixed_app(), terminal_size=size, run_before=run_before)


async def test_too_small_follows_every_resize():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        assert not app.screen.has_class("-too-small")
        await pilot.resize_terminal(60, 18)
        await pilot.pause()
        assert app.screen.has_class("-too-small")
        assert "60x18" in str(app.query_one("#too-small").render())
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not app.screen.has_class("-too-small")


async def test_enter_opens_the_row_under_the_cursor_even_after_another_tab_chose():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        table = app.query_one(ProcessTable)
        table.focus()
        table.select_pid(1077)
        # another tab (tmpfs' holders, for example) opens a different process in Layers
        app.select_process(next(v for v in table.rows if v.pid == 7335))
        await pilot.press("1")
        table.focus()
        await pilot.press("enter")
        assert app.active_tab().TAB_ID == "layers" and app.target.pid == 1077


async def test_a_sort_by_a_hidden_column_is_said():
    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(app, pilot)
        table = app.query_one(ProcessTable)
        table.set_sort("majflt", True)
        app.query_one("ProcessesTab")._show_totals()
        await pilot.pause()
        assert "sorted by MAJF/s" in str(app.query_one("#process-totals").render())


def test_a_long_command_keeps_its_program_name_when_cut():
    from memtop.tui.processes import short_command

    assert short_command("/work/main/.venv/bin/python -m pytest -q") == "python -m pytest -q"
    assert short_command("[kthreadd]") == "[kthreadd]"
    assert short_command("bash /dev/fd/3") == "bash /dev/fd/3"


async def test_a_tick_repaints_only_the_rows_that_changed(tmp_path):
    root = tmp_path / "proc"
    shutil.copytree(FIX, root)
    app = fixed_app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot, ticks=12)  # the trend column is 10 readings wide: full now
        table = app.query_one(ProcessTable)
        painted = []
        render_line = table.render_line

        def counting(y):
            painted.append(int(table.scroll_offset.y) + y)
            return render_line(y)

        table.render_line = counting
        # WHEN nothing changed, THEN a tick repaints no row
        await feed(app, pilot)
        assert painted == []
        # WHEN PID 1077's RSS grows (status, and the stat line's rss field: the sampler rereads
        # status only when the stat line changed)
        status = root / "1077" / "status"
        status.write_text(status.read_text().replace("VmRSS:\t    4304 kB", "VmRSS:\t   99999 kB"))
        stat = root / "1077" / "stat"
        head, _, tail = stat.read_bytes().rpartition(b")")
        fields = tail.split()
        fields[24 - 3] = b"24999"
        stat.write_bytes(head + b") " + b" ".join(fields) + b"\n")
        await feed(app, pilot)
        # THEN its row shows the new figure, and only the rows whose text changed were repainted
        row = next(i for i, v in enumerate(table.rows) if v.pid == 1077)
        assert row in painted and len(set(painted)) < len(table.rows)
        assert "97.7 MiB" in table.render_line(row - int(table.scroll_offset.y)).text


def test_the_rss_chart_keeps_a_flat_process_flat():
    from memtop.tui.processes import _y_range

    MiB = 2**20
    # a flat 57 MiB process with a few pages of jitter: the axis spans 10 % of the peak, so the
    # jitter stays under a dot (and costs no redraw)
    low, high = _y_range([57 * MiB, 57 * MiB + 40960, 57 * MiB - 8192])
    assert high - low == pytest.approx(0.1 * (57 * MiB + 40960))
    assert low < 57 * MiB - 8192 and high > 57 * MiB + 40960
    # a spike keeps its own range; a tiny process gets at least 1 MiB; never below zero
    assert _y_range([1 * MiB, 260 * MiB]) == (1 * MiB, 260 * MiB)
    assert _y_range([100 * 1024]) == (0.0, 1 * MiB)


async def test_the_rss_chart_of_a_flat_process_keeps_up_with_time():
    from memtop.tui.processes import RssChart

    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        chart = app.query_one(RssChart)
        drawn = []  # the last time on the drawn axis, at each tick
        for _ in range(60):
            await feed(app, pilot)
            drawn.append(chart._drawn_at)
        # THEN a flat process's chart is redrawn when time has moved by a tenth of its span, but
        # 20 s at least and 30 s at most: never far behind, never every tick
        times = app.snapshot.tick_times
        lags = [t - d for t, d in zip(times[-60:], drawn)]
        assert all(lag <= min(30.0, max(20.0, (t - times[0]) / 10)) for t, lag in zip(times[-60:], lags))
        assert max(lags) >= 18.0 and len(set(drawn)) == 7, sorted(set(drawn))  # 2 minutes: 1000, 1002, then every 20 s


async def test_the_first_tick_read_before_textual_starts_is_the_first_screen():
    """Issue 20, item 3: run_app reads the first tick before Textual starts (Sampler.sample_first)
    and on_mount shows it before the first paint; the sampler thread's next tick comes an
    interval later. Real /proc: this test's own process is among the rows."""
    import os

    from memtop.collect.sampler import Sampler
    from memtop.tui.app import MemtopApp

    sampler = Sampler()
    sampler.sample_first()
    assert sampler.first_ready
    app = MemtopApp(sampler=sampler, interval=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        assert not sampler.first_ready
        assert app.sample is not None and app.sample.processes.tick == 0
        table = app.query_one(ProcessTable)
        assert os.getpid() in {v.pid for v in table.rows}
        await pilot.pause()
        assert app.sample.processes.tick == 0 and sampler.tick == 1  # no second tick yet
        await pilot.press("q")


def test_sample_first_is_returned_once_then_ticks_go_on():
    from memtop.collect.sampler import Sampler

    sampler = Sampler()
    assert not sampler.first_ready
    sampler.sample_first()
    first = sampler._first
    assert sampler.sample() is first and first.tick == 0
    assert sampler.sample().tick == 1
    sampler.sample_first()
    assert sampler.sample(all_rollups=True).tick == 3  # `all_rollups` never takes a lighter tick
    sampler.close()


def _kept_lines(view) -> int:
    """Rendered lines the widgets of ``view`` keep: StylesCache lines, content strips, DataTable
    line and cell caches."""
    from textual.widgets import DataTable

    kept = 0
    for widget in view.walk_children(with_self=True):
        kept += len(widget._styles_cache._cache) + len(widget._render_cache.lines)
        if isinstance(widget, DataTable):
            kept += len(widget._line_cache) + len(widget._cell_render_cache)
    return kept


async def test_a_hidden_tab_keeps_no_rendered_lines_and_repaints_the_same_when_shown_again():
    """Kept for as long as a tab stayed hidden, its rendered lines held 8-9 MiB at 1,000
    processes among objects that live one tick (issue 20, item 5): a tab drops them when hidden
    (widgets.forget_rendered) and paints the same screen again when shown."""
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        for spec in TABS:
            view = await show_tab(pilot, spec.id)
            await pilot.pause()
            assert _kept_lines(view) > 0, spec.id  # the shown tab painted its lines
        await show_tab(pilot, "arenas")  # a DataTable
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        before = app.export_screenshot()
        await show_tab(pilot, "processes")
        await pilot.pause()
        hidden = [view for view in app.query(TabView) if view is not app.active_tab()]
        assert len(hidden) == len(TABS) - 1
        assert {view.TAB_ID: _kept_lines(view) for view in hidden} == {view.TAB_ID: 0 for view in hidden}
        await show_tab(pilot, "arenas")
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()  # the tab bar's underline slides
        assert app.export_screenshot() == before


async def test_a_tab_switch_asks_for_a_trim_of_memtops_own_heap_at_the_next_tick():
    """What a hidden tab let go of (above) is free room in glibc's heap until trimmed: the
    sampler's loop trims at its next tick after a switch, not up to a minute later (at 1,000
    processes 70 MiB instead of 78 after visiting every tab, bench/soak.py)."""
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        app.own_trim_due = False
        await pilot.press("2")
        await pilot.pause()
        assert app.own_trim_due


async def test_every_tab_label_fits_80_columns_and_the_full_titles_come_back_when_wider():
    """At 80 columns the full titles need 92: the tab bar scrolled, and `8 Containers` was cut
    off (seen in tmux). Narrower than that, Processes, Page cache and Pressure show short labels."""
    from textual.widgets import Tabs

    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(app, pilot)
        await show_tab(pilot, "containers")  # the last tab: a bar that scrolls scrolls here
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        bar = app.query_one(Tabs)
        labels = [tab.label_text for tab in bar.query("Tab")]
        assert labels == ["1 Procs", "2 Layers", "3 Arenas", "4 Cache", "5 Kernel", "6 tmpfs", "7 PSI", "8 Containers"]
        assert bar.scroll_x == 0 and all(tab.region.right <= 80 for tab in bar.query("Tab"))
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert [tab.label_text for tab in bar.query("Tab")] == [spec.label(i + 1) for i, spec in enumerate(TABS)]


async def test_every_tabs_footer_fits_80_columns_and_the_hidden_keys_still_work():
    """At 80x24 the footer was cut mid-word ("D Drop cac" on Page cache): narrower than 100
    columns 1-8, +/-, D and A leave it (the tab bar shows the digits, ? lists every key)."""
    from textual.widgets._footer import FooterKey

    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(app, pilot)
        for spec in TABS:
            await show_tab(pilot, spec.id)
            await pilot.pause()
            keys = list(app.query(FooterKey))
            assert keys and all(k.region.right <= 80 for k in keys), (spec.id, [(k.key, k.region) for k in keys])
            assert not {k.action for k in keys} & {"tab(0)", "interval(1)", "drop_caches", "actions_log"}
        before = app.interval
        await pilot.press("plus")  # hidden, and still a key
        assert app.interval > before
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert "tab(0)" in {k.action for k in app.query(FooterKey)}


async def test_the_rss_history_line_fits_80_columns_with_its_figures():
    """At 80 columns a 40-character sparkline pushed `max …` and ΔRSS/min off the line (a
    helper's tour): the sparkline gives way."""
    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(app, pilot, ticks=45)
        table = app.query_one(ProcessTable)
        assert table.select_pid(1077)
        await pilot.pause()
        text = str(app.query_one("#process-detail-line").render())
        history = next(line for line in text.splitlines() if line.startswith(" RSS, last"))
        assert len(history) <= 80 and "max " in history and "ΔRSS/min" in history, history


async def test_the_header_keeps_every_memory_figure_when_they_grow_to_gib():
    """At 120 columns, with used and buff/cache in GiB, the fixed 30-cell bar cut the swap figure
    off the header's line; the bar now gives way, down to none at 80 columns."""
    from dataclasses import replace

    from memtop.tui.header import MemoryHeader

    app = fixed_app()
    for width in (120, 80):
        async with app.run_test(size=(width, 30)) as pilot:
            await feed(app, pilot)
            header = app.query_one(MemoryHeader)
            snap = app.snapshot
            gib = {**snap.system.meminfo, "MemTotal": 24 * 2**30, "MemFree": 1 * 2**30, "MemAvailable": 22 * 2**30,
                   "Buffers": 100 * 2**20, "Cached": int(1.5 * 2**30), "SReclaimable": 200 * 2**20,
                   "Shmem": 12 * 2**20, "SwapTotal": 8 * 2**30, "SwapFree": 7 * 2**30}
            header.update(replace(snap, system=replace(snap.system, meminfo=gib)))
            line = header._text().plain.split("\n")[1]
            assert len(line) <= width, (width, line)
            assert line.rstrip().endswith("swap 1.00 GiB/8.00 GiB" if width == 120 else "swap 1.00/8.00 GiB"), line
            assert "used 2.00 GiB" in line and "avail 22.0" in line
        app = fixed_app()


async def test_the_detail_note_stays_on_its_line_and_a_cut_command_says_so():
    """The rollup's source and age moved between the detail's first and second lines from tick
    to tick (with the figures' widths), and a command cut at 60 characters had no "…"."""
    app = fixed_app()
    for width, line in ((120, 1), (100, 0)):
        async with app.run_test(size=(width, 40)) as pilot:
            await feed(app, pilot, ticks=2)
            assert app.query_one(ProcessTable).select_pid(1077)
            for _ in range(3):  # whatever the tick's figures, the note keeps its line
                await feed(app, pilot)
                lines = str(app.query_one("#process-detail-line").render()).splitlines()
                assert "(smaps_rollup, " in lines[line] and "(smaps_rollup, " not in lines[1 - line], lines
        app = fixed_app()
    assert cut("x" * 61, 60) == "x" * 59 + "…" and cut("x" * 60, 60) == "x" * 60
