"""memtop never opens a file it holds open itself: closing that second descriptor would drop the
POSIX locks SQLite holds on a recording (fcntl(2)), and a replay could then reset the WAL index
under the recorder. Seen before the rule: the recorder killed by SIGBUS, "locking protocol",
a replay reading a tick whose keyframe it could not see.

Each test holds a real SQLite read transaction on a real WAL file in this process, runs one of
memtop's file readers over that file (the page cache's any-process source, a tree scan, evict)
and then asks the kernel whether this process still holds its lock."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from memtop.actions.evict import evict_paths
from memtop.procfs.cachestat import HELD_BY_MEMTOP, file_cache_stat
from memtop.procfs.filesources import system_cached_files
from memtop.procfs.treescan import scan_tree

pytestmark = pytest.mark.live


def my_locks(path: Path) -> list[str]:
    """The POSIX locks /proc/locks shows for this process on ``path``'s inode."""
    ino = os.stat(path).st_ino
    out = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields:
            continue  # a waiter
        # "1: POSIX  ADVISORY  READ 1234 fd:01:5678 0 EOF"
        if len(fields) >= 6 and fields[1] == "POSIX" and fields[4] == str(os.getpid()) \
                and fields[5].rsplit(":", 1)[-1] == str(ino):
            out.append(line)
    return out


@pytest.fixture
def locked_db(tmp_path):
    """A WAL database with a read transaction open: SQLite holds shared locks on it and its
    WAL index (-shm)."""
    path = tmp_path / "held.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x)")
    writer.execute("INSERT INTO t VALUES (1)")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)
    shm = Path(f"{path}-shm")
    before = my_locks(shm)
    assert before, "SQLite holds no lock on its WAL index: nothing to test"
    try:
        yield path, shm, before
    finally:
        reader.close()
        writer.close()


def test_the_any_process_source_does_not_open_memtops_own_files(locked_db):
    path, shm, before = locked_db
    files, held = system_cached_files()
    mine = {f.stat.path: f.stat for f in files if f.stat.path in (str(path), str(shm))}
    # THEN the files are listed, unmeasured, with the reason; and the locks are still held
    assert mine and all(s.cached_bytes is None and s.reason == HELD_BY_MEMTOP for s in mine.values())
    assert my_locks(shm) == before


def test_a_tree_scan_skips_memtops_own_files_and_measures_the_rest(locked_db):
    path, shm, before = locked_db
    other = path.parent / "other"
    other.write_bytes(b"x" * 8192)
    files, progress = scan_tree(path.parent, threads=1)
    assert [f.path for f in files] == [str(other)]
    assert progress.skipped["held open by memtop"] >= 2  # the database and its -shm (and -wal)
    assert my_locks(shm) == before


def test_one_file_asked_for_is_unknown_and_evict_refuses_it(locked_db):
    path, shm, before = locked_db
    assert file_cache_stat(shm).reason == HELD_BY_MEMTOP
    (result,) = evict_paths([str(shm)], log=False)
    assert not result.ok and HELD_BY_MEMTOP in (result.error or "")
    assert my_locks(shm) == before
    # AND a file memtop does not hold is measured as ever
    other = path.parent / "other"
    other.write_bytes(b"y" * 4096)
    assert file_cache_stat(other).cached_bytes is not None
