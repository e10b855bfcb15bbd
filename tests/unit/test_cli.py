"""The command line: usage errors exit 2 with a message, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def memtop(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtop", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("value", ["nan", "inf", "0.001", "-1", "abc"])
def test_bad_interval_is_a_usage_error(value):
    out = memtop("--interval", value, "snapshot")
    assert out.returncode == 2 and "--interval" in out.stderr and "Traceback" not in out.stderr


def test_unknown_flag_and_bad_top_are_usage_errors():
    assert memtop("--bogus").returncode == 2
    out = memtop("snapshot", "--top", "-3")
    assert out.returncode == 2 and "at least 1" in out.stderr


def test_missing_pid_is_a_failure_with_one_line():
    out = memtop("snapshot", "--pid", "999999999")
    assert out.returncode == 1
    assert out.stderr.strip() == "memtop: no process with PID 999999999"


def test_the_live_view_without_a_terminal_says_so():
    out = memtop()
    assert out.returncode == 2 and "needs a terminal" in out.stderr


def test_building_the_parser_imports_nothing_only_one_command_needs():
    """Every command's module is imported to build the parser, the TUI's start included: what
    only one command uses is imported when it runs (issue 20 items 3 and 5: 90 -> 66 ms, and
    with the driver's version check 2 MiB less RSS at start)."""
    heavy = ("email.utils", "importlib.metadata", "memtop.guard.config", "memtop.model.heap", "memtop.model.pagecache")
    code = ("import sys; from memtop.cli import build_parser; build_parser(); "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_snapshot_says_how_much_of_the_process_list_it_shows():
    import os
    import re

    out = memtop("snapshot", "--top", "3")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["PID", "USER", "RSS"])
    assert lines[header + 4] == ""  # three rows, then the count
    said = re.fullmatch(r"3 of (\d+) processes, largest RSS first \(--top N shows more\)", lines[header + 5])
    assert said and int(said.group(1)) > 3
    # one process (--pid): nothing to count
    one = memtop("snapshot", "--pid", str(os.getpid()))
    assert one.returncode == 0 and " of 1 process" not in one.stdout and "largest RSS first" not in one.stdout
