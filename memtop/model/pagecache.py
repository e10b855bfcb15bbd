"""The page cache of one file, and of the system (vmstat rates), as immutable records."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

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


@dataclass(frozen=True, slots=True)
class CachedFile:
    """A file in a page-cache list, with who holds it (source a/b) and its residency."""

    stat: FileCacheStat
    pids: tuple[int, ...] = ()  # processes that map it or hold it open (empty for a tree scan)

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
