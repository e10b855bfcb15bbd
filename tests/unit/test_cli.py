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
