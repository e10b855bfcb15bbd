"""The action keys in the app: t (trim) end to end on a real target, and the refusals and
confirmations of t, e, D and the Actions log view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memtop.actions import audit
from memtop.tui.actions import ActionsLogScreen, DropCachesScreen, TrimScreen
from memtop.tui.app import MemtopApp
from memtop.format import fmt_bytes
from memtop.tui.processes import ProcessTable, RssChart
from tests.actions_support import target_binary
from tests.support import IS_ROOT, status_kb
from tests.tui.fixed import feed, fixed_app


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def messages(app) -> list[str]:
    return [n.message for n in app._notifications]


async def wait_for(pilot, predicate, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the screen did not reach the expected state")
        await pilot.pause(0.05)


@pytest.mark.live
@pytest.mark.skipif(not IS_ROOT, reason="trimming another process needs root")
async def test_t_confirm_and_see_the_trim_result(children, gcc, state_home):
    # GIVEN a process holding ~64 MiB of free heap, selected in the Processes tab
    child = children.start([target_binary(), "64"])
    rss_before = status_kb(child.pid, "VmRSS")
    app = MemtopApp(sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.tick()
        await pilot.pause()
        table = app.query_one(ProcessTable)
        assert table.select_pid(child.pid)
        table.focus()
        await pilot.pause()
        # WHEN t is pressed, the prediction shown, and y confirms
        await pilot.press("t")
        screen = app.screen
        assert isinstance(screen, TrimScreen)
        await wait_for(pilot, lambda: screen.phase == "confirm")
        text = str(screen.query_one("#action-text").render())
        assert "predicts RSS will drop by" in text and "stop the process for about" in text
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.phase == "done")
        # THEN the result is on screen, and true
        text = str(screen.query_one("#action-text").render())
        assert "ok: malloc_trim(0) returned 1" in text
        assert "heap released" in text and "stopped (attach → detach)" in text
        assert screen.result.ok and screen.result.heap_released_bytes > 60 * 2**20
        assert status_kb(child.pid, "VmRSS") < rss_before - 60 * 2**20
        # and the follow-up starts
        await wait_for(pilot, lambda: screen.points, timeout=10)
        assert "After the trim" in str(screen.query_one("#action-text").render())
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, TrimScreen)
        # and the RSS chart marks the trim where it happened, with what it released
        released = screen.result.released_bytes
        app.tick()
        await pilot.pause()
        chart = app.query_one(RssChart)
        await wait_for(pilot, lambda: chart.marks_drawn)
        (mark,) = chart.marks_drawn
        assert mark.identity.pid == child.pid and mark.label == f"trim: RSS {fmt_bytes(-released, signed=True)}"
        times = app.snapshot.history(app.snapshot.by_pid(child.pid)).point_times()
        assert times[0] < mark.time <= times[-1]
        assert mark.label in chart.render().plain  # drawn beside its line
    assert child.ask("ping") == "pong"
    records, _ = audit.read_log()
    assert [r["action"] for r in records] == ["trim"] and records[0]["result"]["status"] == "ok"


async def test_read_only_t_e_and_d_say_why_and_do_nothing():
    app = fixed_app(read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        app.query_one(ProcessTable).focus()
        await pilot.press("t", "D")
        await pilot.pause()
        assert app.screen is app.screen_stack[0]  # no confirmation was opened
        text = " ".join(messages(app))
        assert "cannot trim: memtop runs with --read-only" in text
        assert "cannot drop caches: memtop runs with --read-only" in text


async def test_t_and_e_act_only_where_they_mean_something_and_e_without_files_explains():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        # On the Kernel tab t and e do nothing: not offered in the footer, no dialog, no message.
        await pilot.press("5", "t", "e")
        await pilot.pause()
        shown = {k.key_display for k in app.screen.query("FooterKey")}
        assert not {"t", "e"} & shown and {"D", "A"} <= shown
        assert app.screen is app.screen_stack[0] and messages(app) == []
        # On the Page cache tab, e with no file in the list says why.
        await pilot.press("4", "o")  # (c) directory tree, none typed yet: an empty list
        assert app.active_tab().source == "tree" and not app.active_tab().table.rows
        await pilot.press("e")
        await pilot.pause()
        assert "no file selected" in " ".join(messages(app))
        assert app.screen is app.screen_stack[0]


async def test_drop_caches_needs_the_word_and_escape_cancels(state_home):
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        await pilot.press("D")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DropCachesScreen)
        assert screen.query_one("#drop-confirm").value == ""
        await pilot.press("2")  # chooses the level
        assert screen.level == 2
        await pilot.press(*"yes", "enter")  # not the word: nothing happens
        await pilot.pause()
        assert screen.phase == "confirm" and "type the word drop" in " ".join(messages(app))
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, DropCachesScreen)
    assert audit.read_log() == ([], [])  # nothing was done, nothing logged


async def test_actions_log_view_lists_newest_first(state_home):
    audit.append(audit.make_record("evict", {"paths": ["/a", "/b"]}, prediction=None,
                                   result={"files": 2, "failed": 0, "dropped_bytes": 2 * 2**20}, duration_s=0.01,
                                   when=1_790_000_000))
    audit.append(audit.make_record("trim", {"pid": 42, "start_ticks": 1, "comm": "app"}, prediction=None,
                                   result={"status": "refused", "message": "PID 42 is stopped"}, duration_s=0.1,
                                   when=1_790_000_100))
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        await pilot.press("A")
        await pilot.pause()
        assert isinstance(app.screen, ActionsLogScreen)
        rows = app.screen.rows
        assert [row[2] for row in rows] == ["trim", "evict"]  # newest first
        assert rows[0][3] == "PID 42 app" and rows[0][4] == "refused: PID 42 is stopped"
        assert rows[1][3] == "/a +1" and "dropped 2.00 MiB" in rows[1][4]
        assert json.loads(audit.log_path().read_text().splitlines()[0])["action"] == "evict"


async def test_evict_confirmation_then_result(tmp_path, state_home):
    # GIVEN a cached file that a tab hands to the evict confirmation (what `e` does)
    import os

    from memtop.procfs.cachestat import file_cache_stat
    from memtop.tui import actions
    from memtop.tui.actions import EvictScreen

    path = tmp_path / "data"
    path.write_bytes(os.urandom(2 * 2**20))
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        f.read()
    assert file_cache_stat(path).cached_bytes >= 2 * 2**20
    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(app, pilot)
        actions.start_evict(app, [path])
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, EvictScreen)
        assert str(path) in str(screen.query_one("#action-text").render())
        # WHEN y confirms (the file read again just before: once, in CI, its pages were already
        # gone when the action looked, after the app's start-up)
        path.read_bytes()
        assert file_cache_stat(path).cached_bytes >= 2 * 2**20
        await pilot.press("y")
        # THEN the file's pages are gone and the result says so
        await wait_for(pilot, lambda: screen.phase == "done")
        text = str(screen.query_one("#action-text").render())
        assert f"{path}: cached 2.00 MiB -> 0 B" in text
        assert file_cache_stat(path).cached_bytes == 0
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, EvictScreen)
    records, _ = audit.read_log()
    assert [r["action"] for r in records] == ["evict"]


@pytest.mark.live
@pytest.mark.skipif(not IS_ROOT, reason="reads another process's proc files")
async def test_trim_dialog_shows_why_the_maps_cannot_be_read(children, gcc, tmp_path):
    # GIVEN a process whose maps cannot be read (a copy of a real target's proc files where
    # maps is a directory, so reading it fails as /proc/1/maps does for PID 1 in a container)
    from pathlib import Path

    from memtop.actions import identity_of

    child = children.start([target_binary(), "4"])
    root = tmp_path / "proc"
    (root / str(child.pid)).mkdir(parents=True)
    for name in ("stat", "status"):
        (root / str(child.pid) / name).write_bytes(Path(f"/proc/{child.pid}/{name}").read_bytes())
    (root / str(child.pid) / "maps").mkdir()
    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await feed(app, pilot)
        # WHEN the trim dialog opens on it
        screen = TrimScreen(identity_of(child.pid, root), "target", root=root)
        app.push_screen(screen)
        # THEN the walking state ends with the refusal and its reason, and Esc closes it
        await wait_for(pilot, lambda: screen.phase != "predicting")
        assert screen.phase == "refused"
        text = str(screen.query_one("#action-text").render())
        assert "Walking the heap" not in text
        assert "Cannot trim" in text and "maps" in text
        assert screen.query_one("#action-body").border_subtitle == "Esc close"
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, TrimScreen)
    assert child.ask("ping") == "pong"


@pytest.mark.live
@pytest.mark.skipif(not IS_ROOT, reason="trimming another process needs root")
async def test_nothing_to_release_says_so_and_enter_leaves_it(children, gcc, state_home):
    # GIVEN a target trimmed a moment ago: nothing resident is left to release
    from memtop.actions import identity_of, trim

    child = children.start([target_binary(), "16"])
    identity = identity_of(child.pid)
    assert trim.trim(identity, timeout=5, log=False).ok
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        # WHEN the trim dialog opens again
        screen = TrimScreen(identity, "target", root=Path("/proc"))
        app.push_screen(screen)
        await wait_for(pilot, lambda: screen.phase != "predicting")
        # THEN it says plainly that nothing would be released, and Enter (the default) leaves it
        assert screen.phase == "confirm" and screen.prediction.release_bytes == 0
        text = str(screen.query_one("#action-text").render())
        assert "Nothing would be released" in text and "predicts RSS will drop" not in text
        assert screen.query_one("#action-body").border_subtitle.startswith("Enter / n / Esc leave it")
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, TrimScreen)
    assert audit.read_log() == ([], [])  # nothing was done
    assert child.ask("ping") == "pong"


async def test_actions_log_view_uses_the_terminal_width(state_home):
    # GIVEN an evict record with a long path
    long_path = "/tmp/pytest-of-root/pytest-1234/test_evict0/f"  # 45 characters
    audit.append(audit.make_record("evict", {"paths": [long_path]}, prediction=None,
                                   result={"files": 1, "failed": 0, "dropped_bytes": 2**20}, duration_s=0.01,
                                   when=1_790_000_000))
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        # WHEN the log view opens on a 120-column terminal
        await pilot.press("A")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ActionsLogScreen)
        # THEN the box takes (nearly) the whole width and the path is on one line
        assert screen.query_one("#action-body").size.width >= 110
        import io

        from rich.console import Console

        static = screen.query_one("#actions-log-table")
        console = Console(width=static.content_size.width, record=True, file=io.StringIO())
        console.print(screen.table)  # laid out at the width the view gives it
        assert long_path in console.export_text()  # not folded into 17-character pieces
