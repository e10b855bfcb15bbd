"""`memtop export --listen/--interval/--top` parsing: bad values are usage errors (exit 2) with one line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from memtop.commands import interval_seconds as interval_arg
from memtop.commands.export import is_loopback, listen_address, top_arg

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9105", ("127.0.0.1", 9105)),
    ("localhost:0", ("localhost", 0)),
    ("[::1]:9105", ("::1", 9105)),
    (":9105", ("0.0.0.0", 9105)),
    ("9105", ("127.0.0.1", 9105)),
    ("0.0.0.0:65535", ("0.0.0.0", 65535)),
])
def test_good_addresses(text, expected):
    assert listen_address(text) == expected


@pytest.mark.parametrize("text, words", [
    ("127.0.0.1:65536", "0-65535"),
    ("127.0.0.1:abc", "not a number"),
    ("127.0.0.1:-1", "not a number"),
    ("127.0.0.1", "HOST:PORT"),
    ("::1:9105", "brackets"),
    ("[::1]9105", "[IPv6]:PORT"),
    ("127.0.0.1:", "not a number"),
    ("127.0.0.1:٣", "not a number"),  # a non-ASCII digit
])
def test_bad_addresses(text, words):
    with pytest.raises(argparse.ArgumentTypeError, match=None) as info:
        listen_address(text)
    assert words in str(info.value)


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("127.3.4.5") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.168.1.1")


def test_interval_and_top_bounds():
    assert interval_arg("0.5") == 0.5 and top_arg("1000") == 1000
    for bad in ("0.1", "nan", "inf", "x", "3601"):
        with pytest.raises(argparse.ArgumentTypeError):
            interval_arg(bad)
    for bad in ("0", "1001", "-3", "2.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            top_arg(bad)


@pytest.mark.parametrize("listen, words", [
    ("127.0.0.1:70000", "the port must be 0-65535, not 70000"), ("nonsense", "expected HOST:PORT"),
    ("localhost:http", "the port 'http' is not a number"),
])
def test_a_bad_listen_address_is_one_line_and_status_2(listen, words):
    result = subprocess.run([sys.executable, "-m", "memtop", "export", "--listen", listen], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("memtop export: bad --listen ")
    assert words in result.stderr


@pytest.mark.parametrize("argv", [["--interval", "0"], ["--top", "0"], ["--interval", "x"]])
def test_usage_errors_exit_2_without_a_traceback(argv):
    result = subprocess.run([sys.executable, "-m", "memtop", "export", *argv], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("memtop export: error: argument")
