"""Sources (a) and (b): files a real child process maps or holds open."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from memtop.procfs import NoSuchProcess
from memtop.procfs.filesources import process_cached_files, process_file_refs, system_cached_files
from tests.pagecache_support import PAGE, drop_cache, read_part, write_file

CHILD = r"""
import ctypes, mmap, os, socket, sys
opened_path, mapped_path, deleted_path = sys.argv[1:4]
held = open(opened_path, "rb")
# libc mmap, not Python's mmap module (which keeps a dup of the fd open)
libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
fd = os.open(mapped_path, os.O_RDONLY)
address = libc.mmap(None, os.fstat(fd).st_size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
os.close(fd)                         # only the mapping keeps it
gone = open(deleted_path, "rb")
os.unlink(deleted_path)              # open but deleted
sock = socket.socket()
r, w = os.pipe()
print("READY", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def holder(tmp_path: Path, children):
    opened = write_file(tmp_path / "opened.bin", 16 * PAGE)
    mapped = write_file(tmp_path / "mapped.bin", 8 * PAGE)
    deleted = write_file(tmp_path / "deleted.bin", 4 * PAGE)
    for p in (opened, mapped, deleted):
        drop_cache(p)
    read_part(opened, 8 * PAGE)  # half of it cached
    read_part(deleted, 4 * PAGE)
    child = children.start([sys.executable, "-c", CHILD, str(opened), str(mapped), str(deleted)])
    return child, opened, mapped, deleted


def test_selected_process_files(holder):
    child, opened, mapped, deleted = holder
    # GIVEN a process holding one file open, one only mapped, one open but deleted
    for _ in range(3):  # (another session may drop caches meanwhile: read again, measure again)
        files = {f.path: f for f in process_cached_files(child.pid)}
        if files[str(opened)].stat.cached_bytes >= 7 * PAGE and files[f"{deleted} (deleted)"].stat.cached_bytes >= 3 * PAGE:
            break
        read_part(opened, 8 * PAGE)
        read_part(Path(f"/proc/{child.pid}/fd/{_fd_of(child.pid, deleted)}"), 4 * PAGE)
    # THEN all three are listed with their pid, and measured
    assert str(opened) in files and str(mapped) in files
    assert f"{deleted} (deleted)" in files
    assert files[str(opened)].pids == (child.pid,)
    assert abs(files[str(opened)].stat.cached_bytes - 8 * PAGE) <= PAGE
    assert files[str(opened)].stat.size_bytes == 16 * PAGE
    # the deleted file is reached through /proc/PID/fd/N: its pages are still there
    assert abs(files[f"{deleted} (deleted)"].stat.cached_bytes - 4 * PAGE) <= PAGE
    # the interpreter itself is mapped
    assert any("python" in p or "libpython" in p for p in files)
    # sockets and pipes are not files with page cache
    assert not any(p.startswith(("socket:", "pipe:")) for p in files)


def _fd_of(pid: int, path: Path) -> str:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(path)):
            return fd
    raise LookupError(path)


def test_refs_say_how_a_file_is_held(holder):
    child, opened, mapped, _ = holder
    refs = process_file_refs(child.pid)
    assert refs[str(opened)].open and not refs[str(opened)].mapped
    assert refs[str(mapped)].mapped and not refs[str(mapped)].open


def test_system_files_include_the_child(holder):
    child, opened, mapped, _ = holder
    files, held = system_cached_files()
    by_path = {f.path: f for f in files}
    assert child.pid in by_path[str(opened)].pids
    assert child.pid in by_path[str(mapped)].pids
    assert held.processes_seen >= 2
    # one entry per inode: libc is mapped by many processes and listed once
    inodes = [(f.stat.device, f.stat.inode) for f in files if f.stat.device is not None]
    assert len(inodes) == len(set(inodes))


def test_vanished_process_is_no_such_process(children):
    child = children.start([sys.executable, "-c", "print('READY', flush=True)"])
    pid = child.pid
    child.close()
    with pytest.raises(NoSuchProcess):
        process_cached_files(pid)


def test_source_a_counts_every_holder_of_a_file(tmp_path, children):
    """Source (a) lists the selected process's files, and PROCS counts every process that maps or
    holds each one (issue 19: libc showed PROCS 1, the selected process only)."""
    from memtop.collect.pagecache import process_top_files

    opened, mapped = write_file(tmp_path / "o.bin", 4 * PAGE), write_file(tmp_path / "m.bin", 4 * PAGE)
    deleted = [write_file(tmp_path / f"d{i}.bin", PAGE) for i in range(2)]
    first = children.start([sys.executable, "-c", CHILD, str(opened), str(mapped), str(deleted[0])])
    second = children.start([sys.executable, "-c", CHILD, str(opened), str(mapped), str(deleted[1])])
    files = {f.path: f for f in process_top_files(first.pid)}
    # GIVEN two processes holding the same two files (and each its own deleted one)
    for shared in (str(opened), str(mapped)):
        assert {first.pid, second.pid} <= set(files[shared].pids), shared
    # the interpreter's libc is held by both, and by more processes than these two on any machine
    libc = next(f for p, f in files.items() if "/libc.so" in p or "/libc-" in p)
    assert {first.pid, second.pid} <= set(libc.pids) and len(libc.pids) > 2
    # a file only the selected process holds has it alone
    assert files[f"{deleted[0]} (deleted)"].pids == (first.pid,)


def test_the_shared_listing_is_kept_while_young_and_its_age_is_said(tmp_path, children):
    """GIVEN a HeldFilesCache that listed every process's files once
    WHEN a new process opens a file before the listing is due again
    THEN the kept listing (and its age) is returned, the files' bytes are still measured now,
    and once the listing is due (older than its cost allows and than 10 s) the new holder is found."""
    from memtop.collect.pagecache import HeldFilesCache, process_top_files, top_cached_files

    first_file, second_file = write_file(tmp_path / "a.bin", 4 * PAGE), write_file(tmp_path / "b.bin", 4 * PAGE)
    deleted = [write_file(tmp_path / f"d{i}.bin", PAGE) for i in range(2)]
    first = children.start([sys.executable, "-c", CHILD, str(first_file), str(first_file), str(deleted[0])])
    cache = HeldFilesCache(duty=1e9, min_age_s=10.0)  # never due by its cost: only the age decides below
    held, age = cache.get(now=1000.0)
    assert age == 0.0 and str(first_file) in held.files
    second = children.start([sys.executable, "-c", CHILD, str(second_file), str(second_file), str(deleted[1])])

    kept, age = cache.get(now=1007.0)
    assert kept is held and age == 7.0
    assert str(second_file) not in kept.files
    # the bytes of a kept listing are measured at this call: reading a file shows at once
    drop_cache(first_file)
    read_part(first_file, 4 * PAGE)
    files, _ = top_cached_files(held=kept)
    assert {f.path: f for f in files}[str(first_file)].stat.cached_bytes >= 3 * PAGE
    # source (a) reads the selected process's own files now, and the holders from the listing
    own = {f.path: f for f in process_top_files(second.pid, holders=kept)}
    assert own[str(second_file)].pids == (second.pid,)

    cache.duty = 0.0  # not due by its cost any more, but younger than min_age_s: kept
    assert cache.get(now=1008.0) == (held, 8.0)
    fresh, age = cache.get(now=1010.0)  # min_age_s (10 s) old: listed again
    assert fresh is not held and age == 0.0
    assert second.pid in fresh.files[str(second_file)][1]
    assert first.pid in fresh.files[str(first_file)][1]


def test_memtops_own_proc_files_are_not_listed_its_other_files_are(tmp_path):
    """memtop's sampler holds a /proc/PID/stat per process: procfs, no page cache, and each was
    stat'ed at every measuring run of source (b). This process stands for memtop: it holds one
    such file and a regular file; the listing keeps the regular file (and its libraries) only."""
    from memtop.procfs.filesources import held_files

    regular = write_file(tmp_path / "held.bin", 4 * PAGE)
    fds = [os.open(f"/proc/{os.getpid()}/stat", os.O_RDONLY), os.open(regular, os.O_RDONLY)]
    try:
        names = set(held_files([os.getpid()]).files)
        assert str(regular) in names
        assert any(name.endswith("/libc.so.6") for name in names)
        assert not [name for name in names if name.startswith("/proc/")]
        # the process's own listing (source (a), process_file_refs) still names it
        assert f"/proc/{os.getpid()}/stat" in process_file_refs(os.getpid())
    finally:
        for fd in fds:
            os.close(fd)


def test_a_directory_scans_files_count_their_holders_by_inode(tmp_path, children):
    """Source (c): PROCS of a scanned file is every process that maps or holds it, found by
    device and inode (it showed "-", none, for every file of a scan). A file held under another
    name (a hard link outside the tree) counts; a file nobody holds has none."""
    from memtop.collect.collector import Collector
    from memtop.collect.parts import default_parts
    from memtop.collect.sampler import Sampler
    from memtop.procfs import PROC

    tree = tmp_path / "tree"
    tree.mkdir()
    opened, mapped, alone = (write_file(tree / n, 4 * PAGE) for n in ("opened.bin", "mapped.bin", "alone.bin"))
    elsewhere = tmp_path / "elsewhere.bin"
    os.link(mapped, elsewhere)  # the child maps the tree's mapped.bin by this other name
    deleted = write_file(tmp_path / "deleted.bin", PAGE)
    child = children.start([sys.executable, "-c", CHILD, str(opened), str(elsewhere), str(deleted)])
    collector = Collector(PROC, parts=default_parts(PROC), sampler=Sampler(PROC), workers=0)
    try:
        collector.set_params("tree", root=str(tree), scan=1)
        collector.want("test", ("tree",))
        scanned = collector.tick().get("tree")  # the scan, with the holders
        measured = collector.tick().get("tree")  # a short tree is measured again at each tick
    finally:
        collector.close()
    for view in (scanned, measured):
        pids = {f.path: f.pids for f in view.files}
        assert set(pids) == {str(opened), str(mapped), str(alone)}
        assert child.pid in pids[str(opened)] and child.pid in pids[str(mapped)]
        assert pids[str(alone)] == ()
        assert view.holders_note.startswith("holders from ") and " processes" in view.holders_note
