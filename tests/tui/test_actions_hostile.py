"""The action dialogs among hostile users (issue 15, item 4 and the dialogs' part of item 1).

- Page cache tab, `e` on a file, the file replaced by a symbolic link to another file (or by
  another file) while the confirmation is on screen, then `y`: the other file keeps its pages,
  the dialog says the file changed, and the audit log has the refusal.
- Names in dialogs are shown with printable() and never read as markup: a file named
  ``[@click=app.quit]x`` cannot act, an ESC in a process name is shown as ``\\e``.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from memtop.actions import audit
from memtop.model.process import ProcessIdentity
from memtop.procfs.cachestat import file_cache_stat
from memtop.tui import actions
from memtop.tui.actions import ActionsLogScreen, EvictScreen, TrimScreen
from memtop.tui.pagecache import FileTable, PageCacheTab
from tests.pagecache_support import write_file
from tests.tui.fixed import FIX, feed, fixed_app

MIB = 2**20
HOSTILE = "[@click=app.quit]x\x1b]0;PWNED\x07"


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def proc_tree(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    shutil.copytree(FIX, root)
    (root / "vmstat").write_text("nr_free_pages 1000\npgpgin 1\npgpgout 1\npgmajfault 1\n"
                                 "workingset_refault_file 1\nworkingset_activate_file 1\n")
    return root


def cached(path: Path, size: int = 2 * MIB) -> Path:
    write_file(path, size)
    path.read_bytes()
    assert file_cache_stat(path).cached_bytes >= size
    return path


async def until(pilot, predicate, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the screen did not reach the expected state")
        await pilot.pause(0.05)


def rendered(screen) -> str:
    return str(screen.query_one("#action-text").render())


async def open_on_tree_file(app, pilot, tree: Path) -> PageCacheTab:
    """Page cache tab, d, the directory, Enter, the first file selected."""
    await pilot.press("4")
    await pilot.pause()
    tab = app.query_one(PageCacheTab)
    await pilot.press("d")
    await pilot.pause()
    tab.query_one("#pc-tree-input").value = str(tree)
    await pilot.press("enter")

    def scanned() -> bool:
        app.tick()  # the Collector scans at the next tick (its parts run in the ticking thread here)
        return tab._scan_progress is not None and tab._scan_progress.done and not tab._scanning and bool(
            tab.query_one(FileTable).rows)

    await until(pilot, scanned)
    tab.query_one(FileTable).focus()
    await pilot.press("home")
    await pilot.pause()
    return tab


@pytest.mark.parametrize("swap", ["link", "other-file"])
async def test_e_then_a_swap_then_y_evicts_nothing(tmp_path, proc_tree, state_home, swap):
    # GIVEN a cached file selected on the Page cache tab, and a victim file outside the tree
    tree = tmp_path / "tree"
    tree.mkdir()
    shown = cached(tree / "a.bin")
    victim = cached(tmp_path / "victim.bin")
    app = fixed_app(proc_tree)
    async with app.run_test(size=(120, 40)) as pilot:
        await feed(app, pilot)
        tab = await open_on_tree_file(app, pilot, tree)
        assert tab.selected_files() == [shown]
        # WHEN e opens the confirmation (which checks the file)
        await pilot.press("e")
        screen = app.screen
        assert isinstance(screen, EvictScreen)
        await until(pilot, lambda: screen.phase == "confirm")
        assert str(shown) in rendered(screen)
        # AND the file is swapped while the confirmation is on screen
        if swap == "link":
            (tree / "tmp-link").symlink_to(victim)
            os.rename(tree / "tmp-link", shown)
        else:
            os.rename(victim, shown)  # the victim now has the name that was shown
        victim_now = victim if swap == "link" else shown
        await pilot.press("y")
        await until(pilot, lambda: screen.phase == "done")
        # THEN nothing was evicted (an eviction drops every clean page; the kernel may have
        # reclaimed a few under other load, so: most still cached), and the dialog says why
        assert file_cache_stat(victim_now).cached_bytes >= MIB
        text = rendered(screen)
        assert "not evicted: the file changed since it was checked" in text
        assert ("symbolic link" if swap == "link" else "replaced by another file") in text
        (result,) = screen.results
        assert result.refused and not result.ok
        await pilot.press("escape")
    # AND the audit log has it as refused
    records, _ = audit.read_log()
    (record,) = records
    assert record["action"] == "evict" and record["result"]["refused"] == 1
    assert record["result"]["per_file"][0]["outcome"] == "refused"


async def test_y_pressed_while_checking_evicts_once_the_check_is_done(tmp_path, state_home, monkeypatch):
    # GIVEN a check that takes a while (a slow filesystem): held until the test lets it go
    import threading

    from memtop.actions import evict as evict_module

    path = cached(tmp_path / "data")
    release = threading.Event()
    real_check = evict_module.check_paths

    def slow_check(paths, recursive=False):
        release.wait(30)
        return real_check(paths, recursive)

    monkeypatch.setattr(evict_module, "check_paths", slow_check)
    app = fixed_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await feed(app, pilot)
        screen = EvictScreen([path])
        app.push_screen(screen)
        await pilot.pause()
        # WHEN y is pressed before the check is done
        assert screen.phase == "checking"
        await pilot.press("y")
        await pilot.pause()
        # THEN nothing happens yet, the dialog says it will, and it does once the check is done
        assert screen.phase == "checking" and "evicts once the check is done" in rendered(screen)
        assert file_cache_stat(path).cached_bytes >= 2 * MIB
        release.set()
        await until(pilot, lambda: screen.phase == "done")
        (result,) = screen.results
        assert result.ok and result.after.cached_bytes == 0


async def test_a_hostile_file_name_is_shown_escaped_and_cannot_act(tmp_path, state_home):
    # GIVEN a file whose name is Textual action markup plus an OSC title sequence
    path = cached(tmp_path / HOSTILE)
    app = fixed_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await feed(app, pilot)
        actions.start_evict(app, [path])
        await pilot.pause()
        screen = app.screen
        await until(pilot, lambda: screen.phase == "confirm")
        # THEN the confirmation shows the name with visible escapes, literally
        text = rendered(screen)
        assert "\x1b" not in text and "\x07" not in text
        assert "[@click=app.quit]x\\e]0;PWNED\\a" in text
        await pilot.press("y")
        await until(pilot, lambda: screen.phase == "done")
        assert "[@click=app.quit]x\\e]0;PWNED\\a: cached 2.00 MiB -> 0 B" in rendered(screen)
        await pilot.press("escape")
        # AND the Actions log view shows the logged name literally (no markup, no escape byte)
        await pilot.press("A")
        await pilot.pause()
        log_screen = app.screen
        assert isinstance(log_screen, ActionsLogScreen)
        console = Console(width=300, record=True, file=io.StringIO())
        console.print(log_screen.table)
        shown = console.export_text()
        assert "[@click=app.quit]x\\e]0;PWNED\\a" in shown and "\x1b" not in shown
        for cell in log_screen.table.columns[3].cells:
            assert not any(span.style and "@click" in str(span.style) for span in cell.spans)
        await pilot.press("escape")
        assert app.is_running  # nothing quit the app


async def test_the_trim_dialog_shows_a_hostile_process_name_escaped(tmp_path):
    # GIVEN the trim dialog for a process whose name holds ESC and markup (the process has
    # exited: the prediction refuses at once, with the name still on screen)
    app = fixed_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await feed(app, pilot)
        screen = TrimScreen(ProcessIdentity(999_999_999, 1), "[bold]evil\x1b[2J", root=tmp_path)
        app.push_screen(screen)
        await until(pilot, lambda: screen.phase != "predicting")
        text = rendered(screen)
        assert "[bold]evil\\e[2J" in text and "\x1b" not in text


async def test_the_actions_log_never_reads_a_logged_name_as_markup(state_home):
    # GIVEN an evict record of a file named as Textual action markup
    audit.append(audit.make_record("evict", {"paths": ["/tmp/[@click=app.quit]x"]}, prediction=None,
                                   result={"files": 1, "failed": 0, "dropped_bytes": 0}, duration_s=0.01))
    app = fixed_app()
    async with app.run_test(size=(160, 30)) as pilot:
        await feed(app, pilot)
        # WHEN the log view opens
        await pilot.press("A")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ActionsLogScreen)
        # THEN the name is shown as it is, and no part of it became a clickable action
        console = Console(width=300, record=True, file=io.StringIO())
        console.print(screen.table)
        assert "/tmp/[@click=app.quit]x" in console.export_text()
        for segment in console.render(screen.table):
            assert not (segment.style and segment.style.meta), segment
        await pilot.click("#actions-log-table")
        await pilot.pause()
        assert app.is_running
