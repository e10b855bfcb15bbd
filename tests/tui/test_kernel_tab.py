"""Pilot and snapshot tests of the Kernel tab, on a proc + sys tree captured from this machine
(tests/fixtures/kernel/tree: two fd-leak targets, one in its own network namespace)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from memtop.model.kernel import FdGrower, FdGrowth, SlabRow, fd_leak_finding
from memtop.procfs.kernel import parse_slabinfo_file
from memtop.tui.kernel import KernelTab, SlabTable
from tests.tui.fixed import feed, fixed_app

TREE = Path(__file__).resolve().parent.parent / "fixtures" / "kernel" / "tree" / "proc"
NETNS_PID, HOST_PID = 14665, 14670  # the target in its own namespace, the one in memtop's
HOST_NS, TARGET_NS = 4026531833, 4026532246


async def show_kernel_tab(app, pilot, ticks: int = 1) -> KernelTab:
    """Feed ``ticks`` snapshots with the Kernel tab visible and wait for its worker's view."""
    await feed(app, pilot)
    await pilot.press("5")
    await feed(app, pilot, ticks=ticks)
    tab = app.query_one(KernelTab)
    await app.workers.wait_for_complete([w for w in app.workers if w.group == "kernel"])
    await pilot.pause()
    assert tab.view is not None and tab.view.tick == app.snapshot.tick
    return tab


def rendered(app, selector: str) -> str:
    widget = app.query_one(selector)
    content = widget.content
    if hasattr(content, "plain"):
        return content.plain
    from rich.console import Console

    console = Console(width=widget.size.width or 120, record=True)
    console.print(content)
    return console.export_text()


async def test_kernel_tab_shows_the_captured_tree_help_and_the_no_root_state():
    app = fixed_app(TREE)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await show_kernel_tab(app, pilot)
        table = app.query_one(SlabTable)
        # GIVEN the captured slabinfo THEN every cache is a row, largest first
        caches = parse_slabinfo_file((TREE / "slabinfo").read_text()).caches
        assert len(table.rows) == len(caches)
        totals = [r.cache.total_bytes for r in table.rows]
        assert totals == sorted(totals, reverse=True)
        # The reclaim flag comes from the captured sys tree for the 12 largest, unknown otherwise.
        assert [r.reclaimable is not None for r in table.rows[:12]] == [True] * 12
        assert table.rows[-1].reclaimable is None
        title = rendered(app, "#kernel-slab-title")
        assert f"{len(caches)} caches hold" in title and "of meminfo Slab" in title
        # Sockets: memtop's namespace first (marked *), then the target's own namespace.
        sockets = rendered(app, "#kernel-sockets")
        assert f"*{HOST_NS}" in sockets and str(TARGET_NS) in sockets
        assert [ns.inode for ns in tab.view.namespaces] == [HOST_NS, TARGET_NS]
        target_ns = tab.view.namespaces[1]
        assert target_ns.pids == (NETNS_PID,) and target_ns.sockstat.protocol("TCP").get("inuse") == 7
        # Categories and file-nr are on screen.
        assert "SUnreclaim" in rendered(app, "#kernel-categories") and "unexplained" in rendered(app, "#kernel-categories")
        assert "file handles" in rendered(app, "#kernel-fds")

        # ? gives every category a one-line meaning
        await pilot.press("question_mark")
        await pilot.pause()
        figures = dict(app.screen.figure_sources)
        for key in ("SReclaimable", "SUnreclaim", "KernelStack", "PageTables", "SecPageTables", "Percpu",
                    "VmallocUsed", "Shmem", "Buffers", "unexplained"):
            assert key in figures and len(figures[key]) > 30, key
        await pilot.press("escape")

        # Without access to slabinfo (not root) the tab says so and keeps meminfo's totals.
        reason = "/proc/slabinfo is readable by root only (mode 0400): run memtop as root to see slab caches"
        tab.show_view(replace(tab.view, slabs=None, slab_reason=reason, slab_version=None))
        await pilot.pause()
        assert "readable by root only" in rendered(app, "#kernel-slab-title")
        assert table.rows == [] and "run memtop as root" in table.note
        assert "SReclaimable" in rendered(app, "#kernel-categories")


async def test_sort_filter_and_fd_breakdown_of_the_selected_process():
    app = fixed_app(TREE)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await show_kernel_tab(app, pilot)
        table = app.query_one(SlabTable)
        table.focus()
        # s: sort by name
        await pilot.press("s")
        await pilot.pause()
        options = app.screen.query_one("#sort-options")
        options.highlighted = [o.id for o in options._options].index("name")
        await pilot.press("enter")
        await pilot.pause()
        names = [r.cache.name.lower() for r in table.rows]
        assert table.sort_key == "name" and names == sorted(names)
        # /: filter caches by name
        await pilot.press("slash")
        await pilot.press(*"kmalloc")
        await pilot.press("enter")
        await pilot.pause()
        assert table.rows and all("kmalloc" in r.cache.name for r in table.rows)
        # the title says how many the filter keeps
        title = rendered(app, "#kernel-slab-title")
        assert f"filter 'kmalloc': {len(table.rows)} of {len(tab.view.slabs)} caches" in title
        await pilot.press("home", "down", "down")
        assert table.cursor_name == table.rows[2].cache.name
        # Select the namespaced target: at the next tick its fd table is broken down.
        app.select_process(app.snapshot.by_pid(NETNS_PID))
        await feed(app, pilot)
        await app.workers.wait_for_complete([w for w in app.workers if w.group == "kernel"])
        await pilot.pause()
        b = tab.view.fd_breakdown
        # 3 iterations x (client, server, 2 socketpair ends) + the listener; stdin/out/err pipes.
        assert (b.sockets, b.pipes, b.files) == (13, 3, 0)
        assert f"PID {NETNS_PID}" in rendered(app, "#kernel-fds") and "sockets 13  pipes 3" in rendered(app, "#kernel-fds")


