"""Page cache residency of a file: cachestat(2), with mmap(2) + mincore(2) as the fallback.

cachestat(2) (Linux >= 6.5, syscall 451 in the unified syscall table used by x86_64 and arm64)
returns, for a byte range of an open file, the number of pages cached, dirty, under writeback,
evicted and recently evicted (include/uapi/linux/mman.h, mm/filemap.c). It costs ~0.1 ms for a
4 GiB file, where mmap + mincore costs ~28 ns per page.

The non-root trap (facts.md): since the CVE-2025-21691 fix (Linux 6.14), cachestat returns EPERM
unless the caller opened the file for writing, owns it, has CAP_FOWNER, or may write it
(``can_do_cachestat`` in mm/filemap.c); mincore's ``can_do_mincore`` (mm/mincore.c) has the same
rule but, instead of failing, reports *every page resident* (util-linux commit 6cdbe0651). So
memtop never believes mincore for a file this user could not write: the figures are None with
the reason.

Opening is careful: only regular files are opened (a FIFO open can block, opening a device can
have side effects, e.g. /dev/watchdog arms the watchdog), with O_NONBLOCK as a second guard and
fstat(2) after the open to make sure the file did not change under us.

Stacked filesystems (issue 17): a file on overlayfs has no pages of its own. Reads and mmap(2) go
to the real (upper or lower) file (fs/overlayfs/file.c: ``ovl_read_iter`` reads the real file,
``ovl_mmap`` puts the real file in the VMA), but cachestat(2) looks at the overlay inode's own
mapping, which stays empty: it answers 0 for a file fincore shows cached (Linux 6.12, 6.18). The
same holds for a FUSE file in passthrough mode (fs/fuse/passthrough.c). So when cachestat says
"nothing cached", memtop asks fstatfs(2) which filesystem the file is on; on a stacked one it
counts the pages with mincore(2) over a mapping of the file, which is a mapping of the real file.
Files of pseudo filesystems (procfs, sysfs, cgroupfs...) have no page cache at all: they are
reported as such (NO_PAGE_CACHE), never as "0 bytes cached".
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import stat as stat_mod
import threading

from memtop.model.pagecache import (
    METHOD_CACHESTAT,
    METHOD_MINCORE,
    METHOD_NONE,
    FileCacheStat,
)
from memtop.procfs import PAGE_SIZE

# Unified syscall table (include/uapi/asm-generic/unistd.h and arch/x86/entry/syscalls):
# cachestat is 451 everywhere except alpha (561).
NR_CACHESTAT = 561 if platform.machine().startswith("alpha") else 451

# mincore() is called on windows of this many bytes so the vector stays small (256 KiB).
_MINCORE_WINDOW = 1 << 30

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)

NOT_REGULAR = ": only regular files have page cache figures"
NO_PAGE_CACHE = ": a pseudo filesystem, no page cache"
NO_SUCH_FILE = "no such file"
# POSIX record locks (fcntl) belong to a process and an inode: closing *any* descriptor of the
# file drops them all (fcntl(2), "the locks are released when any file descriptor is closed").
# SQLite holds such locks on a recording memtop writes or replays (its WAL index included); a
# second open-measure-close of that file by memtop would drop them, and another process could
# then reset the WAL index under the recorder (seen: SIGBUS in the recorder, SQLITE_PROTOCOL).
# So memtop never opens a file it already holds open.
HELD_BY_MEMTOP = "memtop itself holds this file open (a recording): not opened again, closing it would drop its locks"
REASON_MINCORE_ONLY = "mincore(2) fallback (no cachestat(2) before Linux 6.5): dirty, writeback and evicted pages are unknown"


class _CachestatRange(ctypes.Structure):
    # struct cachestat_range { __u64 off; __u64 len; };  len 0 means "to the end of the file"
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Cachestat(ctypes.Structure):
    # struct cachestat (include/uapi/linux/mman.h), counts of pages
    _fields_ = [
        ("nr_cache", ctypes.c_uint64),
        ("nr_dirty", ctypes.c_uint64),
        ("nr_writeback", ctypes.c_uint64),
        ("nr_evicted", ctypes.c_uint64),
        ("nr_recently_evicted", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
# No argtypes: ctypes' per-call conversion through argtypes doubles the cost of the call (~3.4 vs
# ~1.8 us measured), which matters when scanning 10,000 files. The arguments are passed as
# ready-made ctypes objects (c_long number, byref pointers) or small ints (fd, flags 0).
_NR_CACHESTAT = ctypes.c_long(NR_CACHESTAT)

_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_munmap = _libc.munmap
_munmap.restype = ctypes.c_int
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_mincore = _libc.mincore
_mincore.restype = ctypes.c_int
_mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_MAP_FAILED = ctypes.c_void_p(-1).value
_fstatfs = _libc.fstatfs
_fstatfs.restype = ctypes.c_int
_fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]
# struct statfs is 120 bytes on x86_64 and arm64 (64 on 32-bit); f_type, a word, comes first.
_STATFS_SIZE = 256

# f_type values (include/uapi/linux/magic.h, fs/fuse/inode.c).
OVERLAYFS_SUPER_MAGIC = 0x794C7630
FUSE_SUPER_MAGIC = 0x65735546
# Filesystems whose files' own mapping is empty, the pages being the real file's (see module doc).
STACKED_FILESYSTEMS = {OVERLAYFS_SUPER_MAGIC: "overlayfs", FUSE_SUPER_MAGIC: "FUSE"}
# Filesystems of generated files: nothing of them is page cache (cachestat answers 0).
PSEUDO_FILESYSTEMS = {
    0x9FA0: "procfs",
    0x62656572: "sysfs",
    0x27E0EB: "cgroupfs",
    0x63677270: "cgroup2fs",
    0x64626720: "debugfs",
    0x74726163: "tracefs",
    0x73636673: "securityfs",
    0xCAFE4A11: "bpffs",
    0x62656570: "configfs",
    0x6165676C: "pstorefs",
    0xDE5E81E4: "efivarfs",
    0xF97CFF8C: "selinuxfs",
    0x43415D53: "smackfs",
    0x42494E4D: "binfmt_misc",
}

# mincore's vector: bit 0 of each byte is "resident"; the other bits are reserved (man 2 mincore).
_LOW_BIT = bytes(i & 1 for i in range(256))


class _Buffers(threading.local):
    """Per-thread ctypes buffers, so concurrent scans (worker threads) never share them."""

    def __init__(self) -> None:
        self.range = _CachestatRange(0, 0)
        self.result = _Cachestat()
        self.range_ref = ctypes.byref(self.range)
        self.result_ref = ctypes.byref(self.result)
        # The five u64 counters as a Python list in one call (faster than five attributes).
        self.result_u64 = memoryview(self.result).cast("B").cast("Q")
        self.statfs = ctypes.create_string_buffer(_STATFS_SIZE)
        self.statfs_type = ctypes.c_long.from_buffer(self.statfs)


_buffers = _Buffers()
_fast_new = FileCacheStat.fast_new
# None: not tried yet; True/False once the kernel answered (ENOSYS means no cachestat).
_cachestat_available: bool | None = None


def cachestat_supported() -> bool:
    """Whether this kernel has cachestat(2) (probed once, on the first file)."""
    if _cachestat_available is None:
        fd = os.open("/proc/self/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _cachestat_fd(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
    return bool(_cachestat_available)


def _cachestat_fd(fd: int) -> tuple[int, int, int, int, int]:
    """cachestat(fd, {0, 0}, &cs, 0) over the whole file, in pages. Raises OSError."""
    global _cachestat_available
    buf = _buffers
    if _syscall(_NR_CACHESTAT, fd, buf.range_ref, buf.result_ref, 0) != 0:
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            _cachestat_available = False
        raise OSError(err, os.strerror(err))
    _cachestat_available = True
    return buf.result_u64.tolist()


def cachestat_inline(method: str = "auto"):
    """What a loop over many files needs to call cachestat(2) itself, or None.

    ``(syscall, number, range_ref, result_ref, counters, new, method)``: call
    ``syscall(number, fd, range_ref, result_ref, 0)``; 0 means ``counters()`` holds (cached,
    dirty, writeback, evicted, recently evicted) in pages, for ``new(...)`` as in
    :func:`stat_open_fd`; anything else goes through :func:`stat_open_fd`. The buffers are
    this thread's. None when cachestat is not to be used (the method, or a kernel without it).
    """
    if method not in ("auto", "cachestat") or _cachestat_available is False:
        return None
    buf = _buffers
    return _syscall, _NR_CACHESTAT, buf.range_ref, buf.result_ref, buf.result_u64.tolist, _fast_new, METHOD_CACHESTAT


def filesystem_type(fd: int) -> int | None:
    """f_type of the filesystem of an open file (fstatfs(2)); None when the call fails."""
    buf = _buffers
    if _fstatfs(fd, buf.statfs) != 0:
        return None
    # f_type is a signed word: magics above 0x7fffffff read negative on 32-bit words.
    return buf.statfs_type.value & 0xFFFFFFFF


def mincore_pages(fd: int, size: int) -> int:
    """Resident pages of the first ``size`` bytes of an open file, by mmap(2) + mincore(2).

    Only meaningful when this user may write the file (see the module doc). Raises OSError.
    """
    resident = 0
    offset = 0
    while offset < size:
        length = min(_MINCORE_WINDOW, size - offset)
        addr = _mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, offset)
        if addr is None or addr == _MAP_FAILED:
            err = ctypes.get_errno()
            raise OSError(err, f"mmap: {os.strerror(err)}")
        try:
            pages = (length + PAGE_SIZE - 1) // PAGE_SIZE
            vec = ctypes.create_string_buffer(pages)
            if _mincore(addr, length, vec) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"mincore: {os.strerror(err)}")
            resident += vec.raw[:pages].translate(_LOW_BIT).count(1)
        finally:
            _munmap(addr, length)
        offset += length
    return resident


def may_trust_mincore(st: os.stat_result) -> bool:
    """The kernel's ``can_do_mincore`` rule (mm/mincore.c), conservatively.

    True when the effective user owns the file, is root (CAP_FOWNER), or may write it. A user with
    only some capabilities gets False, which at worst turns a true figure into "unknown".
    """
    euid = os.geteuid()
    if euid == 0 or st.st_uid == euid:
        return True
    mode = st.st_mode
    if mode & stat_mod.S_IWOTH:
        return True
    if mode & stat_mod.S_IWGRP and (st.st_gid == os.getegid() or st.st_gid in os.getgroups()):
        return True
    return False


def _unknown(path: str, reason: str, st: os.stat_result | None = None) -> FileCacheStat:
    return FileCacheStat(
        path=path,
        size_bytes=st.st_size if st is not None else None,
        cached_bytes=None,
        dirty_bytes=None,
        writeback_bytes=None,
        evicted_bytes=None,
        recently_evicted_bytes=None,
        method=METHOD_NONE,
        reason=reason,
        device=st.st_dev if st is not None else None,
        inode=st.st_ino if st is not None else None,
    )


def _kind(mode: int) -> str:
    if stat_mod.S_ISDIR(mode):
        return "a directory"
    if stat_mod.S_ISFIFO(mode):
        return "a FIFO"
    if stat_mod.S_ISSOCK(mode):
        return "a socket"
    if stat_mod.S_ISCHR(mode):
        return "a character device"
    if stat_mod.S_ISBLK(mode):
        return "a block device"
    if stat_mod.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def _open_error(path: str, e: OSError) -> FileCacheStat:
    if e.errno == errno.ENOENT:
        return _unknown(path, NO_SUCH_FILE)
    if e.errno == errno.ELOOP:
        return _unknown(path, "a symbolic link (not followed)")
    if e.errno in (errno.EACCES, errno.EPERM):
        return _unknown(path, "permission denied opening the file")
    return _unknown(path, f"cannot open: {os.strerror(e.errno or 0)}")


def stat_open_fd(path: str, fd: int, st: os.stat_result, *, method: str = "auto") -> FileCacheStat:
    """Residency of an already open regular file ``fd`` whose fstat is ``st``."""
    size = st.st_size
    if method in ("auto", "cachestat") and _cachestat_available is not False:
        try:
            cached, dirty, writeback, evicted, recent = _cachestat_fd(fd)
        except OSError as e:
            if e.errno == errno.EPERM:
                return _unknown(
                    path,
                    "cachestat(2) refused (EPERM): this user can neither write nor owns the file; "
                    "mincore(2) would falsely report it all cached (run as root or the owner)",
                    st,
                )
            if e.errno != errno.ENOSYS or method == "cachestat":
                return _unknown(path, f"cachestat(2) failed: {os.strerror(e.errno or 0)}", st)
        else:
            if cached or method == "cachestat":
                # The hot path of a 10,000-file scan (bench/pagecache.py).
                return _fast_new(
                    path, size, cached * PAGE_SIZE, dirty * PAGE_SIZE, writeback * PAGE_SIZE,
                    evicted * PAGE_SIZE, recent * PAGE_SIZE, METHOD_CACHESTAT, None, st.st_dev, st.st_ino,
                )
            # Nothing cached: true, or a file whose pages belong to another inode (module doc).
            fs = filesystem_type(fd)
            if fs in PSEUDO_FILESYSTEMS:
                return _unknown(path, f"{PSEUDO_FILESYSTEMS[fs]}{NO_PAGE_CACHE}")
            if fs not in STACKED_FILESYSTEMS or size == 0:
                return _fast_new(
                    path, size, 0, dirty * PAGE_SIZE, writeback * PAGE_SIZE,
                    evicted * PAGE_SIZE, recent * PAGE_SIZE, METHOD_CACHESTAT, None, st.st_dev, st.st_ino,
                )
            return _mincore_stat(
                path, fd, st,
                f"{STACKED_FILESYSTEMS[fs]}: cachestat(2) sees only the stacked inode, which holds no pages; "
                "cached pages counted by mincore(2) on a mapping of the real file (dirty, writeback and "
                "evicted pages unknown)",
            )
    if method == "cachestat":
        return _unknown(path, "cachestat(2) is not available on this kernel (Linux >= 6.5)", st)
    fs = filesystem_type(fd)
    if fs in PSEUDO_FILESYSTEMS:
        return _unknown(path, f"{PSEUDO_FILESYSTEMS[fs]}{NO_PAGE_CACHE}")
    return _mincore_stat(path, fd, st, REASON_MINCORE_ONLY)


def _mincore_stat(path: str, fd: int, st: os.stat_result, reason: str) -> FileCacheStat:
    """Resident pages by mmap(2) + mincore(2), unless mincore's answer cannot be trusted."""
    if not may_trust_mincore(st):
        return _unknown(
            path,
            "this user cannot write the file: mincore(2) would report every page cached "
            "(kernel can_do_mincore rule); run as root or the owner",
            st,
        )
    size = st.st_size
    try:
        resident = mincore_pages(fd, size) if size > 0 else 0
    except OSError as e:
        return _unknown(path, f"mmap/mincore failed: {e.strerror}", st)
    return FileCacheStat(
        path=path,
        size_bytes=size,
        cached_bytes=resident * PAGE_SIZE,
        dirty_bytes=None,
        writeback_bytes=None,
        evicted_bytes=None,
        recently_evicted_bytes=None,
        method=METHOD_MINCORE,
        reason=reason,
        device=st.st_dev,
        inode=st.st_ino,
    )


