"""The runtime's and the application's own view of a process, read from outside, read-only.

Entry point: :func:`read_runtime`. One reader per runtime (:mod:`.hsperfdata` for the JVM,
:mod:`.cpython`, :mod:`.golang`, :mod:`.node`) and one for applications recognised by their
executable (:mod:`.apps`: postgres, MariaDB/MySQL, redis). Nothing here stops the target, calls
into it or connects to it: the JVM's PerfData file, /proc/PID/maps, smaps, mem and pagemap, and
the program's ELF symbols are all that is read. A reader never raises for a vanished or forbidden
process: the report's status and reason say what happened.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from memtop.heap.memory import Mapping
from memtop.model.runtime import Region, RuntimeReport
from memtop.procfs import ProcfsError, read_bytes


@dataclass(frozen=True)
class Target:
    """What the readers share about one process (read once by the caller)."""

    pid: int
    root: Path
    maps: list[Mapping]
    smaps: dict[int, dict[str, int]]  # mapping start -> {Rss, Anonymous, ...} in bytes
    rss_bytes: int | None = None
    runtime_kind: str = "none"  # from memtop.heap.detect.detect_runtime
    runtime_version: str | None = None
    uids: tuple[int, ...] = ()  # real, effective, saved, fs (/proc/PID/status Uid:)
    nspid: int | None = None  # the PID inside the process's own PID namespace (NSpid:)
    exe: str = ""
    cmdline: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def rss_of(self, start: int, end: int, key: str = "Rss") -> int | None:
        """Sum of an smaps field over the mappings inside [start, end) (None without smaps)."""
        if not self.smaps:
            return None
        return sum(self.smaps.get(m.start, {}).get(key, 0) for m in self.maps if start <= m.start and m.end <= end)


def read_status_ids(pid: int, root: Path) -> tuple[tuple[int, ...], int | None]:
    """(Uid: fields, last NSpid: field) from /proc/PID/status."""
    text = read_bytes(f"{root}/{pid}/status").decode("ascii", "replace")
    uids: tuple[int, ...] = ()
    nspid = None
    for line in text.splitlines():
        if line.startswith("Uid:"):
            uids = tuple(int(v) for v in line.split()[1:])
        elif line.startswith("NSpid:"):
            parts = line.split()[1:]
            if parts:
                nspid = int(parts[-1])
    return uids, nspid


def make_target(pid: int, root: Path, maps: list[Mapping], smaps: dict[int, dict[str, int]],
                rss_bytes: int | None, runtime_kind: str = "none", runtime_version: str | None = None) -> Target:
    uids: tuple[int, ...] = ()
    nspid = None
    exe = ""
    cmdline: tuple[str, ...] = ()
    try:
        uids, nspid = read_status_ids(pid, root)
    except (ProcfsError, ValueError):
        pass
    try:
        exe = os.readlink(f"{root}/{pid}/exe")
    except OSError:
        pass
    try:
        raw = read_bytes(f"{root}/{pid}/cmdline")[: 1 << 16]
        cmdline = tuple(a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0") if a)
    except ProcfsError:
        pass
    return Target(pid, Path(root), maps, smaps, rss_bytes, runtime_kind, runtime_version, uids, nspid, exe, cmdline)


def read_runtime(target: Target) -> RuntimeReport | None:
    """The runtime's report for a recognised runtime, else the application's, else None."""
    started = time.monotonic()
    report = None
    kind = target.runtime_kind
    if kind == "jvm":
        from memtop.runtime.hsperfdata import jvm_report

        report = jvm_report(target)
    elif kind == "cpython":
        from memtop.runtime.cpython import cpython_report

        report = cpython_report(target)
    elif kind == "go":
        from memtop.runtime.golang import go_report

        report = go_report(target)
    elif kind == "node":
        from memtop.runtime.node import node_report

        report = node_report(target)
    if report is None:
        from memtop.runtime.apps import application_report

        report = application_report(target)
    if report is None:
        return None
    from dataclasses import replace

    return replace(report, read_seconds=time.monotonic() - started)


def regions_in(maps: list[Mapping], start: int, end: int) -> list[Mapping]:
    return [m for m in maps if start <= m.start and m.end <= end]


_SAFE_NAME = re.compile(r"^[^/\0]{1,255}$")


def is_plain_name(name: str) -> bool:
    """A single path component (no slash, not . or ..)."""
    return bool(_SAFE_NAME.match(name)) and name not in (".", "..")


__all__ = ["Target", "make_target", "read_runtime", "Region", "RuntimeReport"]


class RootUnreadable(OSError):
    """/proc/PID/root itself could not be opened (the process exited, or no access to it)."""


@contextmanager
def opened_in_root(target: Target, parts: list[str], last_flags: int) -> Iterator[int]:
    """The fd of ``parts`` below /proc/PID/root (the files as the process sees them), opened one
    component at a time with O_NOFOLLOW, the last with ``last_flags``: a symlink anywhere fails
    with ELOOP or ENOTDIR, never followed. Every fd opened is closed on leaving.

    Unless it must be a directory (O_DIRECTORY), the last component is first opened O_PATH and
    opened for reading only when it is a regular file: opening a device (a watchdog arms, a tape
    rewinds) or a FIFO (a writer waiting on it goes on) acts on it, and a command line can name
    any path. Anything else is yielded as the O_PATH fd: fstat says what it is."""
    if not parts:
        raise FileNotFoundError(errno.ENOENT, "no path below the root")
    fds: list[int] = []
    try:
        try:
            fds.append(os.open(f"{target.root}/{target.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        except OSError as e:
            raise RootUnreadable(e.errno, e.strerror) from None
        for name in parts[:-1]:
            fds.append(os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fds[-1]))
        if last_flags & os.O_DIRECTORY:
            fds.append(os.open(parts[-1], last_flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fds[-1]))
        else:
            fds.append(os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fds[-1]))
            mode = os.fstat(fds[-1]).st_mode
            if stat.S_ISLNK(mode):  # O_PATH|O_NOFOLLOW opens the link itself: refused as O_NOFOLLOW does
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
            if stat.S_ISREG(mode):
                # the same inode, reopened through our own fd table: no lookup by name again
                fds.append(os.open(f"/proc/self/fd/{fds[-1]}", last_flags | os.O_CLOEXEC))
        yield fds[-1]
    finally:
        for fd in fds:
            os.close(fd)


def read_file_in_root(target: Target, path: str, max_bytes: int = 1 << 20) -> tuple[bytes | None, str | None]:
    """(content, why-not) of ``path`` as the process sees it (below /proc/PID/root), opened one
    component at a time with O_NOFOLLOW: a symlink anywhere is refused, never followed; a FIFO
    does not block (O_NONBLOCK) and is refused; at most ``max_bytes`` are read."""
    parts = [p for p in path.split("/") if p]
    if not path.startswith("/") or not parts or not all(is_plain_name(p) for p in parts):
        return None, f"{path}: not a plain absolute path"
    try:
        with opened_in_root(target, parts, os.O_RDONLY | os.O_NONBLOCK) as fd:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None, f"{path}: not a regular file"
            # Only what the process itself could read: its command line must not make root read a
            # file for it (group permissions are not considered: such files are refused).
            uid = target.uids[1] if len(target.uids) > 1 else None
            if uid is not None and uid != 0 and not (st.st_mode & 0o004 or (st.st_uid == uid and st.st_mode & 0o400)):
                return None, f"{path}: not readable by the process's uid {uid}"
            return os.pread(fd, max_bytes, 0), None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            return None, f"{path}: a symlink (or a non-directory) in the path, not followed"
        return None, f"{path}: {os.strerror(e.errno) if e.errno else e}"


def list_dir_in_root(target: Target, path: str, limit: int = 256) -> list[str]:
    """Names in a directory as the process sees it, opened like :func:`read_file_in_root`."""
    parts = [p for p in path.split("/") if p]
    if not all(is_plain_name(p) for p in parts):
        return []
    try:
        with opened_in_root(target, parts, os.O_RDONLY | os.O_DIRECTORY) as fd:
            return sorted(os.listdir(fd))[:limit]
    except OSError:
        return []