def fixed_view(tab: KernelTab, app):
    """The tab's view from the captured tree, plus fixed growth figures and a leaking process."""
    view = tab.view
    rank = {r.cache.name: i for i, r in enumerate(sorted(view.slabs, key=lambda r: -r.cache.total_bytes))}
    slabs = tuple(
        SlabRow(r.cache, (rank[r.cache.name] % 3 - 1) * 4096.0 * (rank[r.cache.name] + 1) if rank[r.cache.name] < 8 else None,
                r.reclaimable)
        for r in view.slabs
    )
    leak = app.snapshot.by_pid(NETNS_PID)  # the tab shows the growth figures below, not the history
    growth = FdGrowth(per_min=120.0, first=16, last=76, span_s=30.0, points=16, r2=1.0, rising_share=1.0)
    slow = app.snapshot.by_pid(HOST_PID)
    slow_growth = FdGrowth(per_min=2.0, first=12, last=13, span_s=30.0, points=16, r2=0.3, rising_share=0.9)
    growers = (FdGrower(leak, growth, fd_leak_finding(leak, growth, min_span_s=30)), FdGrower(slow, slow_growth, None))
    return replace(view, slabs=slabs, growers=growers)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_kernel_tab_looks(snap_compare, size):
    async def run_before(pilot):
        app = pilot.app
        app.select_process(None)
        tab = await show_kernel_tab(app, pilot, ticks=3)
        app.select_process(app.snapshot.by_pid(NETNS_PID))
        await feed(app, pilot)
        await app.workers.wait_for_complete([w for w in app.workers if w.group == "kernel"])
        await pilot.pause()
        tab.show_view(fixed_view(tab, app))
        app.query_one(SlabTable).focus()
        await pilot.pause()

    assert snap_compare(fixed_app(TREE), terminal_size=size, run_before=run_before)


async def test_the_slab_chart_is_rebuilt_only_when_its_picture_changes():
    """A plotext rebuild costs 20-40 ms of the UI thread: not at every read (issue 20 item 2)."""
    from types import MappingProxyType

    from memtop.tui.kernel import SlabChart

    app = fixed_app(TREE)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await show_kernel_tab(app, pilot)
        chart = app.query_one(SlabChart)
        MiB = 2**20

        def view(reads: int, last_a: int | None = None, step_at: int | None = None):
            times = tuple(1000.0 + 2 * i for i in range(reads))
            a = [140 * MiB if step_at is not None and i >= step_at else 100 * MiB for i in range(reads)]
            if last_a is not None:
                a[-1] = last_a
            return replace(tab.view, slab_history_times=times,
                           slab_history=MappingProxyType({"dentry": tuple(a), "filp": (10 * MiB,) * reads}))

        # GIVEN a chart drawn from 10 reads
        chart.show(view(10))
        drawn = chart.draws
        # WHEN reads come with the same figures for 16 s THEN nothing is rebuilt
        for reads in range(11, 19):
            chart.show(view(reads))
        assert chart.draws == drawn
        # WHEN a cache moves by less than a dot of the chart (1 KiB of a 90 MiB range) THEN neither
        chart.show(view(19, last_a=100 * MiB + 1024))
        assert chart.draws == drawn
        # WHEN it moves by 40 MiB THEN the picture is rebuilt, once
        chart.show(view(20, step_at=19))
        assert chart.draws == drawn + 1
        chart.show(view(20, step_at=19))
        assert chart.draws == drawn + 1
        # WHEN 30 s pass with no change THEN it is rebuilt once, so that its clock axis keeps up
        for reads in range(21, 36):
            chart.show(view(reads, step_at=19))
        assert chart.draws == drawn + 2
        await pilot.pause()
        assert "largest caches, MiB" in str(chart.render())


def test_the_socket_table_keeps_each_figure_whole_at_80_columns():
    """At 80 columns the tour saw "TCP mem 1.47 M…": a byte column holds "99.9 MiB" whole."""
    from rich.console import Console

    from memtop.model.kernel import NetNamespace, SockProtocol, Sockstat
    from memtop.tui.kernel import sockets_table

    tcp = SockProtocol("TCP", {"inuse": 1, "orphan": 0, "tw": 0, "alloc": 1}, int(1.47 * 2**20))
    udp = SockProtocol("UDP", {"inuse": 0}, int(99.9 * 2**20))
    ns = NetNamespace(4026531833, (1, 2), "1 init", True, Sockstat(15, (tcp, udp)))

    class View:  # sockets_table reads only these two fields of a KernelView
        namespaces = (ns,)
        namespaces_unreadable = 0

    console = Console(width=80, record=True, color_system=None)
    console.print(sockets_table(View(), 80))
    text = console.export_text()
    assert "1.47 MiB" in text and "99.9 MiB" in text
    assert max(len(line) for line in text.splitlines()) <= 80
