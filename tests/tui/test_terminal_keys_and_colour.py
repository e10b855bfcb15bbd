"""memtop in a real terminal (tmux) as a user types (issue 19, items 1 and 4): keys typed fast
after a filter go where they should, `o` on Page cache keeps cycling, and NO_COLOR=1 writes no
colour at all (the bytes memtop writes to the terminal are read through tmux's pipe-pane)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import wait_until
from tests.tui.test_terminal import Tmux

ROOT = Path(__file__).resolve().parent.parent.parent
pytestmark = pytest.mark.live

# SGR parameters that set a colour: 30-37 / 90-97 foreground, 40-47 / 100-107 background,
# 38;5;N / 48;5;N (256 colours), 38;2;R;G;B / 48;2;R;G;B (true colour), 58 (underline colour).
# 39 and 49 (the terminal's default colours) set none.
COLOUR_PARAMS = {*map(str, range(30, 38)), *map(str, range(40, 48)), *map(str, range(90, 98)),
                 *map(str, range(100, 108))}


def colour_codes(data: bytes) -> list[str]:
    """Every colour-setting SGR parameter in ``data``."""
    found = []
    for params in re.findall(rb"\x1b\[([0-9;:]*)m", data):
        parts = params.decode().replace(":", ";").split(";")
        i = 0
        while i < len(parts):
            p = parts[i]
            if p in ("38", "48", "58"):
                kind = parts[i + 1] if i + 1 < len(parts) else ""
                n = 3 if kind == "5" else 5 if kind == "2" else 2
                found.append(";".join(parts[i:i + n]))
                i += n
                continue
            if p in COLOUR_PARAMS:
                found.append(p)
            i += 1
    return found


def attributes(data: bytes) -> set[str]:
    return {p for params in re.findall(rb"\x1b\[([0-9;:]*)m", data) for p in params.decode().split(";")}


@pytest.fixture
def tmux():
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: run `make test`, which installs it as root")
    session = Tmux(f"memtop-keys-{os.getpid()}")
    yield session
    try:  # shown with a failure's report (pytest prints a passing test's output nowhere)
        print("the terminal at the end of the test:\n" + session.screen())
    except (OSError, subprocess.SubprocessError) as error:
        print(f"the terminal at the end of the test: unreadable ({error})")
    session.close()


def start(tmux: Tmux, tmp_path: Path, env: dict[str, str]) -> Path:
    raw = tmp_path / "terminal.raw"
    raw.touch()
    args = ["new", "-d", "-s", tmux.name, "-x", "120", "-y", "40", "-e", f"PYTHONPATH={ROOT}"]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    # The environment of the tmux server may have NO_COLOR: the shell line decides.
    unset = "" if "NO_COLOR" in env else "unset NO_COLOR; "
    tmux.run(*args, f"cd {ROOT} && {unset}exec {sys.executable} -m memtop")
    tmux.run("pipe-pane", "-o", "-t", tmux.name, f"cat >> {raw}")
    wait_until(lambda: "COMMAND" in tmux.screen() and "processes" in tmux.screen(), timeout=40)
    return raw


def walk_every_tab(tmux: Tmux) -> None:
    for key, expect in (("2", "Layers"), ("3", "Arenas"), ("4", "files"), ("5", "slab"), ("6", "Shmem"),
                        ("7", "PSI"), ("1", "COMMAND")):
        tmux.keys(key)
        wait_until(lambda: expect.lower() in tmux.screen().lower(), timeout=20)
    tmux.keys("?")
    wait_until(lambda: "memtop help" in tmux.screen(), timeout=10)
    tmux.keys("Escape")
    wait_until(lambda: "memtop help" not in tmux.screen(), timeout=10)


def test_no_color_writes_no_colour(tmux, tmp_path):
    raw = start(tmux, tmp_path, {"NO_COLOR": "1", "TERM": "xterm-256color"})
    walk_every_tab(tmux)
    tmux.keys("Down")  # the cursor row: shown in reverse video, not with a background colour
    wait_until(lambda: raw.stat().st_size > 10_000, timeout=10)
    data = raw.read_bytes()
    codes = colour_codes(data)
    assert not codes, f"NO_COLOR=1, yet {len(codes)} colour codes, e.g. {sorted(set(codes))[:10]}"
    assert {"1", "7"} <= attributes(data)  # bold and reverse carry what colour did
    # The memory bar tells its parts apart by glyph, named in its legend.
    assert "█used" in tmux.screen() and "▒" in tmux.screen()


def test_colour_without_no_color(tmux, tmp_path):
    """The same check finds the colours when NO_COLOR is not set (the check can fail)."""
    raw = start(tmux, tmp_path, {"TERM": "xterm-256color"})
    tmux.keys("5")
    wait_until(lambda: "slab" in tmux.screen().lower(), timeout=20)
    assert colour_codes(raw.read_bytes())


def test_keys_typed_fast_after_a_filter_and_o_on_page_cache(tmux, tmp_path):
    start(tmux, tmp_path, {})
    # / python Enter 2, sent at once: the filter is kept and 2 opens Layers (not "python2")
    tmux.keys("/", "python", "Enter", "2")
    # Layers' own table ("of RSS"), not words the Processes tab shows too: the keys were read
    wait_until(lambda: "of RSS" in tmux.screen() or "no process selected" in tmux.screen().lower(), timeout=20)
    tmux.keys("1")
    wait_until(lambda: "matching 'python'" in tmux.screen(), timeout=20)
    assert "python2" not in tmux.screen()
    tmux.keys("p")
    wait_until(lambda: "PAUSED" in tmux.screen(), timeout=10)
    tmux.keys("p")
    wait_until(lambda: "PAUSED" not in tmux.screen(), timeout=10)
    # Page cache: o o o cycles (b) -> (c) -> (a) -> (b), nothing typed into the path box
    tmux.keys("4")
    wait_until(lambda: "(b) all processes" in tmux.screen(), timeout=20)
    tmux.keys("o", "o", "o")
    # back on (b): had the focus gone into the path box at (c), the next o's would be typed there
    wait_until(lambda: "cached   held by" in tmux.screen(), timeout=20)
    assert not re.search(r"▊\s*oo?\s", tmux.screen())
