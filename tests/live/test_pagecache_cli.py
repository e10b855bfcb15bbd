"""`memtop cache` and the page cache sections of `memtop snapshot --json`, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memtop.commands.snapshot import build_snapshot
from tests.pagecache_support import PAGE, drop_cache, read_part, stable_reading, write_file

WORKTREE = Path(__file__).resolve().parents[2]
FILE_KEYS = {"path", "size_bytes", "cached_bytes", "dirty_bytes", "writeback_bytes", "recently_evicted_bytes", "reason"}


def memtop(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtop", *args], cwd=WORKTREE, capture_output=True,
                          text=True, timeout=60)


def test_cache_json_half_cached_file(tmp_path: Path):
    path = write_file(tmp_path / "half.bin", 64 * PAGE)
    drop_cache(path)
    runs = []

    def measure():
        run = memtop("cache", "--json", str(path))
        runs.append(run)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)["files"][0]["cached_bytes"]

    cached, independent = stable_reading(path, 32 * PAGE, measure)
    doc = json.loads(runs[-1].stdout)
    assert set(doc) == {"files"}
    (entry,) = doc["files"]
    assert set(entry) == FILE_KEYS
    assert entry["path"] == str(path) and entry["size_bytes"] == 64 * PAGE
    assert abs(entry["cached_bytes"] - 32 * PAGE) <= PAGE
    if independent is not None:
        assert abs(cached - independent) <= PAGE
    assert entry["dirty_bytes"] == 0 and entry["reason"] is None


def test_a_hard_link_is_listed_by_name_and_counted_once_in_the_total(tmp_path: Path):
    """vmtouch counts a file with two names once; the total counted its pages twice (a tree of
    /usr/bin: perl and perl5.36.0), and a page-rounded total read 105 %."""
    a = write_file(tmp_path / "a.bin", 8 * PAGE - 100)  # a partly used last page
    os.link(a, tmp_path / "b.bin")
    c = write_file(tmp_path / "c.bin", 4 * PAGE)
    for path in (a, c):
        drop_cache(path)
        read_part(path, 8 * PAGE)
    run = memtop("cache", "-r", str(tmp_path))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split()[-1] for line in lines[1:-1]] == [str(a), str(tmp_path / "b.bin"), str(c)]
    total = lines[-1].split()
    assert " ".join(total[:3]) == "48.0 KiB 100%"  # 8 + 4 pages: a.bin's once
    assert lines[-1].endswith("total of 2 files (+1 hard link to them, counted once)")


def test_cache_text_recursive_and_errors(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    write_file(tmp_path / "a.bin", 4 * PAGE)
    write_file(tmp_path / "sub" / "b.bin", 2 * PAGE)
    os.mkfifo(tmp_path / "fifo")
    run = memtop("cache", "-r", str(tmp_path))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["CACHED", "%", "DIRTY", "RECENT-EVICT", "SIZE", "PATH"]
    assert any(line.endswith(str(tmp_path / "sub" / "b.bin")) for line in lines)
    assert "total of 2 files" in lines[-1]
    assert "skipped 1 FIFO" in run.stderr
    # a directory without -r, and a missing file: exit status 1, with the reason
    run = memtop("cache", str(tmp_path), str(tmp_path / "missing"))
    assert run.returncode == 1
    assert "add -r" in run.stderr and "no such file" in run.stdout
    # the directory alone: its note, and no empty table before it
    run = memtop("cache", str(tmp_path))
    assert run.returncode == 1 and "add -r" in run.stderr and run.stdout == ""
    run = memtop("cache", "--json", str(tmp_path / "missing"))
    assert run.returncode == 1
    assert json.loads(run.stdout)["files"][0]["reason"] == "no such file"
    # usage errors
    assert memtop("cache").returncode == 2
    run = memtop("cache", "--limit", "0", str(tmp_path))
    assert run.returncode == 2 and "--limit" in run.stderr  # a usage error (issue 19)


def test_snapshot_sections(tmp_path: Path, children):
    path = write_file(tmp_path / "held.bin", 32 << 20)
    read_part(path, 32 << 20)
    child = children.start([sys.executable, "-c",
                            f"f = open({str(path)!r}, 'rb'); print('READY', flush=True); input()"])
    for _ in range(3):  # (another session may drop caches meanwhile: read again)
        doc = build_snapshot()
        pc = doc["pagecache"]
        if any(f["path"] == str(path) for f in pc["files"]):
            break
        read_part(path, 32 << 20)
    assert pc["files_total"] >= len(pc["files"]) > 0
    cached = [f["cached_bytes"] for f in pc["files"] if f["cached_bytes"] is not None]
    assert cached == sorted(cached, reverse=True)
    held = [f for f in pc["files"] if f["path"] == str(path)]
    assert held and child.pid in held[0]["pids"]
    vm = doc["vmstat"]
    assert 0.3 < vm["interval_s"] < 5
    assert set(vm["rates"]) >= {"pgpgin", "pgpgout", "pgmajfault", "workingset_refault_file",
                                "workingset_refault_anon", "workingset_activate_file"}
    assert all(v is None or v >= 0 for v in vm["rates"].values())
    assert vm["units"]["pgpgin"] == "KiB/s"


def test_cache_top_shows_the_most_cached_of_all_scanned(tmp_path: Path):
    """`--limit 5 --sort cached` sorted the first 5 files scanned, not the 5 most cached (a
    helper's tour): --top keeps the first N of all files in the chosen order."""
    sizes = {"a": 1, "b": 3, "c": 2, "d": 5, "e": 4, "f": 6}  # pages; f is dropped from the cache
    for name, pages in sizes.items():
        write_file(tmp_path / name, pages * PAGE)
        read_part(tmp_path / name, pages * PAGE)
    drop_cache(tmp_path / "f")
    out = memtop("cache", "-r", "--sort", "cached", "--top", "2", "--json", str(tmp_path))
    assert out.returncode == 0, out.stderr
    paths = [Path(f["path"]).name for f in json.loads(out.stdout)["files"]]
    assert paths == ["d", "e"], paths
    assert "2 of 6 files shown (--top)" in out.stderr
