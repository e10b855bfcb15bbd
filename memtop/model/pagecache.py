"""The page cache of one file, and of the system (vmstat rates), as immutable records."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

# How a residency figure was obtained.
METHOD_CACHESTAT = "cachestat"  # cachestat(2), Linux >= 6.5: cached, dirty, writeback, evicted
METHOD_MINCORE = "mincore"  # mmap(2) + mincore(2): cached pages only
METHOD_NONE = "none"  # nothing could be read: every figure is None and ``reason`` says why


@dataclass(frozen=True, slots=True)
class FileCacheStat:
    """Page cache residency of one file, in bytes (pages x page size).

    A figure that could not be known is None and ``reason`` says why (e.g. mincore(2) would
    report every page resident for a file this user cannot write, so memtop refuses to use it).
    ``device``/``inode`` identify the file so that two names of one file count once.
    """

    path: str
    size_bytes: int | None
    cached_bytes: int | None
    dirty_bytes: int | None
    writeback_bytes: int | None
    evicted_bytes: int | None
    recently_evicted_bytes: int | None
    method: str
    reason: str | None = None
    device: int | None = None
    inode: int | None = None

    @property
    def known(self) -> bool:
        return self.cached_bytes is not None

    @property
    def cached_fraction(self) -> float | None:
        """Cached bytes over the file size (a partly cached last page can make it exceed 1)."""
        if self.cached_bytes is None or self.size_bytes is None:
            return None
        if self.size_bytes == 0:
            return 0.0
        return min(1.0, self.cached_bytes / self.size_bytes)

    @classmethod
    def fast_new(cls, path, size, cached, dirty, writeback, evicted, recent, method, reason, device, inode):
        """The same frozen record as ``cls(...)``, built ~40 % faster.

        The dataclass ``__init__`` of a frozen class sets each field through
        ``object.__setattr__``; this sets the slots through their descriptors instead. It is the
        hot path of a 10,000-file tree scan (bench/pagecache.py), nothing else needs it.
        """
        obj = _new(cls)
        _set_path(obj, path)
        _set_size(obj, size)
        _set_cached(obj, cached)
        _set_dirty(obj, dirty)
        _set_writeback(obj, writeback)
        _set_evicted(obj, evicted)
        _set_recent(obj, recent)
        _set_method(obj, method)
        _set_reason(obj, reason)
        _set_device(obj, device)
        _set_inode(obj, inode)
        return obj

    def as_json(self) -> dict:
        return {
            "path": self.path,
            "size_bytes": self.size_bytes,
            "cached_bytes": self.cached_bytes,
            "dirty_bytes": self.dirty_bytes,
            "writeback_bytes": self.writeback_bytes,
            "evicted_bytes": self.evicted_bytes,
            "recently_evicted_bytes": self.recently_evicted_bytes,
            "method": self.method,
            "reason": self.reason,
        }


_new = object.__new__
(
    _set_path, _set_size, _set_cached, _set_dirty, _set_writeback, _set_evicted, _set_recent,
    _set_method, _set_reason, _set_device, _set_inode,
) = (getattr(FileCacheStat, name).__set__ for name in FileCacheStat.__slots__)


@dataclass(frozen=True, slots=True)
class CachedFile:
    """A file in a page-cache list, with who holds it (source a/b) and its residency."""

    stat: FileCacheStat
    pids: tuple[int, ...] = ()  # processes that map it or hold it open

    @property
    def path(self) -> str:
        return self.stat.path


@dataclass(frozen=True, slots=True)
class TreeScanProgress:
    """Where a directory scan is: files looked at so far, whether it stopped and why."""

    root: str
    files_seen: int
    limit: int
    done: bool
    truncated: bool = False  # stopped at the file-count limit
    cancelled: bool = False
    skipped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))  # kind -> count


# What a tree scan skipped, by kind (memtop/procfs/treescan.py): singular, plural.
_SKIPPED_NAMES = {
    "symlink": ("symbolic link", "symbolic links"),
    "fifo": ("FIFO", "FIFOs"),
    "socket": ("socket", "sockets"),
    "device": ("device", "devices"),
    "other": ("other special file", "other special files"),
    "unreadable": ("unreadable entry", "unreadable entries"),
    "vanished": ("entry gone meanwhile", "entries gone meanwhile"),
    "loop": ("directory seen twice", "directories seen twice"),
    "pseudo-fs": ("pseudo-filesystem directory", "pseudo-filesystem directories"),
}


def one_per_inode(stats: Iterable[FileCacheStat]) -> list[FileCacheStat]:
    """``stats`` with each file once: a name that is a hard link to a file met before (same
    device and inode) is left out, as vmtouch counts it, so that totals count its pages once.
    A file whose inode is unknown stays."""
    seen: set[tuple[int, int]] = set()
    out = []
    for s in stats:
        if s.device is not None:
            key = (s.device, s.inode)
            if key in seen:
                continue
            seen.add(key)
        out.append(s)
    return out


def skipped_text(skipped: Mapping[str, int]) -> str:
    """What a scan skipped, in words: "803 symbolic links, 1 FIFO" ("" when nothing)."""
    parts = []
    for kind, count in sorted(skipped.items()):
        if count:
            one, many = _SKIPPED_NAMES.get(kind, (kind, kind))
            parts.append(f"{count:,} {one if count == 1 else many}")
    return ", ".join(parts)


# /proc/vmstat counters of the thrashing panel (counters, so shown as rates per second).
VMSTAT_RATE_KEYS = (
    "pgpgin",  # KiB read from block devices (vmstat's bi)
    "pgpgout",  # KiB written to block devices (vmstat's bo)
    "pgmajfault",
    "workingset_refault_file",
    "workingset_refault_anon",
    "workingset_activate_file",
    "workingset_activate_anon",
)


@dataclass(frozen=True, slots=True)
class VmstatRates:
    """Per-second rates of /proc/vmstat counters between two reads ``interval_s`` apart.

    pgpgin/pgpgout are counted by the kernel in KiB (vmstat(8)'s bi/bo), so their rates are KiB/s;
    the workingset_* and pgmajfault rates are pages (events) per second. A counter that is
    missing from this kernel's vmstat is absent from ``rates``.
    """

    interval_s: float
    rates: Mapping[str, float]
    time: float  # monotonic time of the second read

    def get(self, key: str) -> float | None:
        return self.rates.get(key)



@dataclass(frozen=True, slots=True)
class FilesView:
    """A list of files measured for the page cache tab: source (a) one process's, (b) every
    process's; ``note`` says what was measured, or why the list is empty."""

    files: tuple[CachedFile, ...]
    note: str
    pid: int | None = None  # source (a): whose files
    processes_seen: int | None = None  # source (b)
    processes_denied: int | None = None
    method: str = ""  # how the files were measured: cachestat(2), or mmap(2)+mincore(2) before 6.5


@dataclass(frozen=True, slots=True)
class TreeView:
    """Source (c): the files of a directory scan, and where the scan is."""

    root: str
    files: tuple[CachedFile, ...]
    progress: TreeScanProgress
    error: str | None = None
    holders_note: str = ""  # how old the listing of who holds the files is, who could not be read


@dataclass(frozen=True, slots=True)
class VmstatView:
    """The thrashing counters' rates, tick by tick, oldest first."""

    history: tuple[VmstatRates, ...]
    counters: Mapping[str, int] | None = None  # the last read, raw (what a recording stores)

    @property
    def latest(self) -> VmstatRates | None:
        return self.history[-1] if self.history else None

    def window(self, n: int) -> tuple[VmstatRates, ...]:
        return self.history[-n:]
