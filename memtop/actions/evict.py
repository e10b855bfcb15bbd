"""Evict files from the page cache: posix_fadvise(POSIX_FADV_DONTNEED), with before/after proof.

POSIX_FADV_DONTNEED (mm/fadvise.c) drops a file's clean, unmapped page-cache pages at once; dirty
pages are only queued for writeback and stay cached, and pages mapped by a process stay too. So
the result reports cached bytes before and after (cachestat(2), memtop.procfs.cachestat) and the
dirty bytes that could not be dropped. ``sync`` first writes dirty pages with fdatasync(2).

Only regular files are opened: a FIFO's open blocks, a device's open can have side effects. The
path is stat'ed first, opened with O_NONBLOCK as a second guard, and fstat'ed after the open to
make sure it is still the same regular file. Opening for reading is enough for fadvise.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import time
from dataclasses import dataclass

from memtop.actions import audit
from memtop.model.pagecache import FileCacheStat
from memtop.procfs.cachestat import stat_open_fd

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)

# A recursive eviction stops after this many files (a typo'd `-r /` should not run for hours).
MAX_FILES = 100_000


@dataclass(frozen=True, slots=True)
class EvictResult:
    """One path's outcome. ``ok`` False means nothing was done to it; ``error`` says why."""

    path: str
    ok: bool
    error: str | None = None
    before: FileCacheStat | None = None
    after: FileCacheStat | None = None
    synced: bool = False

    @property
    def dropped_bytes(self) -> int | None:
        if self.before is None or self.after is None or self.before.cached_bytes is None or self.after.cached_bytes is None:
            return None
        return self.before.cached_bytes - self.after.cached_bytes

    @property
    def kept_dirty_bytes(self) -> int | None:
        """Dirty and writeback pages still cached after the advice: they could not be dropped."""
        if self.after is None or self.after.dirty_bytes is None:
            return None
        return self.after.dirty_bytes + (self.after.writeback_bytes or 0)

    @property
    def kept_other_bytes(self) -> int | None:
        """Pages still cached after the advice that were not dirty: mapped by a process (DONTNEED
        leaves mapped pages), locked, or read again by someone between the advice and the check."""
        if self.after is None or self.after.cached_bytes is None:
            return None
        return max(0, self.after.cached_bytes - (self.kept_dirty_bytes or 0))

    @property
    def outcome(self) -> str:
        """"failed" (nothing done), "complete" (no page left cached), "partial" (pages stayed),
        or "unknown" (advised, but the kernel cannot say what is left)."""
        if not self.ok:
            return "failed"
        if self.after is None or self.after.cached_bytes is None:
            return "unknown"
        return "complete" if self.after.cached_bytes == 0 else "partial"

    @property
    def unknown_reason(self) -> str | None:
        for s in (self.before, self.after):
            if s is not None and s.cached_bytes is None:
                return s.reason
        return None

    def as_json(self) -> dict:
        return {
            "path": self.path,
            "ok": self.ok,
            "error": self.error,
            "synced": self.synced,
            "cached_before_bytes": self.before.cached_bytes if self.before else None,
            "cached_after_bytes": self.after.cached_bytes if self.after else None,
            "dropped_bytes": self.dropped_bytes,
            "dirty_kept_bytes": self.kept_dirty_bytes,
            "other_kept_bytes": self.kept_other_bytes,
            "outcome": self.outcome,
            "unknown_reason": self.unknown_reason,
        }


