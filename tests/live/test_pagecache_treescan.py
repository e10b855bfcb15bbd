"""Source (c): scanning real directory trees, including hostile entries and a 10,000-file tree."""

from __future__ import annotations

import ctypes
import os
import socket
import stat
import struct
import threading
from pathlib import Path

import pytest

from memtop.procfs.treescan import TreeScanError, scan_tree
from tests.pagecache_support import PAGE, drop_cache, fincore_bytes, have_fincore, read_part, write_file
from tests.support import IS_ROOT

N_FILES = 10_000
SMALL = 4 * PAGE


def _make_tree(root: Path) -> list[Path]:
    """100 directories x 100 files of 4 pages, written with O_DIRECT: nothing of them is cached.

    (Writing through the cache would need a sync of the whole machine's dirty data, then a
    DONTNEED per file, to start from "not cached": O_DIRECT skips both.)
    """
    import mmap

    paths = []
    block = mmap.mmap(-1, SMALL)  # page-aligned, as O_DIRECT requires
    block.write(os.urandom(SMALL))
    direct = getattr(os, "O_DIRECT", 0)
    for d in range(100):
        sub = root / f"d{d:02d}"
        sub.mkdir()
        for i in range(N_FILES // 100):
            p = sub / f"f{i:03d}"
            try:
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | direct, 0o644)
            except OSError:  # EINVAL: this filesystem has no O_DIRECT (tmpfs before 6.6)
                direct = 0
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, block)
            finally:
                os.close(fd)
            paths.append(p)
    if not direct:  # (no O_DIRECT: the slow way)
        os.sync()
        for p in paths:
            drop_cache(p)
    return paths


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree10k")
    paths = _make_tree(root)
    # Half of the files cached: every even-numbered file read whole.
    for p in paths[::2]:
        read_part(p, SMALL)
    yield root, paths
    # tmp_path_factory removes the tree


