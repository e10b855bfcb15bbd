"""memtop in a real terminal (tmux), as a user runs it: Pilot tests use Textual's headless driver,
so only this exercises the driver memtop picks for a terminal (memtop/tui/driver.py)."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memtop.tui.driver import INPUT_THREAD_NAME, driver_class
from tests.support import end_tmux_server, wait_until

ROOT = Path(__file__).resolve().parent.parent.parent


def _thread_wakeups(pid: int) -> dict[tuple[int, str], int]:
    """Voluntary context switches of each thread (each time it slept and was woken), by
    (tid, name)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status if ":" in line)
        out[(int(tid), fields["Name"].strip())] = int(fields["voluntary_ctxt_switches"])
    return out


class Tmux:
    """One session on a tmux server of its own (-L): a test never races another server's exit."""

    def __init__(self, name: str):
        self.name = f"{name}-{time.monotonic_ns()}"

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.name, *args], check=True, capture_output=True, text=True,
                              timeout=10).stdout

    def close(self) -> None:
        end_tmux_server(self.name)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)


@pytest.fixture
def tmux():
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: run `make test`, which installs it as root")
    session = Tmux(f"memtop-test-{os.getpid()}")
    yield session
    try:  # shown with a failure's report (pytest prints a passing test's output nowhere)
        print("the terminal at the end of the test:\n" + session.screen())
    except (OSError, subprocess.SubprocessError) as error:
        print(f"the terminal at the end of the test: unreadable ({error})")
    session.close()


def test_the_size_is_the_terminals_not_stale_columns_and_lines(tmux):
    """A parent that exported COLUMNS and LINES (GNU readline sets them in its process, and
    children inherit them: a pytest run did) must not freeze memtop at that size."""
    tmux.run("new", "-d", "-s", tmux.name, "-x", "120", "-y", "40", "-e", "PYTHONPATH=" + str(ROOT),
             "-e", "COLUMNS=80", "-e", "LINES=24", f"cd {ROOT} && exec {sys.executable} -m memtop")
    wait_until(lambda: "COMMAND" in tmux.screen() and "processes" in tmux.screen(), timeout=30)
    assert "8 Containers" in tmux.screen()  # the whole tab bar: 120 columns, not 80
    # 40 lines, the last one the footer (drawn a moment after the table on the first screen)
    wait_until(lambda: len(tmux.screen().rstrip("\n").split("\n")) == 40 and tmux.screen().split("\n")[39].strip(),
               timeout=10)
    tmux.run("resize-window", "-t", tmux.name, "-x", "100", "-y", "30")
    wait_until(lambda: len(tmux.screen().rstrip("\n").split("\n")) == 30 and "8 Containers" in tmux.screen(),
               timeout=10)
    tmux.keys("q")


def test_the_live_view_keeps_its_own_memory_small(tmux):
    """Issue 20, item 5: the TUI caps its malloc arenas at two (memtop/tui/ownheap.py; read back
    from its heap by memtop's own walker) and never loads libssl/libcrypto (asyncio would, for
    nothing: 3.3 MiB of RSS). `memtop export` still imports ssl (tests/live/test_export_*)."""
    from memtop.heap import analyze

    tmux.run("new", "-d", "-s", tmux.name, "-x", "120", "-y", "40", "-e", "PYTHONPATH=" + str(ROOT),
             f"cd {ROOT} && exec {sys.executable} -m memtop")
    wait_until(lambda: "COMMAND" in tmux.screen() and "processes" in tmux.screen(), timeout=30)
    pid = int(tmux.run("display", "-p", "-t", tmux.name, "#{pane_pid}").strip())
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "python" in maps and "libc.so" in maps
    assert "libssl" not in maps and "libcrypto" not in maps
    # mp_ is read with a consistent walk; memtop's heap moves while it starts: walk until one is.
    reports = []
    wait_until(lambda: reports.append(analyze(pid)) or reports[-1].tunables is not None, timeout=30)
    assert reports[-1].tunables.arena_max == 2
    tmux.keys("q")
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=10)