def _kind(mode: int) -> str:
    for test, name in ((stat_mod.S_ISDIR, "a directory"), (stat_mod.S_ISFIFO, "a FIFO"),
                       (stat_mod.S_ISSOCK, "a socket"), (stat_mod.S_ISCHR, "a character device"),
                       (stat_mod.S_ISBLK, "a block device"), (stat_mod.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def _os_error(path: str, e: OSError) -> EvictResult:
    if e.errno == errno.ENOENT:
        return EvictResult(path, False, "no such file or directory")
    if e.errno == errno.ELOOP:
        return EvictResult(path, False, "too many levels of symbolic links (a symlink loop)")
    if e.errno in (errno.EACCES, errno.EPERM):
        return EvictResult(path, False, "permission denied")
    return EvictResult(path, False, os.strerror(e.errno or 0) or str(e))


def evict_file(path: str, *, sync: bool = False, follow_symlinks: bool = True) -> EvictResult:
    """Evict one regular file; never raises for a file-level problem."""
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError as e:
        return _os_error(path, e)
    if not stat_mod.S_ISREG(st.st_mode):
        return EvictResult(path, False, f"{_kind(st.st_mode)}: only regular files can be evicted")
    flags = _OPEN_FLAGS | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        return _os_error(path, e)
    try:
        fst = os.fstat(fd)
        if not stat_mod.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            return EvictResult(path, False, "the file changed while it was being opened; nothing done")
        before = stat_open_fd(path, fd, fst)
        synced = False
        if sync:
            try:
                os.fdatasync(fd)  # write dirty pages so that DONTNEED can drop them
                synced = True
            except OSError as e:
                return EvictResult(path, False, f"fdatasync failed: {os.strerror(e.errno or 0)}", before=before)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # len 0: to the end of the file
        except OSError as e:
            return EvictResult(path, False, f"posix_fadvise failed: {os.strerror(e.errno or 0)}", before=before)
        after = stat_open_fd(path, fd, os.fstat(fd))
        return EvictResult(path, True, None, before, after, synced)
    finally:
        os.close(fd)


def expand(paths, recursive: bool) -> list[tuple[str, EvictResult | None]]:
    """Paths to act on: files as given; directories walked when ``recursive`` (symlinks inside
    are not followed), otherwise an error result for them."""
    out: list[tuple[str, EvictResult | None]] = []
    for raw in paths:
        path = os.fspath(raw)
        try:
            is_dir = stat_mod.S_ISDIR(os.stat(path).st_mode)
        except OSError:
            is_dir = False  # evict_file reports it
        if not is_dir:
            out.append((path, None))
            continue
        if not recursive:
            out.append((path, EvictResult(path, False, "a directory: add -r to evict the files under it")))
            continue
        errors: list[OSError] = []
        for dirpath, dirnames, filenames in os.walk(path, onerror=errors.append, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                try:
                    if not stat_mod.S_ISREG(os.lstat(full).st_mode):
                        continue  # symlinks, FIFOs, sockets, devices under a tree are skipped
                except OSError:
                    continue
                out.append((full, None))
                if len(out) >= MAX_FILES:
                    out.append((path, EvictResult(path, False, f"stopped after {MAX_FILES} files")))
                    return out
        for e in errors:
            where = getattr(e, "filename", None) or path
            out.append((where, _os_error(where, e)))
    return out


def evict_paths(paths, recursive: bool = False, sync: bool = False, *, log: bool = True) -> list[EvictResult]:
    """Evict each path (see module doc); one result per file, in order. One audit line in all."""
    started = time.monotonic()
    results = []
    for path, early in expand(paths, recursive):
        if early is not None:
            results.append(early)
        else:
            # Files found by walking a tree are regular files already; a symlink named by the
            # user is followed (that is what they asked for), a loop is an error.
            results.append(evict_file(path, sync=sync))
    if log:
        dropped = sum(r.dropped_bytes or 0 for r in results)
        audit.log_action(
            "evict", {"paths": [os.fspath(p) for p in paths], "recursive": recursive, "sync": sync},
            prediction=None,
            result={"files": len(results), "failed": sum(not r.ok for r in results),
                    "partial": sum(r.outcome == "partial" for r in results), "dropped_bytes": dropped,
                    "per_file": [r.as_json() for r in results[:200]]},
            duration_s=time.monotonic() - started)
    return results