def own_open_files() -> frozenset[tuple[int, int]]:
    """(device, inode) of every regular file this process holds open (see HELD_BY_MEMTOP),
    but its procfs and sysfs files (the sampler holds a /proc/PID/stat per process: no locks,
    no page cache; they stay reported as such). Costs ~1 µs per descriptor."""
    out = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return frozenset()
    for fd in fds:
        link = f"/proc/self/fd/{fd}"
        try:
            # Our own descriptors: only root mounts below /proc and /sys, so these names are
            # the pseudo filesystems; sockets, pipes and anonymous inodes do not start with "/".
            target = os.readlink(link)
            if not target.startswith("/") or target.startswith(("/proc/", "/sys/")):
                continue
            st = os.stat(link)
        except OSError:
            continue  # the listing's own descriptor, or one closed meanwhile
        if stat_mod.S_ISREG(st.st_mode):
            out.add((st.st_dev, st.st_ino))
    return frozenset(out)


def file_cache_stat(
    path: str | os.PathLike,
    *,
    follow_symlinks: bool = True,
    method: str = "auto",
    dir_fd: int | None = None,
    name: str | None = None,
    own: frozenset[tuple[int, int]] | None = None,
) -> FileCacheStat:
    """Page cache residency of the file at ``path``; never raises for a file-level problem.

    Args:
        path: the file. Only regular files are opened; anything else is "unknown" with the reason.
        follow_symlinks: False for tree scans (a symlink is reported, never followed).
        method: "auto" (cachestat, mincore when the kernel has no cachestat), "cachestat" or
            "mincore" (tests and benchmarks force one).
        dir_fd: resolve a relative ``path`` against this directory fd (tree scans).
        name: the path to report, when ``path`` is only a way in (``/proc/PID/fd/3``).
        own: :func:`own_open_files`, when the caller measures many files (read here otherwise).
    """
    open_path = os.fspath(path)
    if name is None:
        name = open_path
    try:
        # Look before opening: never open a FIFO (blocks), socket or device (side effects).
        st = os.stat(open_path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    except OSError as e:
        return _open_error(name, e)
    if not stat_mod.S_ISREG(st.st_mode):
        return _unknown(name, f"{_kind(st.st_mode)}{NOT_REGULAR}")
    if (st.st_dev, st.st_ino) in (own_open_files() if own is None else own):
        return _unknown(name, HELD_BY_MEMTOP, st)
    flags = _OPEN_FLAGS if follow_symlinks else _OPEN_FLAGS | os.O_NOFOLLOW
    try:
        fd = os.open(open_path, flags, dir_fd=dir_fd)
    except OSError as e:
        return _open_error(name, e)
    try:
        fst = os.fstat(fd)
        if not stat_mod.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            return _unknown(name, "the file changed while it was being opened")
        return stat_open_fd(name, fd, fst, method=method)
    finally:
        os.close(fd)
