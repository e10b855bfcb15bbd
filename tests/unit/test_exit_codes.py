"""One rule for every command (issue 19, item 5): 0 success, 1 failure (one line on stderr,
"memtop: ..."), 2 usage error (a malformed argument: argparse's usage line, or the command's own
check of a setting). A PID that is not a positive integer is a usage error everywhere; a PID
that is well formed but names no process is a failure."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from memtop.commands import COMMAND_MODULES

ROOT = Path(__file__).resolve().parents[2]
NO_SUCH_PID = "999999999"


def memtop(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtop", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def usage(done: subprocess.CompletedProcess, command: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.startswith((f"usage: memtop {command}", "usage: memtop ", f"memtop {command}: ")), done.stderr


def failure(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("memtop: ") or "memtop: " in done.stderr.splitlines()[-1], done.stderr


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "file.bin"
    path.write_bytes(b"x" * 8192)
    return path


def test_every_command_has_a_test_here():
    names = {module.rsplit(".", 1)[1].replace("_", "-") for module in COMMAND_MODULES}
    tested = {name.removeprefix("test_").replace("_", "-") for name in globals() if name.startswith("test_")}
    assert names <= tested, f"commands without an exit-status test: {names - tested}"


def test_memtop():
    usage(memtop("--pid", "-1"), "")
    usage(memtop("--pid", "abc"), "")
    usage(memtop("--bogus"), "")
    usage(memtop("--interval", "0"), "")
    out = memtop()  # the live view without a terminal
    assert out.returncode == 2 and "needs a terminal" in out.stderr
    assert memtop("--version").returncode == 0


def test_snapshot():
    usage(memtop("snapshot", "--pid", "-1"), "snapshot")
    usage(memtop("snapshot", "--pid", "0"), "snapshot")
    usage(memtop("snapshot", "--top", "0"), "snapshot")
    failure(memtop("snapshot", "--pid", NO_SUCH_PID))
    assert memtop("snapshot", "--top", "3").returncode == 0
    # memtop's own --pid before the command is the snapshot's (it was silently ignored)
    failure(memtop("--pid", NO_SUCH_PID, "snapshot"))
    mine = json.loads(memtop("--pid", str(os.getpid()), "snapshot", "--json").stdout)
    assert [p["pid"] for p in mine["processes"]] == [os.getpid()]


def test_cache(a_file):
    usage(memtop("cache", "--limit", "-5", str(a_file)), "cache")
    usage(memtop("cache", "--limit", "0", str(a_file)), "cache")
    usage(memtop("cache", "--sort", "nope", str(a_file)), "cache")
    usage(memtop("cache"), "cache")
    failure(memtop("cache", str(a_file.parent / "missing")))
    assert memtop("cache", str(a_file)).returncode == 0


def test_trim():
    usage(memtop("trim", "-1"), "trim")
    usage(memtop("trim", "0"), "trim")
    usage(memtop("trim", "1", "--timeout", "0"), "trim")
    failure(memtop("trim", NO_SUCH_PID, "--yes", "--follow", "0"))


def test_evict(a_file):
    usage(memtop("evict"), "evict")
    failure(memtop("evict", str(a_file.parent / "missing")))
    assert memtop("evict", "--sync", str(a_file)).returncode == 0  # --sync: its pages are dirty


def test_drop_caches():
    usage(memtop("drop-caches", "4"), "drop-caches")
    usage(memtop("drop-caches", "x"), "drop-caches")
    # No --yes and no terminal to confirm on: nothing is done (never --yes here: it would drop the
    # caches of the whole machine)
    failure(memtop("drop-caches", "1"))


def test_explain(children):
    usage(memtop("explain", "-1"), "explain")
    usage(memtop("explain", "abc"), "explain")
    usage(memtop("explain", "1", "--symbols", "nope"), "explain")
    failure(memtop("explain", NO_SUCH_PID))
    child = children.start([sys.executable, "-c", "import sys; print('READY', flush=True); sys.stdin.read()"])
    assert memtop("explain", str(child.pid)).returncode == 0


def test_export():
    usage(memtop("export", "--top", "0"), "export")
    usage(memtop("export", "--listen", "nonsense"), "export")
    usage(memtop("export", "--interval", "0"), "export")
    with socket.socket() as busy:  # a port in use: a failure, not a usage error
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        failure(memtop("export", "--listen", f"127.0.0.1:{busy.getsockname()[1]}"))


def test_record(tmp_path):
    usage(memtop("record"), "record")
    usage(memtop("record", str(tmp_path / "a.db"), "--max-size", "1"), "record")
    usage(memtop("record", str(tmp_path / "a.db"), "--duration", "-5"), "record")
    failure(memtop("record", str(tmp_path / "missing-dir" / "a.db"), "--duration", "1"))
    done = memtop("record", str(tmp_path / "ok.db"), "--duration", "2", "--interval", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    failure(memtop("record", str(tmp_path / "ok.db"), "--duration", "1"))  # never overwritten


def test_replay(tmp_path):
    usage(memtop("replay"), "replay")
    failure(memtop("replay", str(tmp_path / "missing.db")))
    (tmp_path / "not.db").write_bytes(b"not a recording")
    failure(memtop("replay", "--check", str(tmp_path / "not.db")))
    assert memtop("record", str(tmp_path / "ok.db"), "--duration", "1", "--quiet").returncode == 0
    assert memtop("replay", "--check", str(tmp_path / "ok.db")).returncode == 0


def test_guard(tmp_path):
    usage(memtop("guard", "--cooldown", "-5"), "guard")
    usage(memtop("guard", "--min-release", "abc"), "guard")
    usage(memtop("guard", "--max-stops-per-minute", "0"), "guard")
    usage(memtop("guard", "--trigger", "bogus"), "guard")
    failure(memtop("guard", "--config", str(tmp_path / "missing.toml")))
    if os.path.exists("/proc/pressure/memory"):
        assert memtop("guard", "--duration", "1").returncode == 0  # a dry run: touches nothing


def test_help():
    usage(memtop("help", "bogus"), "help")
    assert memtop("help").returncode == 0 and memtop("help", "kernel").returncode == 0


def test_completion():
    usage(memtop("completion"), "completion")
    usage(memtop("completion", "fish"), "completion")
    assert memtop("completion", "bash").returncode == 0