def test_ten_thousand_files_half_cached(big_tree):
    root, paths = big_tree
    # Other sessions on this machine may evict pages or drop caches at any moment: when the
    # read half is found short, it is read again and the tree scanned again (at most 3 times).
    for _ in range(3):
        files, progress = scan_tree(root)
        by_path = {f.path: f for f in files}
        read = [by_path[str(p)] for p in paths[::2]]
        total = sum(f.cached_bytes for f in read)
        if total == (N_FILES // 2) * SMALL:
            break
        for p in paths[::2]:
            read_part(p, SMALL)
    assert progress.done and not progress.truncated and not progress.cancelled
    assert len(files) == N_FILES
    assert set(by_path) == {str(p) for p in paths}
    assert all(f.size_bytes == SMALL for f in files)
    # THEN the files never read have nothing cached, the read ones are whole
    unread = [by_path[str(p)] for p in paths[1::2]]
    assert all(f.cached_bytes == 0 for f in unread), [f for f in unread if f.cached_bytes][:3]
    assert total == (N_FILES // 2) * SMALL
    if have_fincore():
        # AND an independent count (util-linux fincore) of a sample agrees, taken between two scans
        sample = [str(p) for p in paths[:40:2]]
        independent = sum(fincore_bytes(p) for p in sample)
        again = {f.path: f.cached_bytes for f in scan_tree(root, limit=200)[0]}
        ours = sum(by_path[p].cached_bytes for p in sample)
        assert independent == ours or independent == sum(again.get(p, 0) for p in sample)


def test_threads_give_the_same_answer_in_the_same_order(big_tree):
    root, _ = big_tree
    one, _ = scan_tree(root, threads=1)
    four, progress = scan_tree(root, threads=4)
    assert progress.done and len(four) == N_FILES
    assert [f.path for f in four] == [f.path for f in one]
    # (cached figures may move between the two scans under memory pressure; sizes may not)
    assert [f.size_bytes for f in four] == [f.size_bytes for f in one]


def test_limit_stops_the_scan(big_tree):
    root, _ = big_tree
    files, progress = scan_tree(root, limit=250, progress_every=100)
    assert len(files) == 250
    assert progress.truncated and progress.done and progress.files_seen == 250


def test_cancel_from_progress_stops_the_scan(big_tree):
    root, _ = big_tree
    cancel = threading.Event()
    seen = []

    def on_progress(p):
        seen.append(p.files_seen)
        if p.files_seen >= 1000:
            cancel.set()

    files, progress = scan_tree(root, cancel=cancel, progress=on_progress, progress_every=500)
    assert progress.cancelled and progress.done
    assert 1000 <= len(files) < N_FILES
    assert seen == sorted(seen) and 500 <= seen[0] < 1000  # (files are measured in batches)


def test_the_scan_never_switches_the_garbage_collector_off(big_tree):
    """The scan runs in a worker thread: gc.disable() there would pause collection for the
    whole process, the UI thread included (issue 18)."""
    import gc

    root, _ = big_tree
    enabled_during = []

    def on_progress(p):
        enabled_during.append(gc.isenabled())
        if p.files_seen >= 1000:
            raise KeyError("the caller's own error, mid-walk")

    assert gc.isenabled()
    with pytest.raises(KeyError):
        scan_tree(root, progress=on_progress, progress_every=500)
    assert enabled_during and all(enabled_during)
    assert gc.isenabled()


class _Inotify:
    """inotify(7) on one directory, to see which of its entries anything opened (IN_OPEN)."""

    IN_OPEN = 0x20
    IN_NONBLOCK = os.O_NONBLOCK

    def __init__(self, directory: Path):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(self.IN_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self.fd, str(directory).encode(), self.IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")

    def opened(self) -> set[str]:
        names = set()
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return names
            pos = 0
            while pos < len(data):
                _wd, _mask, _cookie, length = struct.unpack_from("iIII", data, pos)
                name = data[pos + 16 : pos + 16 + length].rstrip(b"\0").decode()
                names.add(name)
                pos += 16 + length

    def close(self):
        os.close(self.fd)


def _hostile_tree(root: Path, *, device: bool):
    inside = root / "tree"
    inside.mkdir()
    write_file(inside / "regular.bin", 2 * PAGE)
    os.mkfifo(inside / "fifo")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(inside / "sock"))
    if device:
        os.mknod(inside / "null-dev", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.symlink("loop", inside / "loop")  # a symlink to itself (ELOOP)
    os.symlink("..", inside / "up")  # back to the parent: a directory loop if followed
    os.symlink(str(root / "outside"), inside / "out")  # out of the tree
    (root / "outside").mkdir()
    write_file(root / "outside" / "secret.bin", PAGE)
    os.symlink(str(root / "outside" / "secret.bin"), inside / "secret-link")
    sub = inside / "sub"
    sub.mkdir()
    write_file(sub / "deep.bin", PAGE)
    return inside, sock


def test_hostile_entries_never_block_open_or_escape(tmp_path: Path):
    inside, sock = _hostile_tree(tmp_path, device=IS_ROOT)
    watch = _Inotify(inside)
    try:
        box = {}
        thread = threading.Thread(target=lambda: box.update(result=scan_tree(inside)), daemon=True)
        thread.start()
        thread.join(20)
        assert not thread.is_alive(), "the scan blocked"
        files, progress = box["result"]
        paths = sorted(f.path for f in files)
        # THEN only the two regular files inside the tree were measured
        assert paths == [str(inside / "regular.bin"), str(inside / "sub" / "deep.bin")]
        assert progress.skipped.get("fifo") == 1
        assert progress.skipped.get("socket") == 1
        assert progress.skipped.get("symlink") == 4
        if IS_ROOT:
            assert progress.skipped.get("device") == 1
        # AND nothing but the regular file (and the directory itself) was opened
        opened = watch.opened()
        assert opened <= {"regular.bin", "", "sub"}, opened
        assert "fifo" not in opened and "null-dev" not in opened
    finally:
        watch.close()
        sock.close()


@pytest.mark.skipif(not IS_ROOT, reason="mknod of a device node needs root (CAP_MKNOD)")
def test_device_node_is_skipped_not_opened(tmp_path: Path):
    os.mknod(tmp_path / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    watch = _Inotify(tmp_path)
    try:
        files, progress = scan_tree(tmp_path)
        assert files == [] and progress.skipped == {"device": 1}
        assert "zero" not in watch.opened()
    finally:
        watch.close()


def test_root_errors_are_clear(tmp_path: Path):
    with pytest.raises(TreeScanError, match="no such directory"):
        scan_tree(tmp_path / "missing")
    write_file(tmp_path / "f", 10)
    with pytest.raises(TreeScanError, match="not a directory"):
        scan_tree(tmp_path / "f")
    with pytest.raises(TreeScanError, match="pseudo filesystem"):
        scan_tree("/proc/self")


@pytest.mark.skipif(not IS_ROOT, reason="mounting a proc filesystem inside the tree needs root")
def test_pseudo_filesystems_below_the_root_are_not_entered(tmp_path: Path):
    import subprocess

    write_file(tmp_path / "real.bin", PAGE)
    mnt = tmp_path / "proc"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "proc", "proc", str(mnt)], check=True)
    try:
        files, progress = scan_tree(tmp_path)
        assert [f.path for f in files] == [str(tmp_path / "real.bin")]
        assert progress.skipped.get("pseudo-fs") == 1
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)
