"""memtop on a hostile machine (issue 15): every text command, the exporter, the recorder, and every
tab of the TUI in a real terminal, against processes, files and a mount whose names carry
terminal escapes (title, clear, OSC 52 clipboard), newlines, bidi overrides, bytes that are not
UTF-8, markup, and a 1 MB command line (tests/hostile.py). Nothing raw may reach the output and
nothing may crash; the names must still be shown, escaped."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.hostile import RAW_MARKERS, assert_text_is_safe, hostile_world
from tests.support import IS_ROOT, end_tmux_server, wait_until

REPO = Path(__file__).resolve().parent.parent.parent
pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def world():
    with hostile_world() as w:
        yield w


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def memtop(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtop", *args], cwd=REPO, capture_output=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def checked(done: subprocess.CompletedProcess, what: str, ok=(0,)) -> tuple[str, str]:
    out = assert_text_is_safe(done.stdout, f"{what} stdout")
    err = assert_text_is_safe(done.stderr, f"{what} stderr")
    assert "Traceback" not in err, err[-2000:]
    assert done.returncode in ok, (done.returncode, err[-2000:])
    return out, err


def no_lone_surrogates(text: str, what: str) -> None:
    """Strict JSON parsers reject escaped lone surrogates (json.loads accepts them)."""
    assert not re.search(r"\\ud[89a-f][0-9a-f]{2}", text, re.I), f"{what}: a lone surrogate escape in the JSON"


def test_snapshot_text_and_json(world):
    out, _ = checked(memtop("snapshot", "--top", "400"), "snapshot")
    # The names are shown, escaped: the title payload and the newline one on one row each.
    assert "\\e]0;PWNED-TITLE\\a" in out
    assert "row1\\nFAKE-ROW" in out
    assert not any(line.startswith("FAKE-ROW") for line in out.splitlines())
    assert "\\xff\\xfe" in out and "\\u202e" in out
    out, _ = checked(memtop("snapshot", "--json"), "snapshot --json")
    no_lone_surrogates(out, "snapshot --json")
    doc = json.loads(out)
    by_pid = {p["pid"]: p for p in doc["processes"]}
    bad = by_pid[world.pids["badutf8"]]
    # Exact: a command line that is not UTF-8 is the list of its bytes (memtop/text.py).
    assert isinstance(bad["cmdline"], list) and b"\xff\xfe" in bytes(bad["cmdline"])
    title = by_pid[world.pids["title"]]["cmdline"]  # its arguments name the non-UTF-8 file too: bytes
    assert bytes(title).startswith(b"x \x1b]0;PWNED-TITLE\x07")  # exact
    big = by_pid[world.pids["big"]]["cmdline"]
    assert 16000 < len(big) < 17000 and big.endswith("…")  # memtop keeps 16 KiB of it


@pytest.mark.parametrize("key", ["title", "osc52", "newline", "bidi", "badutf8", "markup"])
def test_explain(world, key):
    pid = world.pids[key]
    out, _ = checked(memtop("explain", str(pid)), f"explain {key}")
    assert out.startswith(f"PID {pid}  ")
    out, _ = checked(memtop("explain", str(pid), "--json"), f"explain --json {key}")
    no_lone_surrogates(out, "explain --json")
    json.loads(out)


def test_cache_and_evict(world, state_home):
    out, _ = checked(memtop("cache", "-r", str(world.files_dir)), "cache -r")
    assert "\\e]0;PWNED-TITLE\\a" in out and "row1\\nFAKE-ROW" in out
    out, _ = checked(memtop("cache", "-r", "--json", str(world.files_dir)), "cache --json")
    no_lone_surrogates(out, "cache --json")
    paths = [f["path"] for f in json.loads(out)["files"]]
    assert any(isinstance(p, list) for p in paths)  # the file whose name is not UTF-8
    target = next(p for p in world.files if "PWNED" in str(p))
    checked(memtop("evict", str(target)), "evict", ok=(0, 1))
    if world.mount_file is not None:
        checked(memtop("cache", str(world.mount_file)), "cache on the hostile mount")


@pytest.mark.skipif(not IS_ROOT, reason="trim calls into another user's process: root")
def test_trim_of_a_hostile_process(world, state_home):
    out, _ = checked(memtop("trim", str(world.pids["title"]), "--yes", "--follow", "0", timeout=180), "trim", ok=(0, 1))
    assert f"PID {world.pids['title']}" in out


def test_exporter_scrape(world):
    proc = subprocess.Popen([sys.executable, "-m", "memtop", "export", "--listen", "127.0.0.1:0", "--interval", "1",
                             "--top", "1000"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        line = b""
        deadline = time.monotonic() + 60
        while b"serving http://" not in line:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([proc.stdout], [], [], left)[0], "no 'serving' line in 60 s"
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "memtop export exited"
        url = re.search(rb"serving (http://\S+/metrics)", line).group(1).decode()
        body = b""
        for _ in range(50):  # the first sample may take a moment
            body = urllib.request.urlopen(url, timeout=30).read()
            if b"memtop_process_rss_bytes" in body:
                break
            time.sleep(0.2)
        text = assert_text_is_safe(body, "/metrics")
        assert "PWNED-TITLE" in text  # the process is exported, its name escaped
        assert proc.poll() is None, "the exporter died"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    out, err = proc.communicate(timeout=20)
    assert_text_is_safe(out, "export stdout")
    assert_text_is_safe(err, "export stderr")


def test_record_and_replay_check(world, tmp_path):
    file = tmp_path / "hostile.memtop"
    checked(memtop("record", "--interval", "0.5", "--duration", "2", str(file), timeout=120), "record")
    out, _ = checked(memtop("replay", "--check", str(file)), "replay --check")
    assert "ticks" in out


# --- the TUI, in a real terminal ---------------------------------------------------------------


class Tmux:
    """A tmux server of the test's own (-L): other sessions' options cannot change its size."""

    def __init__(self, name: str):
        self.name = name

    def run(self, *args) -> str:
        # Not the test process's COLUMNS/LINES (set under pytest): the server would hand them to
        # memtop, and Textual would believe them over the pane's size.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        return subprocess.run(["tmux", "-L", self.name, *args], check=True, capture_output=True, text=True,
                              timeout=20, env=env).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: run `make test`, which installs it as root")
    t = Tmux(f"memtop-hostile-{os.getpid()}")
    yield t
    end_tmux_server(t.name, timeout=20)


def _run_in_tmux(tmux: Tmux, tmp_path: Path, command: str) -> Path:
    """Start ``command`` in a 160x45 tmux pane whose every output byte is copied to a file."""
    raw = tmp_path / f"{tmux.name}.raw"
    raw.touch()
    tmux.run("new", "-d", "-s", tmux.name, "-x", "160", "-y", "45", "-e", "PYTHONPATH=" + str(REPO),
             f"cd {REPO} && exec {command}")
    tmux.run("set-option", "-t", tmux.name, "set-clipboard", "on")
    tmux.run("pipe-pane", "-o", "-t", tmux.name, f"cat >> {raw}")
    return raw


def _check_terminal(tmux: Tmux, raw: Path) -> bytes:
    data = raw.read_bytes()
    for marker in RAW_MARKERS:
        assert marker not in data, f"raw {marker!r} reached the terminal"
    assert "PWNED" not in tmux.run("display", "-p", "-t", tmux.name, "#{pane_title}")
    buffers = subprocess.run(["tmux", "-L", tmux.name, "list-buffers"], capture_output=True, text=True).stdout
    assert "PWNED" not in buffers, "an OSC 52 clipboard write got through"
    return data


@pytest.mark.skipif(not IS_ROOT, reason="the hostile mount and other users' processes need root")
def test_every_tab_in_a_real_terminal(world, tmux, tmp_path):
    pid = world.pids["title"]
    raw = _run_in_tmux(tmux, tmp_path, f"{sys.executable} -m memtop --interval 1 --pid {pid}")
    wait_until(lambda: "COMMAND" in tmux.screen(), timeout=40)
    # Processes: the hostile names are listed, escaped; the one asked for is selected.
    wait_until(lambda: "\\e]0;PWNED-TITLE\\a" in tmux.screen(), timeout=20)
    tmux.keys("Enter")  # open the selected process in Layers
    wait_until(lambda: f"PID {pid} x \\e]0;PWNED-TITLE" in tmux.screen() and "malloc_trim" in tmux.screen(), timeout=30)
    # Page cache opens on (b): the files of all processes, the hostile ones among them.
    for key, expect in (("3", "arena"), ("4", "cached   held by"), ("5", "slab"), ("6", "Shmem"),
                        ("7", "PSI"), ("1", "COMMAND")):
        tmux.keys(key)
        try:
            wait_until(lambda: expect.lower() in tmux.screen().lower(), timeout=20)
        except TimeoutError:
            pytest.fail(f"after {key!r}: {expect!r} not on screen:\n{tmux.screen()}")
        time.sleep(1.5)
    # The markup name shows with its brackets (it was not read as markup).
    tmux.keys("/")
    wait_until(lambda: "filter:" in tmux.screen(), timeout=10)
    tmux.keys("-l", str(world.pids["markup"]))  # a PID filter is exact
    try:
        wait_until(lambda: "[@click=app.quit]clickme" in tmux.screen(), timeout=20)
    except TimeoutError:
        pytest.fail(f"the markup-named process is not shown as it is named:\n{tmux.screen()}")
    data = _check_terminal(tmux, raw)
    assert b"\\e]0;PWNED-TITLE\\a" in data  # shown, escaped
    memtop_pid = int(tmux.run("display", "-p", "-t", tmux.name, "#{pane_pid}").strip())
    tmux.keys("Escape")
    time.sleep(0.5)  # a key right after Esc would make one Alt+key of the two
    tmux.keys("q")
    wait_until(lambda: not _alive(memtop_pid), timeout=20)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not IS_ROOT, reason="the hostile mount and other users' processes need root")
def test_replay_in_a_real_terminal(world, tmux, tmp_path):
    file = tmp_path / "hostile.memtop"
    checked(memtop("record", "--interval", "0.5", "--duration", "2", str(file), timeout=120), "record")
    raw = _run_in_tmux(tmux, tmp_path, f"{sys.executable} -m memtop replay {file}")
    wait_until(lambda: "COMMAND" in tmux.screen(), timeout=40)
    tmux.keys("/")
    wait_until(lambda: "filter:" in tmux.screen(), timeout=10)
    tmux.keys("-l", "PWNED")
    wait_until(lambda: "\\e]0;PWNED-TITLE\\a" in tmux.screen(), timeout=20)
    tmux.keys("Enter")
    for key in "5712":
        tmux.keys(key)
        time.sleep(1)
    _check_terminal(tmux, raw)
    tmux.keys("q")
