"""The tmpfs tab, driven through Pilot: fixed data for the looks and the keys, and one live run
against a child holding a deleted file in a tmpfs mounted for the test."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from memtop.tui.app import MemtopApp
from memtop.tui.screens import HelpScreen, SortScreen
from memtop.tui.tmpfs import TmpfsTab
from tests.tmpfs_report import NOW, fixed_report, fixed_scan


def cells(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def open_tab(pilot) -> TmpfsTab:
    await pilot.press("6")
    await pilot.pause()
    tab = pilot.app.query_one(TmpfsTab)
    tab.live = False
    tab.clock = lambda: NOW
    tab.show_report(fixed_report())
    tab.show_scan(fixed_scan(), when=NOW - 12)
    await pilot.pause()
    return tab


def detail(app) -> str:
    return str(app.query_one("#tmpfs-detail", Static).render())


async def test_sections_show_the_fixed_report():
    app = MemtopApp(sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await open_tab(pilot)
        mounts = cells(tab.query_one("#tbl-mounts", DataTable))
        assert [row[0] for row in mounts] == ["/dev", "/dev/shm", "/dev/shm", "/run/user/1000", "/mnt/ram", "/"]
        assert mounts[1][2] == "?" and "covered by mount 30" in mounts[1][5]
        assert mounts[3][2:5] == ["8.00 MiB", "64.0 MiB", "12%"]
        assert mounts[5][7] == "pid 25" and mounts[5][5] == "same fs as /dev"
        summary = str(app.query_one("#tmpfs-summary", Static).render())
        assert "Shmem 80.0 MiB" in summary and "1 deleted-but-open file keeping 24.0 MiB" in summary
        assert "1 orphan SysV segment holding 12.0 MiB" in summary

        await pilot.press("d")
        assert tab.section == "deleted"
        (row,) = cells(tab.query_one("#tbl-deleted", DataTable))
        assert row[:4] == ["/dev/shm/cache.tmp", "24.0 MiB", "24.0 MiB", "4242 worker fd 7+map, 4300 worker fd 5"]
        assert "keeps 24.0 MiB until every holder closes" in detail(app)

        await pilot.press("v")
        sysv = cells(tab.query_one("#tbl-sysv", DataTable))
        assert sysv[0][0] == "0x4d454d54" and sysv[0][9].startswith("ORPHAN")
        assert "ipcrm -m 1 removes it" in detail(app)
        assert sysv[1][0] == "PRIVATE" and "removed, freed at last detach; pids 4242" in sysv[1][9]

        await pilot.press("e")
        memfd = cells(tab.query_one("#tbl-memfd", DataTable))
        # One row per process and object, largest Rss first.
        assert [r[:4] for r in memfd] == [["4242", "worker", "memfd", "wayland-pool"],
                                          ["4242", "worker", "anon", "/dev/zero"],
                                          ["4243", "worker", "anon", "/dev/zero"]]
        assert memfd[0][8] == "6.00 MiB"

        await pilot.press("c")
        shmem = cells(tab.query_one("#tbl-shmem", DataTable))
        assert [r[0] for r in shmem] == ["tmpfs files", "SysV segments", "memfd", "shared anonymous",
                                         "not explained", "ramfs (outside)"]
        assert shmem[4][1:4] == ["8.00 MiB", "10%", "remainder"]
        assert "statvfs" in detail(app)
        # A note wider than WHAT IT IS ends in "…" on screen (not cut mid-word with no mark).
        table = tab.query_one("#tbl-shmem", DataTable)
        width = table.columns["WHAT IT IS"].width
        assert any(len(r[4]) > width for r in shmem)
        screen = "\n".join(str(table.render_line(y).text) for y in range(table.size.height))
        assert "…" in screen and shmem[0][4][:width - 1] + "…" in screen



async def test_only_the_section_on_screen_is_filled_and_a_ticking_age_changes_its_cell_alone():
    """Filling the seven sections at every pass rebuilt the SysV and POSIX tables at every read
    (their ages tick), unseen (issue 20 item 2): only the section shown is filled, and a table whose
    rows are the same gets only its changed cells."""
    from memtop.format import fmt_duration

    app = MemtopApp(sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await open_tab(pilot)
        posix = tab.query_one("#tbl-posix", DataTable)
        # GIVEN Mounts on screen THEN the POSIX table is not filled
        assert tab.section == "mounts" and posix.row_count == 0
        # WHEN POSIX is shown THEN it is
        await pilot.press("x")
        (row,) = cells(posix)
        assert row[0] == "pulse-shm-1" and row[3] == fmt_duration(7200)
        rows = list(posix.rows.values())
        # WHEN the next pass comes a minute later THEN the age's cell changes, in the same rows
        tab.clock = lambda: NOW + 60
        tab.show_report(fixed_report())
        await pilot.pause()
        (after,) = cells(posix)
        assert after[3] == fmt_duration(7260) != row[3] and after[:3] == row[:3]
        assert all(a is b for a, b in zip(posix.rows.values(), rows, strict=True))
        screen = "\n".join(str(posix.render_line(y).text) for y in range(posix.size.height))
        assert fmt_duration(7260) in screen

async def test_files_order_scan_detail_and_help():
    app = MemtopApp(sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await open_tab(pilot)
        # Files shows the mount under the Mounts cursor: the second /dev/shm (the reachable one).
        tab.query_one("#tbl-mounts", DataTable).focus()
        await pilot.press("down", "down", "f")
        table = tab.query_one("#tbl-files", DataTable)
        assert [r[0] for r in cells(table)] == ["/dev/shm/cache.big", "/dev/shm/sparse.img"]
        assert cells(table)[1][1:4] == ["4.00 KiB", "1.00 GiB", "1m00s"]
        assert "3 files in 1 dir," in detail(app) and "scanned 12s ago" in detail(app)
        await pilot.press("s")
        assert isinstance(app.screen, SortScreen)
        await pilot.press("down", "enter")
        await pilot.pause()
        assert tab.files_order == "oldest"
        assert [r[0] for r in cells(table)][0] == "/dev/shm/old.log"
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        # Enter on a deleted file's row: its holder is not in a process list (no sampling here).
        await pilot.press("d", "enter")
        await pilot.pause()
        assert any("PID 4242" in str(n.message) for n in app._notifications)

        # At 80x24 the summary keeps its two lines and the table still shows rows.
        await pilot.resize_terminal(80, 24)
        await pilot.press("m")
        await pilot.pause()
        summary = str(app.query_one("#tmpfs-summary", Static).render()).splitlines()
        assert summary[0].startswith(" Shmem 80.0 MiB") and len(summary) in (2, 3)
        # The sum is whole: short labels, broken between parts if need be, never cut.
        sum_text = " ".join(summary[:-1])
        assert "…" not in sum_text and "unexplained" not in sum_text and "rest 8.00 MiB" in sum_text
        assert all(len(line) <= 79 for line in summary[:-1])
        table = tab.query_one("#tbl-mounts", DataTable)
        assert table.size.height >= 8 and table.row_count == 6
        assert table.columns["MOUNTPOINT"].width == 14


def test_snapshot_of_the_tab(snap_compare):
    async def feed(pilot):
        await open_tab(pilot)
        await pilot.press("d")
        await pilot.pause()

    assert snap_compare(MemtopApp(sample=False), terminal_size=(120, 40), run_before=feed)


@pytest.mark.live
async def test_live_tab_lists_a_deleted_file_held_by_a_child(tmp_path, children, gcc):
    """GIVEN a child holding a deleted 3 MiB file in a tmpfs mounted for the test
    WHEN the tmpfs tab is opened on a sampling app
    THEN the Deleted section lists the file with the child's PID, and Enter opens it in Layers."""
    from tests.live.test_tmpfs_live import _mount_tmpfs, _umount
    from tests.live.tmpfs_targets import HOLDER_C
    from tests.support import compile_c

    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    mounted = _mount_tmpfs(mountpoint)
    directory = mountpoint if mounted else None
    if directory is None:
        import tempfile

        directory = __import__("pathlib").Path(tempfile.mkdtemp(prefix="memtop-tui-", dir="/dev/shm"))
    try:
        path = directory / "held.log"
        child = children.start([compile_c(HOLDER_C, name="shmholder"), path, 3 * 2**20, 4096, 4096, 4096])
        app = MemtopApp(interval=0.5)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("6")
            tab = app.query_one(TmpfsTab)
            await pilot.press("d")

            def listed():
                table = tab.query_one("#tbl-deleted", DataTable)
                return [r for r in cells(table) if r[0] == str(path)]

            async def wait_listed():
                for _ in range(200):
                    rows = listed()
                    if rows and app.snapshot is not None and app.snapshot.by_pid(child.pid):
                        return rows
                    await pilot.pause(0.1)
                raise TimeoutError("the deleted file never showed up")

            (row,) = await wait_listed()
            assert row[1] == "3.00 MiB"
            assert row[3].startswith(f"{child.pid} ")
            table = tab.query_one("#tbl-deleted", DataTable)
            table.focus()
            table.move_cursor(row=[r[0] for r in cells(table)].index(str(path)))
            await pilot.press("enter")
            await pilot.pause()
            assert app.target is not None and app.target.pid == child.pid
            assert app.active_tab().TAB_ID == "layers"
        child.close()
    finally:
        if mounted:
            _umount(mountpoint)
        else:
            import shutil

            shutil.rmtree(directory, ignore_errors=True)
