"""Source (c): a directory tree, measured file by file (cachestat), bounded and cancellable.

Safety rules (issue 6): the walk never follows a symbolic link (every directory is opened with
O_NOFOLLOW relative to its parent's fd, so a link swapped in meanwhile cannot lead out of the
tree), never opens a FIFO, socket or device (their directory entries are counted as skipped),
does not descend into pseudo filesystems (proc, sysfs, ...: their files have no page cache and
some have side effects on read), never enters one directory twice (bind mount loops), and
stops at a file-count limit. It holds one directory fd per level of depth, not per directory.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import threading
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import Callable

from memtop.model.pagecache import FileCacheStat, TreeScanProgress
from memtop.procfs import PAGE_SIZE, PROC
from memtop.procfs.cachestat import cachestat_inline, own_open_files, stat_open_fd

DEFAULT_LIMIT = 100_000
# Files are measured in batches, optionally by a few threads: open(2) of a file whose inode is not
# in memory waits for the disk, and the waits of several threads can overlap (the GIL is released
# in syscalls). Measured on the shared 2-core machine with warm inodes, threads cost ~30 % more
# CPU for no gain in wall time, so the default is one thread (the caller's).
DEFAULT_THREADS = 1
_BATCH = 128
_MAX_PENDING = 32  # batches in flight, each holding a dup of its directory's fd

# Filesystems without a page cache of their own, or where reading a file has side effects.
PSEUDO_FILESYSTEMS = frozenset(
    {
        "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs",
        "securityfs", "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "autofs",
        "binfmt_misc", "efivarfs", "selinuxfs", "rpc_pipefs", "nsfs",
    }
)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)


class TreeScanError(Exception):
    """The root of the scan itself cannot be scanned (missing, not a directory, pseudo fs)."""


def parse_mountinfo_pseudo_devices(text: str) -> dict[int, str]:
    """st_dev -> fstype of the pseudo filesystems in a mountinfo file (man 5 proc_pid_mountinfo).

    A line is ``id parent major:minor root mountpoint options [optional...] - fstype source ...``.
    """
    out: dict[int, str] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        fstype = right.split(" ", 1)[0]
        if len(fields) < 3 or fstype not in PSEUDO_FILESYSTEMS:
            continue
        major, _, minor = fields[2].partition(":")
        try:
            out[os.makedev(int(major), int(minor))] = fstype
        except ValueError:
            continue
    return out


def pseudo_devices(root: Path = PROC) -> dict[int, str]:
    try:
        with open(f"{root}/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            return parse_mountinfo_pseudo_devices(f.read())
    except OSError:
        return {}


def _skip_kind(mode: int) -> str:
    if stat_mod.S_ISFIFO(mode):
        return "fifo"
    if stat_mod.S_ISSOCK(mode):
        return "socket"
    if stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode):
        return "device"
    if stat_mod.S_ISLNK(mode):
        return "symlink"
    return "other"


class _Walk:
    """One scan's state: results, counters, the progress callback."""

    def __init__(self, root: str, limit: int, cancel, progress, progress_every: int, method: str):  # noqa: PLR0913
        self.root = root
        self.limit = limit
        self.cancel = cancel
        self.progress = progress
        self.progress_every = max(1, progress_every)
        self.method = method
        self.files: list[FileCacheStat] = []
        self.skipped: Counter = Counter()
        self.truncated = False
        self.cancelled = False
        self.visited: set[tuple[int, int]] = set()
        self.pseudo = pseudo_devices()
        # Files memtop holds open itself are never opened (cachestat.HELD_BY_MEMTOP): the
        # directory entry's inode number tells which names to stat first.
        self.own = own_open_files()
        self.own_inodes = frozenset(ino for _, ino in self.own)
        self.submitted = 0  # file names handed to batches (the limit counts these)
        self.pool: ThreadPoolExecutor | None = None
        self.pending: deque[Future] = deque()

    def report(self, done: bool) -> TreeScanProgress:
        state = TreeScanProgress(
            root=self.root,
            files_seen=len(self.files),
            limit=self.limit,
            done=done,
            truncated=self.truncated,
            cancelled=self.cancelled,
            skipped=MappingProxyType(dict(self.skipped)),
        )
        if self.progress is not None:
            self.progress(state)
        return state

    def stopped(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
        return self.cancelled or self.truncated

    def enter(self, dfd: int, name: str) -> int | None:
        """Open subdirectory ``name`` of ``dfd`` (never through a symlink); None to skip it."""
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        except OSError as e:
            self.skipped["symlink" if e.errno == errno.ELOOP else "unreadable"] += 1
            return None
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if key in self.visited or st.st_dev in self.pseudo:
            self.skipped["loop" if key in self.visited else "pseudo-fs"] += 1
            os.close(fd)
            return None
        self.visited.add(key)
        return fd

    def absorb(self, files: list[FileCacheStat], skipped: Counter) -> None:
        """Add one measured batch; report progress each ``progress_every`` files."""
        before = len(self.files) // self.progress_every
        self.files.extend(files)
        self.skipped.update(skipped)
        if len(self.files) // self.progress_every > before:
            self.report(False)

    def drain(self, keep: int = 0) -> None:
        """Wait for batches in flight, oldest first, until at most ``keep`` remain."""
        while len(self.pending) > keep:
            self.absorb(*self.pending.popleft().result())

    def scan_dir(self, dfd: int, path: str) -> list[str]:
        """Measure the files of one directory (in batches); return its subdirectory names."""
        subdirs: list[str] = []
        names: list[str] = []
        try:
            with os.scandir(dfd) as it:
                entries = list(it)
        except OSError:
            self.skipped["unreadable"] += 1
            return subdirs
        room = self.limit - self.submitted
        for entry in entries:
            try:
                # d_type from getdents(2); DirEntry falls back to lstat for DT_UNKNOWN.
                if entry.is_file(follow_symlinks=False):
                    if entry.inode() in self.own_inodes:
                        st = entry.stat(follow_symlinks=False)
                        if (st.st_dev, st.st_ino) in self.own:
                            self.skipped["held open by memtop"] += 1
                            continue
                    if len(names) < room:
                        names.append(entry.name)
                    else:
                        self.truncated = True
                elif entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.name)
                else:
                    self.skipped[_skip_kind(entry.stat(follow_symlinks=False).st_mode)] += 1
            except OSError:
                self.skipped["vanished"] += 1
        self.submitted += len(names)
        prefix = path.rstrip("/") + "/"
        for i in range(0, len(names), _BATCH):
            # Each batch owns a dup of the directory fd: the walk may close its own meanwhile.
            batch = (os.dup(dfd), prefix, names[i : i + _BATCH], self.method, self.cancel)
            if self.pool is None:
                self.absorb(*_measure_batch(*batch))
            else:
                self.pending.append(self.pool.submit(_measure_batch, *batch))
                self.drain(keep=_MAX_PENDING)
        return subdirs


