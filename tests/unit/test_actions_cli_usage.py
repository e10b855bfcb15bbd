"""Invalid arguments of the action commands are usage errors: argparse's usage, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args, complaint", [
    (["--timeout", "-1"], "argument --timeout: must be more than 0 seconds"),
    (["--timeout", "0"], "argument --timeout: must be more than 0 seconds"),
    (["--timeout", "nan"], "argument --timeout: must be more than 0 seconds"),
    (["--timeout", "soon"], "argument --timeout: not a number of seconds"),
    (["--follow", "-5"], "argument --follow: must be at least 0 seconds"),
    (["--follow", "inf"], "argument --follow: must be at least 0 seconds"),
])
def test_trim_bad_seconds_are_usage_errors(args, complaint):
    done = subprocess.run([sys.executable, "-m", "memtop", "trim", "1", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: memtop trim ")
    assert complaint in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_trim_bad_pid_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "memtop", "trim", "0"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "argument PID: not a PID" in done.stderr
