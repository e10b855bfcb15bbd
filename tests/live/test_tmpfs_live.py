"""The tmpfs view against real files, mounts, processes and SysV segments made by the tests.

GIVEN a tmpfs mounted for the test (or a directory in /dev/shm when mounting is impossible)
WHEN memtop collects / scans
THEN it reports what the test put there, with the figures an independent stat(2) gives.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from memtop.collect.tmpfs import collect_report, scan_tree
from memtop.commands.snapshot import build_snapshot
from tests.live.tmpfs_targets import HOLDER_C
from tests.support import IS_ROOT, compile_c

MiB = 2**20
pytestmark = pytest.mark.live

_libc = ctypes.CDLL(None, use_errno=True)
_libc.shmat.restype = ctypes.c_void_p
_libc.shmat.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
_libc.shmdt.argtypes = (ctypes.c_void_p,)
_libc.shmctl.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
IPC_RMID = 0


def _mount_tmpfs(path, size="64m") -> bool:
    if not IS_ROOT:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "none", str(path)], capture_output=True)
    return done.returncode == 0


def _umount(path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def tmpfs_dir(tmp_path):
    """A fresh tmpfs of 64 MiB, unmounted at teardown even on failure; else a directory in /dev/shm."""
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    if _mount_tmpfs(mountpoint):
        try:
            yield mountpoint, True
        finally:
            _umount(mountpoint)
    else:
        import shutil
        import tempfile

        fallback = tempfile.mkdtemp(prefix="memtop-test-", dir="/dev/shm")
        try:
            yield __import__("pathlib").Path(fallback), False
        finally:
            shutil.rmtree(fallback, ignore_errors=True)


@pytest.fixture(scope="module")
def holder_binary(gcc):
    return compile_c(HOLDER_C, name="shmholder")


def _write(path, size: int) -> None:
    with open(path, "wb") as f:
        f.write(b"x" * size)


def _find_mount(report, path):
    dev = os.stat(path).st_dev
    for m in report.mounts:
        if (m.info.major, m.info.minor) == (os.major(dev), os.minor(dev)) and m.namespace_pid is None:
            return m
    return None


def test_mount_and_file_of_known_size(tmpfs_dir):
    directory, mounted = tmpfs_dir
    _write(directory / "known.bin", 5 * MiB)
    report = collect_report(smaps=False)
    mount = _find_mount(report, directory)
    assert mount is not None, [m.mountpoint for m in report.mounts]
    if mounted:
        assert mount.mountpoint == str(directory)
        assert mount.size_bytes == 64 * MiB
        assert mount.used_bytes == 5 * MiB  # one file, no other content
        assert mount.inodes_used == 2  # the root directory and the file
    scan = scan_tree(str(directory), mount_key=mount.key)
    (biggest, *_) = scan.largest
    assert biggest.path == str(directory / "known.bin")
    assert (biggest.size_bytes, biggest.allocated_bytes) == (5 * MiB, 5 * MiB)
    assert biggest.owner == ("root" if IS_ROOT else biggest.owner)
    assert scan.files == 1 and not scan.truncated


def test_sparse_file_allocated_less_than_size(tmpfs_dir):
    directory, _ = tmpfs_dir
    path = directory / "sparse.img"
    with open(path, "wb") as f:
        f.truncate(32 * MiB)
        f.seek(8 * MiB)
        f.write(b"y" * 4096)
    _write(directory / "dense.bin", 1 * MiB)
    scan = scan_tree(str(directory))
    by_name = {os.path.basename(e.path): e for e in scan.largest}
    sparse = by_name["sparse.img"]
    assert sparse.size_bytes == 32 * MiB
    assert sparse.allocated_bytes == os.stat(path).st_blocks * 512 == 4096
    # Sorted by what a file really holds: the dense 1 MiB file before the 32 MiB sparse one.
    assert [os.path.basename(e.path) for e in scan.largest] == ["dense.bin", "sparse.img"]
    assert scan.total_size_bytes == 33 * MiB and scan.total_allocated_bytes == 1 * MiB + 4096


def test_scan_never_follows_symlinks_nor_crosses_mounts(tmpfs_dir, tmp_path):
    directory, mounted = tmpfs_dir
    outside = tmp_path / "outside.bin"
    _write(outside, 2 * MiB)
    os.symlink(outside, directory / "link-to-outside")
    os.symlink(tmp_path, directory / "link-to-dir")
    inner = directory / "inner"
    inner.mkdir()
    _write(directory / "own.bin", 4096)
    if not mounted:
        pytest.skip("needs root to mount a tmpfs inside the tmpfs")
    assert _mount_tmpfs(inner, "8m")
    try:
        _write(inner / "other-fs.bin", 3 * MiB)
        scan = scan_tree(str(directory))
    finally:
        _umount(inner)
    assert [os.path.basename(e.path) for e in scan.largest] == ["own.bin"]
    assert scan.skipped_mounts == 1
    assert scan.files == 1


def test_deleted_but_open_file_held_by_a_child(tmpfs_dir, holder_binary, children):
    directory, mounted = tmpfs_dir
    path = directory / "victim.log"
    child = children.start([holder_binary, path, 3 * MiB, 2 * MiB, 1 * MiB, 512 * 1024])
    fields = dict(item.split("=") for item in child.ready_line.split()[1:])
    assert not path.exists()
    report = collect_report()
    held = [d for d in report.deleted_open if d.path == str(path)]
    assert len(held) == 1, [d.path for d in report.deleted_open]
    item = held[0]
    assert item.size_bytes == 3 * MiB and item.allocated_bytes == 3 * MiB
    holders = {(h.pid, h.fd, h.mapped) for h in item.holders}
    assert holders == {(child.pid, int(fields["deleted_fd"]), False), (child.pid, None, True)}
    assert all(h.comm == holder_binary.name[:15] for h in item.holders)
    if mounted:
        # statvfs still counts it while du sees nothing.
        assert _find_mount(report, directory).used_bytes == 3 * MiB
        assert os.listdir(directory) == []

    memfd = [o for o in report.objects if o.kind == "memfd" and o.name == "memtop-test"
             and any(h.pid == child.pid for h in o.holders)]
    assert len(memfd) == 1
    assert memfd[0].allocated_bytes == 2 * MiB
    assert {(h.fd, h.mapped) for h in memfd[0].holders} == {(int(fields["memfd_fd"]), False), (None, True)}
    anon = [o for o in report.objects if o.kind == "shared anon" and any(h.pid == child.pid for h in o.holders)]
    assert [o.allocated_bytes for o in anon] == [1 * MiB]
    mapping = {m.kind: m for m in report.mappings if m.pid == child.pid}
    assert mapping["memfd"].rss_bytes == 2 * MiB and mapping["shared anon"].rss_bytes == 1 * MiB
    seg = [s for s in report.sysv if s.shmid == int(fields["shmid"])]
    assert seg and seg[0].attached_pids == (child.pid,) and seg[0].nattch == 1 and seg[0].rss_bytes == 512 * 1024
    assert seg[0].marked_for_removal and not seg[0].orphan

    # The JSON snapshot lists it too, with its holder.
    doc = build_snapshot(pid=child.pid)
    (entry,) = [d for d in doc["tmpfs"]["deleted_open"] if d["path"] == str(path)]
    assert entry["bytes"] == 3 * MiB
    assert {"pid": child.pid, "comm": item.holders[0].comm, "fd": int(fields["deleted_fd"]), "mapped": False} in entry["holders"]
    parts = {p["name"]: p for p in doc["tmpfs"]["shmem_reconciliation"]["parts"]}
    assert parts["memfd"]["bytes"] >= 2 * MiB and parts["SysV segments"]["bytes"] >= 512 * 1024

    child.close()
    after = collect_report(smaps=False)
    assert not [d for d in after.deleted_open if d.path == str(path)]


def test_sysv_segment_with_no_process_attached_is_an_orphan():
    size = 256 * 1024
    shmid = _libc.shmget(0, size, 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT
    assert shmid >= 0, os.strerror(ctypes.get_errno())
    try:
        address = _libc.shmat(shmid, None, 0)
        assert address not in (None, ctypes.c_void_p(-1).value)
        ctypes.memset(address, 1, size)
        assert _libc.shmdt(address) == 0
        report = collect_report(smaps=False, posix_dir=None)
        (seg,) = [s for s in report.sysv if s.shmid == shmid]
        assert seg.orphan and seg.nattch == 0 and not seg.marked_for_removal
        assert seg.size_bytes == size and seg.rss_bytes == size
        assert seg.cpid == os.getpid() and seg.attached_pids == ()
        doc_seg = [s for s in __import__("memtop.output.tmpfs", fromlist=["report_json"]).report_json(report)["sysv"]
                   if s["shmid"] == shmid][0]
        assert doc_seg["orphan"] is True
    finally:
        _libc.shmctl(shmid, IPC_RMID, None)
    assert not [s for s in collect_report(smaps=False, posix_dir=None).sysv if s.shmid == shmid]


def test_posix_shm_file_with_its_holder(children):
    name = f"/dev/shm/memtop-test-{os.getpid()}"
    code = (
        "import mmap, os, sys\n"
        f"fd = os.open({name!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
        "os.ftruncate(fd, 1 << 20)\n"
        "m = mmap.mmap(fd, 1 << 20)\n"
        "m[:65536] = b'p' * 65536\n"
        "print('READY', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    try:
        child = children.start([sys.executable, "-c", code])
        report = collect_report(smaps=False)
        (item,) = [f for f in report.posix if f.path == name]
        assert item.size_bytes == 1 << 20 and item.allocated_bytes == 65536
        assert {(h.pid, h.mapped) for h in item.holders} >= {(child.pid, True)}
        assert any(h.pid == child.pid and h.fd is not None for h in item.holders)
    finally:
        if os.path.exists(name):
            os.unlink(name)


def test_scan_of_50000_files_is_bounded(tmpfs_dir):
    directory, _ = tmpfs_dir
    # 50 directories of 1,000 empty files (and one non-empty file per directory).
    for d in range(50):
        sub = directory / f"d{d:02}"
        sub.mkdir()
        for i in range(1000):
            os.close(os.open(sub / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o600))
        _write(sub / "big", 4096 * (d + 1))
    calls = []
    full = scan_tree(str(directory), keep=20, progress=lambda e, f: calls.append(e) or True, progress_every=5000)
    assert full.files == 50_050 and full.directories == 51 and not full.truncated
    assert len(full.largest) == 20 and len(full.oldest) == 20
    assert full.largest[0].path.endswith("d49/big") and full.largest[0].allocated_bytes == 50 * 4096
    assert calls == list(range(5000, 50_051, 5000))

    # Memory does not grow with the tree: two heaps of 20 entries and a few directory paths. A
    # fresh interpreter scans it; its peak RSS (getrusage ru_maxrss, KiB) may grow by far less
    # than keeping 50,000 entries would take (~20 MiB of stat results and paths).
    code = (
        "import resource, sys\n"
        "from memtop.collect.tmpfs import scan_tree\n"
        "scan_tree(sys.argv[1], limit=100)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "result = scan_tree(sys.argv[1], keep=20)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(result.files, after - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(directory)], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    files, growth_kib = map(int, out.stdout.split())
    assert files == 50_050
    assert growth_kib < 4 * 1024, f"peak RSS grew by {growth_kib} KiB scanning 50,000 files"

    bounded = scan_tree(str(directory), limit=10_000, keep=5)
    assert bounded.truncated and bounded.files <= 10_000
    assert bounded.files + bounded.directories - 1 <= 10_001


def test_scan_can_be_cancelled(tmpfs_dir):
    directory, _ = tmpfs_dir
    for i in range(3000):
        os.close(os.open(directory / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o600))
    from memtop.collect.tmpfs import ScanCancelled

    with pytest.raises(ScanCancelled):
        scan_tree(str(directory), progress=lambda e, f: False, progress_every=1000)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to mount tmpfs and create mount namespaces")
def test_mount_in_another_namespace_is_read_through_proc_pid_root(tmp_path, children):
    """GIVEN a child in its own mount namespace with a tmpfs only it can see, holding a deleted
    file in it WHEN memtop collects THEN the mount shows up once, through /proc/PID/root, with
    its usage, and the deleted file is found on it."""
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is missing")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    script = (
        f"mount -t tmpfs -o size=16m none {hidden} || exit 1; "
        f"head -c 2097152 /dev/zero > {hidden}/kept.bin; "
        f"exec 3>{hidden}/gone.bin; head -c 1048576 /dev/zero >&3; rm {hidden}/gone.bin; "
        "echo READY; exec cat"  # cat waits on stdin and keeps fd 3 open
    )
    child = children.start(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
    assert not os.path.ismount(hidden)  # not in our namespace
    report = collect_report(smaps=False, posix_dir=None)
    ns = os.stat(f"/proc/{child.pid}/ns/mnt").st_ino
    assert ns != os.stat("/proc/self/ns/mnt").st_ino
    (mount,) = [m for m in report.mounts if m.mountpoint == str(hidden)]
    assert mount.namespace == ns and mount.namespace_pid is not None
    assert mount.access_path == f"/proc/{mount.namespace_pid}/root{hidden}"
    assert (mount.size_bytes, mount.used_bytes) == (16 * MiB, 3 * MiB)  # kept 2 MiB + deleted 1 MiB
    assert sum(1 for n, _, _ in report.namespaces if n == ns) == 1  # read once however many processes
    (gone,) = [d for d in report.deleted_open if d.path.endswith("/gone.bin")]
    assert gone.mountpoint == str(hidden) and gone.allocated_bytes == 1 * MiB
    assert {h.fd for h in gone.holders} == {3}
    scan = scan_tree(mount.access_path, mountpoint=mount.mountpoint)
    assert [e.path for e in scan.largest] == [f"{hidden}/kept.bin"]


@pytest.mark.skipif(not IS_ROOT, reason="needs root to mount")
def test_stacked_mount_covers_the_one_below(tmpfs_dir):
    directory, mounted = tmpfs_dir
    if not mounted:
        pytest.skip("could not mount a tmpfs")
    _write(directory / "below.bin", 1 * MiB)
    assert _mount_tmpfs(directory, "8m")
    try:
        report = collect_report(smaps=False, posix_dir=None)
        stacked = [m for m in report.mounts if m.mountpoint == str(directory) and m.namespace_pid is None]
        assert len(stacked) == 2
        below, top = stacked
        assert below.covered_by == top.info.mount_id and below.used_bytes is None
        assert "covered by mount" in below.usage_reason
        assert top.covered_by is None and top.size_bytes == 8 * MiB and top.used_bytes == 0
        tmpfs_part = [p for p in report.reconciliation.parts if p.name == "tmpfs files"][0]
        assert tmpfs_part.quality == "lower bound" and str(directory) in tmpfs_part.note
    finally:
        _umount(directory)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to drop to another user")
def test_snapshot_json_as_an_unprivileged_user_says_what_it_could_not_read():
    """GIVEN memtop run as nobody WHEN it writes `snapshot --json` THEN it exits 0 and the tmpfs
    section says which figures are lower bounds and why, instead of reporting 0 as measured."""
    import json
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv(1) is missing")
    worktree = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                           "memtop", "snapshot", "--json"], capture_output=True, text=True, cwd=worktree, timeout=120)
    assert done.returncode == 0, done.stderr
    tmpfs = json.loads(done.stdout)["tmpfs"]
    assert any("need root" in w for w in tmpfs["warnings"])
    parts = {p["name"]: p for p in tmpfs["shmem_reconciliation"]["parts"]}
    assert parts["memfd"]["quality"] == "lower bound" and "not readable" in parts["memfd"]["note"]
    assert {"mountpoint", "fstype", "size_bytes", "used_bytes"} <= set(tmpfs["mounts"][0])