def _measure_batch(dfd: int, prefix: str, names: list[str], method: str, cancel) -> tuple[list[FileCacheStat], Counter]:
    """Measure files ``names`` of directory ``dfd`` (closed at the end). Runs in pool threads.

    The loop is written for speed (locals, no per-file method call): a 10,000-file scan is
    benchmarked against vmtouch (bench/pagecache.py). A name is opened with O_NOFOLLOW |
    O_NONBLOCK relative to its directory, and measured only if fstat says it is a regular file.
    """
    out: list[FileCacheStat] = []
    append = out.append
    skipped: Counter = Counter()
    os_open, os_fstat, os_close, is_reg = os.open, os.fstat, os.close, stat_mod.S_ISREG
    fast = cachestat_inline(method)  # None: measure each file through stat_open_fd
    if fast is not None:
        syscall, number, range_ref, result_ref, counters, new, kind = fast
    page = PAGE_SIZE
    cancelled = cancel.is_set if cancel is not None else (lambda: False)
    try:
        for i, name in enumerate(names):
            if not i % 32 and cancelled():  # a cancel is seen within 32 files (~0.5 ms)
                break
            try:
                fd = os_open(name, _FILE_FLAGS, dir_fd=dfd)
            except OSError as e:
                skipped["symlink" if e.errno == errno.ELOOP else "unreadable"] += 1
                continue
            try:
                st = os_fstat(fd)
                if not is_reg(st.st_mode):  # replaced between readdir and open
                    skipped[_skip_kind(st.st_mode)] += 1
                    continue
                # cachestat(2) inlined: this is the inner loop of a 10,000-file scan.
                if fast is not None and syscall(number, fd, range_ref, result_ref, 0) == 0:
                    cached, dirty, writeback, evicted, recent = counters()
                    if cached:
                        append(new(prefix + name, st.st_size, cached * page, dirty * page, writeback * page,
                                   evicted * page, recent * page, kind, None, st.st_dev, st.st_ino))
                        continue
                # Nothing cached (or no cachestat): stat_open_fd tells a true 0 from an overlayfs
                # file, whose pages cachestat cannot see (memtop.procfs.cachestat).
                append(stat_open_fd(prefix + name, fd, st, method=method))
            finally:
                os_close(fd)
    finally:
        os_close(dfd)
    return out, skipped


