"""A recording in the first file format (schema 1, fields by position), made by the code of that
version (tests/fixtures/record/make_v1.py), still replays: every figure the reader rebuilds
equals what that version's reader rebuilt from the same file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from memtop.output.record import RecordReader
from tests.fixtures.record.make_v1 import plain

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "fixtures" / "record"
WORKTREE = HERE.parents[1]


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((FIXTURE / "v1.expected.json").read_text())


def same(expected, actual, where="") -> None:
    """``actual`` holds everything ``expected`` holds (a field added since is not compared)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        for key, value in expected.items():
            assert key in actual, f"{where}.{key} is gone"
            same(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (e, a) in enumerate(zip(expected, actual)):
            same(e, a, f"{where}[{i}]")
    else:
        assert actual == expected, where


def test_a_version_1_recording_replays_with_every_figure(expected):
    reader = RecordReader(FIXTURE / "v1.db")
    try:
        same(expected["meta"], plain(reader.meta), "meta")
        assert reader.seqs == expected["seqs"]
        for i, tick in enumerate(expected["ticks"]):
            # the parts that version rebuilt (a version-1 file has none of the sections added since)
            same(tick, plain(reader.load(i, frozenset({"kernel", "pressure"}))), f"tick {i}")
            assert not reader.load(i).taken
        for pid, series in expected["rss_series"].items():
            start = next(s for p, s, *_ in reader.procs.values() if p == int(pid))
            assert [list(point) for point in reader.rss_series(int(pid), start)] == series
        assert reader.verify() > 0
    finally:
        reader.close()
    # GIVEN what the fixture holds: the growth, the process that came and the one that went
    pids = [[v["sample"]["identity"][0] for v in t["snapshot"]["processes"]] for t in expected["ticks"]]
    assert pids == [[12428, 12427], [12428, 12427], [12428, 12427, 12500], [12428, 12500]]
    assert expected["ticks"][1]["snapshot"]["processes"][0]["sample"]["rss_bytes"] == 90_000 * 1024
    assert all(t["kernel"]["slabs"] and t["pressure"]["tree"] and t["vmstat"] for t in expected["ticks"])


def test_replay_check_accepts_a_version_1_recording():
    result = subprocess.run([sys.executable, "-m", "memtop", "replay", "--check", str(FIXTURE / "v1.db")],
                            cwd=WORKTREE, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "4 ticks from" in result.stdout and "host vm" in result.stdout