def test_keys_work_and_the_idle_input_thread_sleeps(tmux):
    # Not a skip: the pinned Textual is the one the driver was read from (tests/unit/test_pins.py).
    assert driver_class() is not None, "memtop's input driver is off for this Textual: pin and KNOWN_TEXTUAL disagree"
    tmux.run("new", "-d", "-s", tmux.name, "-x", "120", "-y", "40", "-e", "PYTHONPATH=" + str(ROOT),
             f"cd {ROOT} && exec {sys.executable} -m memtop")
    pid = int(tmux.run("display", "-p", "-t", tmux.name, "#{pane_pid}").strip())
    wait_until(lambda: "COMMAND" in tmux.screen() and "processes" in tmux.screen(), timeout=30)

    # Idle on the Processes tab: Textual's own input thread wakes 10 times a second (40 in
    # 4 s); memtop's, named by the driver, sleeps until a key. (The other threads wake with the
    # 2 s tick and the UI's timers: how often depends on the load, so they are not counted.)
    time.sleep(2)
    before = _thread_wakeups(pid)
    time.sleep(4)
    after = _thread_wakeups(pid)
    wakes = {key: after[key] - before[key] for key in after if key in before}
    input_threads = [n for (_tid, name), n in wakes.items() if name == INPUT_THREAD_NAME]
    assert len(input_threads) == 1, wakes
    assert input_threads[0] <= 2, wakes

    # The filter: typed keys arrive, and a lone Esc (which the parser must time out) clears it.
    tmux.keys("/")
    wait_until(lambda: "filter:" in tmux.screen(), timeout=10)
    tmux.keys("python")
    wait_until(lambda: "matching 'python'" in tmux.screen(), timeout=10)
    tmux.keys("Escape")
    wait_until(lambda: "matching" not in tmux.screen(), timeout=10)
    tmux.keys("5")
    wait_until(lambda: "Slab" in tmux.screen() or "slab" in tmux.screen(), timeout=10)

    # q quits: the exit wakes the sleeping input thread.
    tmux.keys("q")
    wait_until(lambda: not _running(pid), timeout=20)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# A launcher that starts memtop in a session of its own (so the terminal's hangup sends it no
# SIGHUP: only the end of input tells) and writes its PID to a file.
_SETSID_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.setsid()
    with open(sys.argv[1], "w") as f:
        f.write(str(os.getpid()))
    os.execv(sys.executable, [sys.executable, "-m", "memtop"])
os.waitpid(pid, 0)
"""


@pytest.mark.parametrize("how", ["plain", "sighup-ignored", "no-sighup", "no-sighup-textual-driver"])
def test_memtop_exits_when_its_terminal_goes_away(tmux, tmp_path, how):
    """GIVEN memtop started in a tmux pane (as `make run` is), by a parent that may ignore SIGHUP
    (an ignored signal is inherited) or in a session of its own (no SIGHUP at all at hangup)
    WHEN the tmux session is killed (the terminal hangs up)
    THEN memtop exits within seconds instead of spinning on the dead terminal as an orphan."""
    pidfile = tmp_path / "pid"
    env = ["-e", "PYTHONPATH=" + str(ROOT)]
    if how.endswith("textual-driver"):
        env += ["-e", "TEXTUAL_DRIVER=textual.drivers.linux_driver:LinuxDriver"]
    if how == "plain":
        command = f"echo $$ > {pidfile}; exec {sys.executable} -m memtop"
    elif how == "sighup-ignored":
        command = f"trap '' HUP; echo $$ > {pidfile}; exec {sys.executable} -m memtop"
    else:
        launcher = tmp_path / "launch.py"
        launcher.write_text(_SETSID_LAUNCHER)
        command = f"exec {sys.executable} {launcher} {pidfile}"
    tmux.run("new", "-d", "-s", tmux.name, "-x", "120", "-y", "40", *env, f"cd {ROOT} && {command}")
    wait_until(lambda: "COMMAND" in tmux.screen() and "processes" in tmux.screen(), timeout=30)
    pid = int(pidfile.read_text())
    assert _running(pid)
    try:
        tmux.run("kill-session", "-t", tmux.name)
        wait_until(lambda: not _running(pid), timeout=15)
    finally:
        if _running(pid):
            os.kill(pid, 9)


def test_ctrl_c_quits(tmux):
    """Ctrl-C quits, as in top and htop (Textual's default only says how to quit)."""
    tmux.run("new", "-d", "-s", tmux.name, "-x", "120", "-y", "40", "-e", "PYTHONPATH=" + str(ROOT),
             f"cd {ROOT} && exec {sys.executable} -m memtop")
    pid = int(tmux.run("display", "-p", "-t", tmux.name, "#{pane_pid}").strip())
    wait_until(lambda: "COMMAND" in tmux.screen() and "processes" in tmux.screen(), timeout=30)
    tmux.keys("C-c")
    wait_until(lambda: not _running(pid), timeout=20)
