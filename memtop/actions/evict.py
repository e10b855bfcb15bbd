"""Evict files from the page cache: posix_fadvise(POSIX_FADV_DONTNEED), with before/after proof.

POSIX_FADV_DONTNEED (mm/fadvise.c) drops a file's clean, unmapped page-cache pages at once; dirty
pages are only queued for writeback and stay cached, and pages mapped by a process stay too. So
the result reports cached bytes before and after (cachestat(2), memtop.procfs.cachestat) and the
dirty bytes that could not be dropped. ``sync`` first writes dirty pages with fdatasync(2).

Only regular files are opened: a FIFO's open blocks, a device's open can have side effects.

Check, then act (issue 15, item 4). memtop runs as root among users who can rename files under
their own directories: a file shown (TUI) or found (``-r``) a moment ago may be a symbolic link
to another file by the time it is acted on. So :func:`check_paths` pins each file when it is
shown or found: the path resolved to one without symbolic links (a link named by the user is
followed once, here, and the dialog shows where it leads) and the file's device, inode, size
and mtime. :func:`evict_checked` then opens that path component by component with O_NOFOLLOW
(no link is followed anywhere), compares lstat before the open and fstat after it with the pin,
and refuses, doing nothing, if anything changed; the refusal is in the audit log.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import time
from dataclasses import dataclass, field

from memtop.actions import audit
from memtop.model.pagecache import FileCacheStat
from memtop.procfs import memory_fs_of
from memtop.procfs.cachestat import HELD_BY_MEMTOP, NO_PAGE_CACHE, own_open_files, stat_open_fd

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0) | os.O_NOFOLLOW
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

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
    refused: bool = False  # the file changed between the check and the act: nothing was done
    device: int | None = None  # the file acted on (or pinned), for the audit log
    inode: int | None = None
    memory_fs: str | None = None  # "tmpfs", "ramfs", "hugetlbfs": its pages are the file, not cache

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
        """"refused" (the file changed since it was checked: nothing done), "failed" (nothing
        done), "complete" (no page left cached), "partial" (pages stayed), or "unknown" (advised,
        but the kernel cannot say what is left)."""
        if self.refused:
            return "refused"
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
            "refused": self.refused,
            "device": self.device,
            "inode": self.inode,
            "synced": self.synced,
            "cached_before_bytes": self.before.cached_bytes if self.before else None,
            "cached_after_bytes": self.after.cached_bytes if self.after else None,
            "dropped_bytes": self.dropped_bytes,
            "dirty_kept_bytes": self.kept_dirty_bytes,
            "other_kept_bytes": self.kept_other_bytes,
            "outcome": self.outcome,
            "unknown_reason": self.unknown_reason,
            "memory_fs": self.memory_fs,
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


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What pins a file between the check and the act: device, inode, size and mtime."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> "FileIdentity":
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def change(self, st: os.stat_result) -> str | None:
        """How the file ``st`` differs from this pin, in words, or None when it is the same."""
        if not stat_mod.S_ISREG(st.st_mode):
            return f"it is now {_kind(st.st_mode)}"
        if (st.st_dev, st.st_ino) != (self.device, self.inode):
            return "it was replaced by another file"
        if st.st_size != self.size or st.st_mtime_ns != self.mtime_ns:
            return "it was modified (size or mtime changed)"
        return None


@dataclass(frozen=True, slots=True)
class EvictTarget:
    """One file as checked: the name it was given or found by, the path without symbolic links
    that will be opened, and its pinned identity; or ``early``, the result when the check
    itself found it cannot be evicted."""

    path: str
    resolved: str | None = None
    pinned: FileIdentity | None = None
    early: EvictResult | None = None

    @property
    def via_link(self) -> bool:
        return self.resolved is not None and self.resolved != os.path.abspath(self.path)


def check_file(path: str, *, follow_symlinks: bool = True) -> EvictTarget:
    """Pin one file (see the module doc). A symbolic link named by the user is followed here,
    once; ``follow_symlinks`` False refuses it (files found by walking a tree)."""
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError as e:
        return EvictTarget(path, early=_os_error(path, e))
    if not stat_mod.S_ISREG(st.st_mode):
        return EvictTarget(path, early=EvictResult(path, False, f"{_kind(st.st_mode)}: only regular files can be evicted"))
    resolved = os.path.realpath(path)
    try:
        again = os.lstat(resolved)
    except OSError as e:
        return EvictTarget(path, early=_os_error(path, e))
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) or not stat_mod.S_ISREG(again.st_mode):
        return EvictTarget(path, early=EvictResult(path, False, "the file changed while it was being checked; nothing done",
                                                   refused=True))
    return EvictTarget(path, resolved, FileIdentity.of(again))


def check_paths(paths, recursive: bool = False) -> list[EvictTarget]:
    """Pin every file to act on: files as given; the regular files under directories when
    ``recursive`` (symbolic links inside are not followed); errors as early results."""
    out: list[EvictTarget] = []
    for path, early in expand(paths, recursive):
        if early is not None:
            out.append(EvictTarget(path, early=early))
        else:
            out.append(check_file(path, follow_symlinks=not getattr(path, "found_in_tree", False)))
    return out


class _TreePath(str):
    """A path found by walking a tree (not named by the user): never followed if a link."""

    found_in_tree = True


def _open_pinned(target: EvictTarget, own: frozenset[tuple[int, int]]) -> tuple[int | None, str | None]:
    """Open ``target.resolved`` without following any symbolic link, and only if it is still
    the pinned file: (fd, None), or (None, why it changed)."""
    parts = [part for part in target.resolved.split("/") if part]
    if not parts:
        return None, "it is not a file"
    dir_fd = os.open("/", _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    return None, f"a directory on its path ({part}) was replaced by a symbolic link or a file"
                if e.errno == errno.ENOENT:
                    return None, f"a directory on its path ({part}) no longer exists"
                raise
            os.close(dir_fd)
            dir_fd = next_fd
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None, "it no longer exists"
        if stat_mod.S_ISLNK(st.st_mode):
            return None, "it was replaced by a symbolic link"
        change = target.pinned.change(st)
        if change:  # checked before the open: a FIFO or a device put in its place is never opened
            return None, change
        if (st.st_dev, st.st_ino) in own:
            return None, HELD_BY_MEMTOP
        try:
            fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return None, "it was replaced by a symbolic link"
            if e.errno == errno.ENOENT:
                return None, "it no longer exists"
            raise
    finally:
        os.close(dir_fd)
    change = target.pinned.change(os.fstat(fd))
    if change:
        os.close(fd)
        return None, change
    return fd, None


def evict_target(target: EvictTarget, *, sync: bool = False, own: frozenset[tuple[int, int]] | None = None) -> EvictResult:
    """Evict one checked file if it is still the file that was checked; never raises for a
    file-level problem."""
    if target.early is not None:
        return target.early
    path = target.path
    pin = target.pinned
    try:
        fd, change = _open_pinned(target, own_open_files() if own is None else own)
    except OSError as e:
        return _os_error(path, e)
    if fd is None and change == HELD_BY_MEMTOP:
        return EvictResult(path, False, f"{HELD_BY_MEMTOP}: nothing done", device=pin.device, inode=pin.inode)
    if fd is None:
        return EvictResult(path, False, f"the file changed since it was checked ({change}): nothing done",
                           refused=True, device=pin.device, inode=pin.inode)
    try:
        fst = os.fstat(fd)
        ids = {"device": fst.st_dev, "inode": fst.st_ino}
        before = stat_open_fd(path, fd, fst)
        if before.cached_bytes is None and (before.reason or "").endswith(NO_PAGE_CACHE):
            # procfs, sysfs...: no page cache to drop; said as such, not "evicted" (and exit 1,
            # as `memtop cache` on the same path)
            return EvictResult(path, False, before.reason, before=before, **ids)
        synced = False
        if sync:
            try:
                os.fdatasync(fd)  # write dirty pages so that DONTNEED can drop them
                synced = True
            except OSError as e:
                return EvictResult(path, False, f"fdatasync failed: {os.strerror(e.errno or 0)}", before=before, **ids)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # len 0: to the end of the file
        except OSError as e:
            return EvictResult(path, False, f"posix_fadvise failed: {os.strerror(e.errno or 0)}", before=before, **ids)
        after = stat_open_fd(path, fd, os.fstat(fd))
        return EvictResult(path, True, None, before, after, synced, memory_fs=memory_fs_of(fd), **ids)
    finally:
        os.close(fd)


def evict_file(path: str, *, sync: bool = False, follow_symlinks: bool = True) -> EvictResult:
    """Check and evict one regular file at once; never raises for a file-level problem."""
    return evict_target(check_file(path, follow_symlinks=follow_symlinks), sync=sync)


def expand(paths, recursive: bool) -> list[tuple[str, EvictResult | None]]:
    """Paths to act on: files as given; directories walked when ``recursive`` (symlinks inside
    are not followed), otherwise an error result for them. Files found in a tree are
    :class:`_TreePath` strings (never followed if they become links)."""
    out: list[tuple[str, EvictResult | None]] = []
    for raw in paths:
        path = os.fspath(raw)
        try:
            is_dir = stat_mod.S_ISDIR(os.stat(path).st_mode)
        except OSError:
            is_dir = False  # the check reports it
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
                out.append((_TreePath(full), None))
                if len(out) >= MAX_FILES:
                    out.append((path, EvictResult(path, False, f"stopped after {MAX_FILES} files")))
                    return out
        for e in errors:
            where = getattr(e, "filename", None) or path
            out.append((where, _os_error(where, e)))
    return out


@dataclass(frozen=True, slots=True)
class EvictOutcome:
    """The results, one per file in order, and the audit log's warning (None when written)."""

    results: list = field(default_factory=list)
    log_warning: str | None = None


