"""Pure readers and parsers of kernel files.

Every reader takes the proc root (``root=Path("/proc")``) so tests can point it at captured
trees. Errors are translated once, here, at the read boundary (psutil's ``wrap_exceptions``):
a vanished process becomes :class:`NoSuchProcess`, a permission problem :class:`AccessDenied`,
text that does not parse :class:`ParseError`. Nothing here imports Textual.
"""

from __future__ import annotations

import errno
import fcntl
import os
import weakref
from pathlib import Path

PROC = Path("/proc")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ProcfsError(Exception):
    """Base of the errors a reader raises."""


class NoSuchProcess(ProcfsError):
    """The process (or the file) vanished between two reads."""


class AccessDenied(ProcfsError):
    """The file exists but this user may not read it; ``reason`` says what would be needed."""

    def __init__(self, path: str | Path, reason: str | None = None):
        self.path = str(path)
        if reason is None:
            if os.geteuid() == 0:
                reason = f"the kernel refused {path} even to root (ptrace access check or LSM)"
            else:
                reason = f"permission denied reading {path} (needs root or CAP_SYS_PTRACE)"
        self.reason = reason
        super().__init__(self.reason)


# statfs(2) f_type of the filesystems whose files live in memory only (linux/magic.h).
MEMORY_FS_MAGIC = {0x01021994: "tmpfs", 0x858458F6: "ramfs", 0x958458F6: "hugetlbfs"}


def memory_fs_of(fd: int) -> str | None:
    """"tmpfs", "ramfs" or "hugetlbfs" when the open file ``fd`` lives in memory only (its pages
    are its only copy: no page cache to evict), else None (also when fstatfs fails)."""
    import ctypes
    import struct

    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if libc.fstatfs(fd, buf) != 0:
        return None
    return MEMORY_FS_MAGIC.get(struct.unpack_from("l", buf.raw)[0] & 0xFFFFFFFF)


def denied_advice(pid: int | None = None, root: Path = PROC) -> str:
    """The next step when a file of process ``pid`` was refused: never "run memtop as root" to a
    memtop that is root already. As root, the refusal is the kernel's ptrace access check
    (kernel/ptrace.c __ptrace_may_access and the security modules behind it): Yama's
    ptrace_scope 3 is said when set; other causes cannot be told from outside."""
    if os.geteuid() != 0:
        return "Run memtop as root (or with CAP_SYS_PTRACE)."
    try:
        scope = (root / "sys/kernel/yama/ptrace_scope").read_text().strip()
    except OSError:
        scope = None
    if scope == "3":
        why = "Yama's ptrace_scope is 3: no process may read another's memory, root included, until a reboot"
    else:
        why = ("a security module's policy (AppArmor, SELinux, Landlock...) or the process's own settings "
               "(not dumpable, in another user namespace)")
    who = f"PID {pid}" if pid is not None else "the process"
    return (f"memtop already runs as root and the kernel still refuses {who}'s memory files: {why}. "
            "Running as root again will not help; the figures that need them stay unknown.")


class ParseError(ProcfsError):
    """The text of a kernel file did not have the expected shape."""

    def __init__(self, path: str | Path, detail: str):
        self.path = str(path)
        self.detail = detail
        super().__init__(f"cannot parse {path}: {detail}")


_CHUNK = 1 << 16
# Files the kernel produces whole in one show() (single_open seq_files): a short read of them is
# the end. Multi-record seq_files are NOT: /proc/PID/smaps answers each read() with about one
# page (seen: 4037, 3911, 3979... bytes of a 31 KB file), as maps, mountinfo or vmstat may.
_SINGLE_SHOW = frozenset({"stat", "statm", "status", "smaps_rollup", "meminfo", "uptime", "loadavg"})


def read_bytes(path: str | Path, limit: int | None = None) -> bytes:
    """Read a whole proc/sys file, translating errors (see module doc); at most ``limit`` bytes."""
    try:
        with open(path, "rb", buffering=0) as f:
            if limit is not None:
                return f.read(limit)  # /proc/PID/cmdline answers one read with up to `limit` bytes
            # For single-show files a short read is the end: one read() per small file instead
            # of two (this runs for every process every tick). Other files: read until EOF.
            data = f.read(_CHUNK)
            if len(data) < _CHUNK and os.path.basename(path) in _SINGLE_SHOW:
                return data
            if not data:
                return data
            chunks = [data]
            while chunk := f.read(_CHUNK):
                chunks.append(chunk)
            return b"".join(chunks)
    except (FileNotFoundError, ProcessLookupError) as e:
        raise NoSuchProcess(str(path)) from e
    except PermissionError as e:
        raise AccessDenied(path) from e
    except OSError as e:
        # ESRCH: the task exited while we read; EINVAL/EIO can come from a dying mm.
        if e.errno in (errno.ESRCH, errno.EINVAL, errno.EIO, errno.ENOENT):
            raise NoSuchProcess(str(path)) from e
        if e.errno in (errno.EACCES, errno.EPERM):
            raise AccessDenied(path) from e
        raise


def read_text(path: str | Path) -> str:
    return read_bytes(path).decode("utf-8", "surrogateescape")


