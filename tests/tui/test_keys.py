"""Every key memtop offers does what its label says (issue 19, item 1).

The app runs on this machine's /proc (parts run in the test's thread: ``sample=False``), with a
Python child of the test selected. On every tab, the keys the footer shows and the keys the help
screen (``?``) lists are collected, and each one is pressed and checked: a digit switches tabs,
``s`` opens the sort chooser, ``/`` the filter box, ``p`` pauses (the header says so), ``+``/``-``
change the interval, Enter opens Layers, ``t`` ``e`` ``E`` ``D`` ``m`` open their confirmation,
which ``n``/Esc closes: nothing ever acts on a process, a file or the caches. A key shown with
no check here fails the test: a new key needs its check.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import pytest
from textual import events
from textual.widgets import DataTable, Input
from textual.widgets._footer import FooterKey

from memtop.tui.actions import ActionsLogScreen, DropCachesScreen, EvictScreen, TrimScreen
from memtop.tui.app import TABS, MemtopApp
from memtop.tui.arenas import ConfirmMallocInfo
from memtop.tui.header import MemoryHeader
from memtop.tui.screens import HelpScreen, SortScreen, key_names
from memtop.tui.widgets import CursorTable

pytestmark = pytest.mark.live

# A child that holds a deleted file open on /dev/shm (the tmpfs tab's "deleted" section names it,
# and Enter there opens it in Layers) and has a heap to walk.
CHILD = r"""
import os, sys, time
path = sys.argv[1]
f = open(path, "wb")
f.write(b"k" * 65536)
f.flush()
os.unlink(path)
held = [bytes(1000) for _ in range(2000)]
print("READY", flush=True)
sys.stdin.read()
"""

WIDTH, HEIGHT = 120, 40  # the footer must show every key that acts at 120 columns


@pytest.fixture
def child(children):
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    path = os.path.join(shm, f"memtop-keys-{os.getpid()}")
    return children.start([sys.executable, "-c", CHILD, path])


DIGITS = "".join(str(i) for i in range(1, len(TABS) + 1))  # a key per tab: 1 … 8
CHARACTERS = {"slash": "/", "enter": "\r", "escape": "\x1b", "question_mark": "?"}


async def type_at_once(app, pilot, *keys: str) -> None:
    """Keys as a terminal delivers keys typed fast: all queued before the app handles the first
    (Pilot's press waits for each to be handled, which hides what a key does to the next)."""
    for key in keys:
        app.post_message(events.Key(key, CHARACTERS.get(key, key if len(key) == 1 else None)))
    await pilot.pause()
    await pilot.pause()


async def pause_until(pilot, condition, timeout: float = 10.0) -> None:
    """Let the app handle its messages until ``condition()`` holds or ``timeout`` passes (the
    caller asserts it after)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await pilot.pause(0.05)


def footer_keys(app) -> list[FooterKey]:
    return list(app.screen.query(FooterKey))


async def settle(app, pilot, ticks: int = 1) -> None:
    for _ in range(ticks):
        app.tick()
        await pilot.pause()
    await pilot.pause()


def header(app) -> str:
    return app.query_one(MemoryHeader)._text().plain


class Walk:
    """The checks of one tab, by Textual key name."""

    def __init__(self, app, pilot, tab_index: int, child_pid: int):
        self.app, self.pilot, self.index, self.child_pid = app, pilot, tab_index, child_pid
        self.tab = app.active_tab()
        self.pressed: list[str] = []

    async def press(self, *keys: str) -> None:
        await self.pilot.press(*keys)  # waits until the app has handled each key

    async def back_to_tab(self) -> None:
        await self.press(str(self.index + 1))
        assert self.app.active_tab() is self.tab

    async def check(self, key: str) -> None:
        self.pressed.append(key)
        app = self.app
        tab_id = self.tab.TAB_ID
        if key in DIGITS and len(key) == 1:
            await self.press(key)
            assert app.active_tab().TAB_ID == TABS[int(key) - 1].id
            if key != DIGITS[-1]:  # the digits are pressed in a row; the last one comes back
                return
            await self.back_to_tab()
        elif key == "question_mark":
            await self.press(key)
            assert isinstance(app.screen, HelpScreen) and app.screen.tab_title == self.tab.TAB_TITLE
            await self.press("escape")
            assert not isinstance(app.screen, HelpScreen)
        elif key == "p":
            await self.press("p")
            assert app.paused and "PAUSED" in header(app)
            await self.press("p")
            assert not app.paused and "PAUSED" not in header(app)
        elif key in ("plus", "minus"):
            before = app.interval
            await self.press(key)
            assert (app.interval > before) if key == "plus" else (app.interval < before)
            assert f"every {app.interval:g}s" in header(app)
            await self.press("minus" if key == "plus" else "plus")
            assert app.interval == before
        elif key == "s":
            await self.press("s")
            if tab_id == "tmpfs":  # s orders the files section (the only one it sorts)
                assert self.tab.section == "files"
            assert isinstance(app.screen, SortScreen)
            await self.press("escape")
            assert not isinstance(app.screen, SortScreen)
        elif key == "slash":
            await self.check_filter()
        elif key == "escape":  # Processes: clears the filter
            table = self.tab.table
            await self.press("slash", *"memtop-no-such-process", "enter")
            assert table.filter_text == "memtop-no-such-process"
            await self.press("slash", "escape")
            assert table.filter_text == "" and not self.tab.query_one("#process-filter").display
        elif key == "enter":
            if tab_id == "processes":
                assert self.tab.table.select_pid(self.child_pid)
                await self.press("enter")
                assert app.active_tab().TAB_ID == "layers" and app.target.pid == self.child_pid
            else:  # tmpfs: the holder of the highlighted deleted-but-open file
                await self.check_tmpfs_enter()
            await self.back_to_tab()
        elif key == "t":
            await self.press("t")
            assert isinstance(app.screen, TrimScreen) and app.screen.identity.pid == app.target.pid
            await self.press("n")  # never y
            assert not isinstance(app.screen, TrimScreen)
        elif key in ("e", "E") and tab_id == "pagecache":
            await self.press(key)
            assert isinstance(app.screen, EvictScreen) and app.screen.paths
            if key == "e":
                assert len(app.screen.paths) == 1
            await self.press("n")  # never y
            assert not isinstance(app.screen, EvictScreen)
        elif key == "D":
            await self.press("D")
            assert isinstance(app.screen, DropCachesScreen)
            await self.press("escape")
            assert not isinstance(app.screen, DropCachesScreen)
        elif key == "A":
            await self.press("A")
            assert isinstance(app.screen, ActionsLogScreen)
            await self.press("escape")
            assert not isinstance(app.screen, ActionsLogScreen)
        elif key in ("up", "down", "pageup", "pagedown", "home", "end"):
            await self.check_cursor(key)
        elif key == "r" and tab_id in ("layers", "arenas"):
            part = "layers" if tab_id == "layers" else "arenas"
            before = app.sample.result(part)
            await self.press("r")
            await settle(app, self.pilot)
            after = app.sample.result(part)
            assert after is not None and after.key == app.target
            assert before is None or after.finished > before.finished  # walked again
        elif key == "m" and tab_id == "arenas":
            await self.press("m")
            assert isinstance(app.screen, ConfirmMallocInfo) and app.screen.pid == app.target.pid
            await self.press("n")  # never y
            assert not isinstance(app.screen, ConfirmMallocInfo)
        elif tab_id == "pagecache" and key in ("o", "d"):
            await self.check_pagecache(key)
        elif tab_id == "tmpfs" and key in "mfdvxec":
            section = {"m": "mounts", "f": "files", "d": "deleted", "v": "sysv", "x": "posix", "e": "memfd",
                       "c": "shmem"}[key]
            await self.press(key)
            assert self.tab.section == section and app.focused is self.tab._table(section)
            await self.press("m")
        elif tab_id == "tmpfs" and key == "r":
            self.tab.scanning = None
            await self.press("r")
            assert self.tab.scanning is not None  # the selected mount's files are being scanned
            await settle(app, self.pilot)
        elif tab_id == "containers" and key in ("[", "]"):
            body, table = self.tab.query_one("#containers-body"), app.focused
            body.scroll_to(y=0, animate=False)
            await self.press("right_square_bracket" if key == "]" else "left_square_bracket")
            expected = min(4, body.max_scroll_y) if key == "]" else 0
            assert body.scroll_y == expected and app.focused is table  # the table keeps the keys
        else:
            pytest.fail(f"{tab_id}: the key {key!r} is offered, but this test has no check for it")

    async def check_filter(self) -> None:
        """/ opens the box, keys typed at once go into it, Enter keeps the filter and gives the
        keys back: then a digit switches tabs and p pauses, instead of being typed."""
        app, tab = self.app, self.tab
        needle = {"processes": str(self.child_pid), "kernel": "kmalloc"}[tab.TAB_ID]
        box_id = {"processes": "#process-filter", "kernel": "#slab-filter"}[tab.TAB_ID]
        box = tab.query_one(box_id, Input)
        other = "2" if self.index != 1 else "1"
        # Typed as fast as a terminal delivers them: the digit after Enter switches tabs.
        await type_at_once(app, self.pilot, "slash", *needle, "enter", other)
        assert box.value == needle and tab.table.filter_text == needle
        # A key that reached the box after Enter took the focus away is handed back to the app
        # as a new message: under load that can take more than the two pauses above.
        await pause_until(self.pilot, lambda: app.active_tab().TAB_ID == TABS[int(other) - 1].id)
        assert app.active_tab().TAB_ID == TABS[int(other) - 1].id
        await self.back_to_tab()
        assert app.focused is tab.table and not app.screen.is_modal
        await type_at_once(app, self.pilot, "slash", "enter", "p")  # the filter kept, p pauses
        await pause_until(self.pilot, lambda: app.paused)
        assert app.paused and box.value == needle and app.focused is tab.table
        await self.press("p")
        assert not app.paused
        await self.press("slash", "escape")  # Esc in the box clears the filter
        assert box.value == "" and tab.table.filter_text == ""

    async def check_cursor(self, key: str) -> None:
        focused = self.app.focused
        if isinstance(focused, CursorTable):
            rows, index = len(focused.rows), lambda: focused._cursor_index
        elif isinstance(focused, DataTable):
            rows, index = focused.row_count, lambda: focused.cursor_row
        else:  # a scrolling view (Layers, Pressure): the keys scroll it
            await self.press(key)
            return
        await self.press("home")
        assert index() == 0
        if key in ("down", "pagedown", "end") and rows > 1:
            await self.press(key)
            assert index() > 0
        elif key in ("up", "pageup", "home") and rows > 1:
            await self.press("end", key)
            assert index() < rows - 1
        await self.press("home")

    async def check_pagecache(self, key: str) -> None:
        app, tab = self.app, self.tab
        if key == "o":
            start = tab.source
            seen = []
            for _ in range(3):  # o cycles (a) (b) (c) and back, the focus staying on the list
                await self.press("o")
                seen.append(tab.source)
                assert app.focused is tab.table, f"o moved the focus to {app.focused}"
            assert tab.source == start and set(seen) == {"process", "system", "tree"}
            return
        # d: the path box takes what is typed right after it
        await type_at_once(app, self.pilot, "d", *"/nonexistent-memtop-dir")
        box = tab.query_one("#pc-tree-input", Input)
        assert app.focused is box and box.value == "/nonexistent-memtop-dir"
        await self.press("escape")
        await self.press("o")  # leave (c)
        while tab.source != "system":
            await self.press("o")
        assert app.focused is tab.table

    async def check_tmpfs_enter(self) -> None:
        app, tab = self.app, self.tab
        await self.press("d")
        table = tab._table("deleted")
        report = tab.report
        index = next(i for i, d in enumerate(report.deleted_open)
                     if any(h.pid == self.child_pid for h in d.holders))
        table.move_cursor(row=[k.value for k in table.rows].index(next(
            k.value for k in table.rows if k.value.rsplit("#", 1)[-1] == str(index))))
        await self.pilot.pause()
        expected = report.deleted_open[index].holders[0].pid
        await self.press("enter")
        assert app.active_tab().TAB_ID == "layers" and app.target.pid == expected


def help_rows_keys(rows) -> list[str]:
    keys = []
    for display, _ in rows:
        keys.extend(key_names(display))
    return keys


@pytest.mark.parametrize("tab_index", range(len(TABS)), ids=[t.id for t in TABS])
async def test_every_key_offered_does_what_it_says(tab_index, child):
    app = MemtopApp(sample=False, pid=child.pid)
    async with app.run_test(size=(WIDTH, HEIGHT)) as pilot:
        await settle(app, pilot, 2)
        await pilot.press(str(tab_index + 1))
        await settle(app, pilot, 2)
        walk = Walk(app, pilot, tab_index, child.pid)
        assert app.active_tab().TAB_ID == TABS[tab_index].id

        footer = footer_keys(app)
        # Every key shown fits in the footer at this width (none is cut off at the right).
        assert all(k.region.right <= WIDTH for k in footer), [(k.key_display, k.region) for k in footer]
        offered = [k.key.split(",")[0] for k in footer]
        shown = {k.key_display for k in footer}
        await pilot.press("question_mark")
        await pilot.pause()
        rows = app.screen.rows
        await pilot.press("escape")
        await pilot.pause()
        displays = [d for d, _ in rows]
        assert len(displays) == len(set(displays)), f"a key is listed twice in the help: {displays}"
        offered += [k for k in help_rows_keys(rows) if k not in offered]

        # What each tab must offer (the issue: t, e, D, A were never in the footer).
        expected = {"processes": {"t", "D", "A", "/", "s", "⏎"}, "layers": {"t", "D", "A", "r"},
                    "arenas": {"r", "m", "D", "A"}, "pagecache": {"e", "E", "D", "A", "o", "d", "s"},
                    "kernel": {"D", "A"}, "tmpfs": {"r", "D", "A"}, "pressure": {"D", "A"},
                    "containers": {"D", "A"}}[TABS[tab_index].id]
        assert expected <= shown, f"missing from the footer: {expected - shown}"
        # Keys that act nowhere on this tab are not offered.
        not_here = {"processes": {"e", "r", "o"}, "layers": {"e", "/", "s", "⏎"}, "arenas": {"t", "e", "/", "s"},
                    "pagecache": {"t", "/", "⏎", "x", "r"}, "kernel": {"t", "e", "⏎"},
                    "tmpfs": {"t", "/", "⏎", "s"}, "pressure": {"t", "e", "/", "s", "⏎"},
                    "containers": {"t", "e", "/", "s", "⏎", "r"}}[TABS[tab_index].id]
        assert not (not_here & shown), f"offered but doing nothing here: {not_here & shown}"

        digits = [k for k in DIGITS if k in offered]
        assert digits == list(DIGITS)
        # The digits last, in a row (each switches; the last comes back), q at the very end.
        for key in [*(k for k in dict.fromkeys(offered) if k not in digits and k not in ("q", "ctrl+c")), *digits]:
            await walk.check(key)
            assert app.active_tab() is walk.tab or key in DIGITS[:-1], f"after {key}"
            assert not app.screen.is_modal, f"{key} left {app.screen} open"
        assert "q" in offered
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0
    assert child.alive()


async def test_replay_filter_keeps_digits_and_p(tmp_path, child):
    """The same in `memtop replay`: with a filter applied, a digit switches tabs and p plays."""
    from memtop.collect.recording import RecordReader
    from memtop.tui.replay import ReplayApp
    from tests.record_support import record_in_process

    path = tmp_path / "keys.db"
    record_in_process(path, 3, interval_s=2.0)
    app = ReplayApp(RecordReader(path))
    async with app.run_test(size=(WIDTH, HEIGHT)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        tab = app.active_tab()
        box = tab.query_one("#process-filter", Input)
        await type_at_once(app, pilot, "slash", *str(child.pid), "enter", "5")
        assert box.value == str(child.pid) and [v.pid for v in tab.table.rows] == [child.pid]
        await pause_until(pilot, lambda: app.active_tab().TAB_ID == "kernel")
        assert app.active_tab().TAB_ID == "kernel"
        await pilot.press("1")
        assert app.active_tab() is tab and app.focused is tab.table
        await type_at_once(app, pilot, "slash", "enter", "p")
        await pause_until(pilot, lambda: app.playing)
        assert app.playing and box.value == str(child.pid)
        await pilot.press("p")
        assert not app.playing