def evict_checked(targets: list[EvictTarget], *, sync: bool = False, named=None, recursive: bool = False,
                  log: bool = True) -> EvictOutcome:
    """Act on checked files (see the module doc); one audit line in all, refusals included.
    ``named``: the paths as the user gave them, for the log (default: each target's path)."""
    started = time.monotonic()
    own = own_open_files()
    results = [evict_target(target, sync=sync, own=own) for target in targets]
    warning = None
    if log:
        dropped = sum(r.dropped_bytes or 0 for r in results)
        named = [os.fspath(p) for p in named] if named is not None else [t.path for t in targets]
        per_file = []
        for target, r in zip(targets[:200], results):
            entry = r.as_json()
            if target.via_link:
                entry["resolved"] = target.resolved
            per_file.append(entry)
        warning = audit.log_action(
            "evict", {"paths": named, "recursive": recursive, "sync": sync},
            prediction=None,
            result={"files": len(results), "failed": sum(not r.ok for r in results),
                    "refused": sum(r.refused for r in results),
                    "partial": sum(r.outcome == "partial" for r in results), "dropped_bytes": dropped,
                    "per_file": per_file},
            duration_s=time.monotonic() - started)
    return EvictOutcome(results, warning)


def evict_paths(paths, recursive: bool = False, sync: bool = False, *, log: bool = True) -> list[EvictResult]:
    """Check, then evict each path at once (see module doc); one result per file, in order."""
    return evict_checked(check_paths(paths, recursive), sync=sync, named=paths, recursive=recursive, log=log).results