def parse_kb_table(text: str, path: str | Path = "?") -> dict[str, int]:
    """Parse ``Key:   123 kB`` lines (meminfo, status, smaps_rollup) into bytes.

    Lines without a ``kB`` unit keep their raw integer value. Lines that are not ``key: value``
    are skipped (smaps_rollup's first line is a mapping header).
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts:
            continue
        try:
            value = int(parts[0])
        except ValueError:
            continue
        if len(parts) > 1 and parts[1] == "kB":
            value *= 1024
        out[key.strip()] = value
    return out


MAX_HELD_FILES = 32768
_HELD_FD_BASE = 1024  # FD_SETSIZE: fds below it stay free for select(2) users (pygdbmi)


def raise_fd_limit(want: int = MAX_HELD_FILES + 1024) -> None:
    """Raise this process's soft RLIMIT_NOFILE toward the hard limit (at most ``want``).

    memtop keeps /proc/PID/stat (and as root /proc/PID/fd) open for every process (see
    OpenFiles); the default soft limit of 1024 would hold only 512 of them. Raising the soft
    limit up to the hard one needs no privilege (setrlimit(2)); memtop uses epoll, never
    select(2), so high fd numbers are safe.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(hard, want)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # keep the old limit: fewer files held open, same figures


def held_fd_budget() -> tuple[int, int]:
    """(lowest fd number for held files, how many may be held in all) under RLIMIT_NOFILE."""
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= 2 * _HELD_FD_BASE:
        return _HELD_FD_BASE, min(MAX_HELD_FILES, soft - _HELD_FD_BASE - 64)
    return 0, max(0, min(512, soft - 256))


# What OpenFiles asks pread for: a stat line is under 1.2 KB. CPython mallocs the whole request
# and shrinks it in place; with 64 KiB requests, each line still alive when the next one was read
# left the heap's top above it: +10 MiB of RSS over 30 ticks with 1,000 processes (measured).
_HELD_CHUNK = 4096


class OpenFiles:
    """Keeps one proc file per PID open and re-reads it with pread(2).

    Re-reading an open /proc/PID/stat costs one syscall instead of a path walk, open, read and
    close (9 µs instead of 24 µs here): this file is read for every process on every tick.
    The fd is bound to the process it was opened for: once that process is gone, pread fails
    with ESRCH even if the PID was reused, so a reused PID is never read through an old fd. At
    most ``limit`` files are held (the rest are opened per read). When RLIMIT_NOFILE allows
    (``memtop.cli`` raises the soft limit at start), the held fds are moved to numbers at or
    above 1024 (F_DUPFD_CLOEXEC), so that everything else keeps the low numbers: pygdbmi waits
    on gdb's pipes with select(2), which fails for an fd >= 1024 (FD_SETSIZE).
    """

    def __init__(self, name: str, root: Path = PROC, limit: int | None = None, *, directory: bool = False):
        self.name = name
        self.root = root
        self._base, budget = held_fd_budget()
        self.limit = budget if limit is None else limit
        self._flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0)
        self._fds: dict[int, int] = {}
        # Close what is held when the owner is dropped without close() (tests make many).
        weakref.finalize(self, _close_all, self._fds)

    def _open(self, pid: int, path: str) -> int | None:
        """Open and hold ``path`` for ``pid``; None when ``limit`` files are held already."""
        if len(self._fds) >= self.limit:
            return None
        try:
            fd = os.open(path, self._flags)
        except (FileNotFoundError, ProcessLookupError) as e:
            raise NoSuchProcess(path) from e
        except PermissionError as e:
            raise AccessDenied(path) from e
        if self._base and fd < self._base:
            try:
                high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, self._base)
            finally:
                os.close(fd)
            fd = high
        self._fds[pid] = fd
        return fd

    def held(self, pid: int) -> int | None:
        """The fd held for ``pid``, or None (a caller's fast path; on any error, call read/size)."""
        return self._fds.get(pid)

    def size(self, pid: int) -> int:
        """st_size of the held file by fstat(2): no path walk (for /proc/PID/fd, since Linux 6.2,
        the number of open fds). An fd whose process is gone fails with ENOENT even if the PID
        was reused: the file is then opened again once by path, so the answer is the new one's.
        """
        fd = self._fds.get(pid)
        if fd is not None:
            try:
                return os.fstat(fd).st_size
            except OSError:
                self.forget(pid)
        path = f"{self.root}/{pid}/{self.name}"
        fd = self._open(pid, path)
        try:
            return os.fstat(fd).st_size if fd is not None else os.stat(path).st_size
        except (FileNotFoundError, ProcessLookupError) as e:
            self.forget(pid)
            raise NoSuchProcess(path) from e
        except PermissionError as e:
            raise AccessDenied(path) from e

    def read(self, pid: int) -> bytes:
        fd = self._fds.get(pid)
        if fd is not None:
            try:
                data = os.pread(fd, _HELD_CHUNK, 0)
            except OSError:
                data = None  # the errors are sorted out below, off the common path
            if data is not None and len(data) < _HELD_CHUNK:
                return data
        path = f"{self.root}/{pid}/{self.name}"
        if fd is None:
            fd = self._open(pid, path)
            if fd is None:
                return read_bytes(path)
        try:
            data = os.pread(fd, _HELD_CHUNK, 0)
        except OSError as e:
            self.forget(pid)
            if e.errno in (errno.ESRCH, errno.ENOENT, errno.EINVAL, errno.EIO):
                raise NoSuchProcess(path) from e
            if e.errno in (errno.EACCES, errno.EPERM):
                raise AccessDenied(path) from e
            raise
        if len(data) == _HELD_CHUNK:  # not expected for these small files: read it whole
            return read_bytes(path)
        return data

    def forget(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def pids(self) -> list[int]:
        return list(self._fds)

    def close(self) -> None:
        _close_all(self._fds)


def _close_all(fds: dict[int, int]) -> None:
    """Each fd taken out before it is closed: closed once, even if this is called again (the
    finalizer after close) or fails half-way; a number closed twice may be another file's by then."""
    while fds:
        try:
            _pid, fd = fds.popitem()
        except KeyError:  # emptied meanwhile
            return
        try:
            os.close(fd)
        except OSError:
            pass