def scan_tree(
    root: str | os.PathLike,
    *,
    limit: int = DEFAULT_LIMIT,
    cancel: threading.Event | None = None,
    progress: Callable[[TreeScanProgress], None] | None = None,
    progress_every: int = 1000,
    method: str = "auto",
    threads: int = DEFAULT_THREADS,
) -> tuple[list[FileCacheStat], TreeScanProgress]:
    """Measure every regular file under ``root`` (see the module doc for the rules).

    ``root`` itself may be given through a symlink (the user typed it); nothing below it is
    followed. Returns the measured files, in walk order whatever ``threads`` is, and the final
    progress (done, truncated or cancelled, skipped entries by kind). ``progress`` is called from
    the calling thread. Raises TreeScanError when ``root`` cannot be scanned at all.
    """
    root_path = os.path.abspath(os.fspath(root))
    try:
        root_fd = os.open(root_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise TreeScanError(f"{root_path}: no such directory") from None
    except NotADirectoryError:
        raise TreeScanError(f"{root_path}: not a directory") from None
    except PermissionError:
        raise TreeScanError(f"{root_path}: permission denied") from None
    except OSError as e:
        raise TreeScanError(f"{root_path}: {e.strerror}") from None
    walk = _Walk(root_path, limit, cancel, progress, progress_every, method)
    st = os.fstat(root_fd)
    if st.st_dev in walk.pseudo:
        os.close(root_fd)
        raise TreeScanError(f"{root_path}: a {walk.pseudo[st.st_dev]} pseudo filesystem has no page cache to scan")
    walk.visited.add((st.st_dev, st.st_ino))
    if threads > 1:
        walk.pool = ThreadPoolExecutor(threads, thread_name_prefix="memtop-scan")
    # Depth-first with one open fd per level: (dir fd, its path, subdirectories left to visit).
    stack: list[tuple[int, str, list[str]]] = [(root_fd, root_path, [])]
    # The cyclic GC stays on: pausing it saved 4 % of a 10,000-file scan (py-spy), but the scan
    # runs in a worker thread and gc.disable() would pause it for the whole process, UI included.
    try:
        stack[0][2].extend(reversed(walk.scan_dir(root_fd, root_path)))
        while stack and not walk.stopped():
            dfd, path, pending = stack[-1]
            if not pending:
                os.close(dfd)
                stack.pop()
                continue
            name = pending.pop()
            child = walk.enter(dfd, name)
            if child is None:
                continue
            child_path = path.rstrip("/") + "/" + name
            stack.append((child, child_path, []))
            stack[-1][2].extend(reversed(walk.scan_dir(child, child_path)))
        walk.drain()
    finally:
        for dfd, _, _ in stack:
            os.close(dfd)
        if walk.pool is not None:
            # On an error, batches not started are dropped; running ones finish (and close
            # their fds) before shutdown returns.
            walk.pool.shutdown(wait=True, cancel_futures=True)
    walk.stopped()
    return walk.files, walk.report(True)
