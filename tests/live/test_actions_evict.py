"""memtop evict on real files and on every odd kind of path, and drop-caches (kept to one real
drop: it affects the whole machine)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from memtop.actions.evict import evict_paths
from memtop.procfs.cachestat import file_cache_stat
from tests.support import IS_ROOT

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[2]
MIB = 2**20


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def memtop_cli(*args, user=None, timeout=30):
    argv = [sys.executable, "-m", "memtop", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def cached_file(path: Path, size: int) -> Path:
    """A file written, flushed to disk and read back: all clean pages in the page cache."""
    path.write_bytes(os.urandom(size))
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        while f.read(MIB):
            pass
    return path


def audit(state_home: Path) -> list[dict]:
    return [json.loads(line) for line in (state_home / "memtop" / "actions.log").read_text().splitlines()]


def test_evict_a_cached_file_reports_before_and_after(tmp_path, state_home):
    path = cached_file(tmp_path / "data", 8 * MIB)
    assert file_cache_stat(path).cached_bytes >= 8 * MIB
    done = memtop_cli("evict", str(path), "--json")
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)["results"]
    assert result["ok"] and result["cached_before_bytes"] >= 8 * MIB
    assert result["cached_after_bytes"] == 0 and result["dropped_bytes"] >= 8 * MIB
    assert file_cache_stat(path).cached_bytes == 0  # an independent read agrees
    (line,) = audit(state_home)
    assert line["action"] == "evict" and line["result"]["dropped_bytes"] >= 8 * MIB


def test_sync_writes_dirty_pages_so_they_can_be_dropped(tmp_path):
    path = tmp_path / "dirty"
    path.write_bytes(os.urandom(4 * MIB))  # dirty pages, not written back yet
    (result,) = evict_paths([path], sync=True, log=False)
    assert result.ok and result.synced
    assert result.after.cached_bytes == 0 and result.kept_dirty_bytes == 0


def test_dirty_pages_kept_are_reported(tmp_path):
    path = tmp_path / "dirty"
    path.write_bytes(os.urandom(4 * MIB))
    (result,) = evict_paths([path], log=False)
    assert result.ok
    # Whatever writeback had not done yet stays cached, and is reported as kept, not dropped.
    assert result.after.cached_bytes >= result.kept_dirty_bytes
    if result.before.dirty_bytes:
        assert result.kept_dirty_bytes > 0
        from memtop.commands.evict import describe

        assert "could not be dropped" in describe(result)


def test_pages_that_stay_cached_are_reported_and_make_the_exit_status_1(tmp_path, children):
    # GIVEN a clean cached file of which a process maps (and has touched) the first 2 MiB
    path = cached_file(tmp_path / "mapped", 8 * MIB)
    child = children.start([sys.executable, "-c", (
        "import mmap, sys\n"
        f"f = open({str(path)!r}, 'rb'); m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n"
        "sum(m[i] for i in range(0, 2 * 2**20, 4096))\n"
        "print('READY', flush=True); sys.stdin.readline()\n")])
    # WHEN it is evicted
    done = memtop_cli("evict", str(path))
    # THEN the line says what was dropped and what stayed and why, and the exit status is 1
    assert done.returncode == 1, done.stdout + done.stderr
    line, summary = done.stdout.splitlines()
    assert "dropped 6.00 MiB clean" in line
    assert "2.00 MiB stayed cached for other reasons (mapped by a process" in line and "[partly evicted]" in line
    assert summary.startswith("0 of 1 file evicted completely; 1 partly")
    assert file_cache_stat(path).cached_bytes == 2 * MIB  # an independent read agrees
    # and the JSON says the same
    (result,) = json.loads(memtop_cli("evict", str(path), "--json").stdout)["results"]
    assert result["outcome"] == "partial" and result["other_kept_bytes"] == 2 * MIB


def test_odd_paths_each_get_a_clear_result_and_nothing_blocks(tmp_path):
    regular = cached_file(tmp_path / "regular", MIB)
    directory = tmp_path / "dir"
    directory.mkdir()
    cached_file(directory / "inside", MIB)
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading would block forever with no writer
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        paths = [regular, directory, loop, fifo, sock_path, "/dev/null", tmp_path / "missing"]
        done = memtop_cli("evict", *map(str, paths), timeout=20)
    finally:
        sock.close()
    assert done.returncode == 1  # some paths could not be evicted
    lines = done.stdout.splitlines()
    by_path = {line.split(": ", 1)[0]: line for line in lines if ": " in line}
    assert "dropped" in by_path[str(regular)]
    assert "a directory: add -r" in by_path[str(directory)]
    assert "symlink loop" in by_path[str(loop)]
    assert "a FIFO: only regular files" in by_path[str(fifo)]
    assert "a socket" in by_path[str(sock_path)]
    assert "a character device" in by_path["/dev/null"]
    assert "no such file" in by_path[str(tmp_path / "missing")]
    assert lines[-1].startswith("1 of 7 files evicted completely; 6 not evicted;")


def test_recursive_evicts_regular_files_only(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    a = cached_file(tree / "a", MIB)
    b = cached_file(tree / "sub" / "b", MIB)
    os.mkfifo(tree / "sub" / "fifo")
    os.symlink("/etc/passwd", tree / "link")
    results = evict_paths([tree], recursive=True, log=False)
    assert [r.path for r in results] == [str(a), str(b)]
    assert all(r.ok and r.after.cached_bytes == 0 for r in results)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to switch to another user")
def test_unreadable_file_for_another_user(tmp_path):
    secret = cached_file(tmp_path / "secret", MIB)
    secret.chmod(0o600)
    tmp_path.chmod(0o755)
    done = memtop_cli("evict", str(secret), user=65534)
    assert done.returncode == 1
    assert f"{secret}: not evicted: permission denied" in done.stdout
    assert file_cache_stat(secret).cached_bytes >= MIB  # nothing was dropped


def test_read_only_disables_evict(tmp_path):
    path = cached_file(tmp_path / "data", MIB)
    done = memtop_cli("--read-only", "evict", str(path))
    assert done.returncode == 1 and "read-only" in done.stderr
    assert file_cache_stat(path).cached_bytes >= MIB


@pytest.mark.skipif(not IS_ROOT, reason="dropping caches needs root")
def test_drop_caches_drops_clean_page_cache(tmp_path, state_home):
    # The one machine-wide drop in the suite: level 1 (page cache only).
    path = cached_file(tmp_path / "data", 4 * MIB)
    done = memtop_cli("drop-caches", "1", "--yes", "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["ok"] and doc["level"] == 1
    assert set(doc["before_bytes"]) >= {"MemAvailable", "Cached", "SReclaimable"}
    assert set(doc["after_bytes"]) >= {"MemAvailable", "Cached", "SReclaimable"}
    assert file_cache_stat(path).cached_bytes == 0  # our clean file was dropped with the rest
    (line,) = audit(state_home)
    assert line["action"] == "drop-caches" and line["result"]["ok"]


@pytest.mark.skipif(not IS_ROOT, reason="needs root to switch to another user")
def test_drop_caches_refused_for_non_root_and_without_confirmation():
    nobody = memtop_cli("drop-caches", "3", "--yes", user=65534)
    assert nobody.returncode == 1 and "only root" in nobody.stderr
    unconfirmed = memtop_cli("drop-caches", "1")  # stdin is not a terminal
    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
    bad = memtop_cli("drop-caches", "4")
    assert bad.returncode == 2


def test_a_pseudo_file_has_nothing_to_evict_and_says_so():
    """`memtop evict /proc/self/status` said "evicted" and exited 0, while `memtop cache` on the
    same path exits 1: procfs has no page cache to drop (second fresh-eyes tour)."""
    done = memtop_cli("evict", "/proc/self/status", timeout=20)
    assert done.returncode == 1
    assert done.stdout.startswith("/proc/self/status: not evicted: procfs: a pseudo filesystem, no page cache")
    assert "evicted;" not in done.stdout.splitlines()[0]
