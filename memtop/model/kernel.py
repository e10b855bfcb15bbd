"""Kernel memory outside any RSS: slab caches, meminfo's kernel categories, socket buffers,
file descriptors; and what two or more samples tell about them (growth, fd leaks).

Everything is bytes or counts. Unknown is None, with a reason beside it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from memtop.model.findings import Finding, Severity
from memtop.model.process import History, ProcessView

# --- slab caches (/proc/slabinfo) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlabCache:
    """One line of /proc/slabinfo (version 2.x), with the sizes slabtop derives from it."""

    name: str
    active_objs: int
    num_objs: int
    objsize: int
    objperslab: int
    pagesperslab: int
    active_slabs: int
    num_slabs: int
    page_size: int

    @property
    def total_bytes(self) -> int:
        """Memory the cache holds: slabs x pages per slab x page size (slabtop's CACHE SIZE)."""
        return self.num_slabs * self.pagesperslab * self.page_size

    @property
    def active_bytes(self) -> int:
        """Memory in objects that are in use: active objects x object size."""
        return self.active_objs * self.objsize

    @property
    def active_fraction(self) -> float | None:
        """Share of the objects in use (slabtop's USE); None for an empty cache."""
        return self.active_objs / self.num_objs if self.num_objs else None


@dataclass(frozen=True, slots=True)
class SlabInfo:
    """All of /proc/slabinfo at one moment."""

    version: str
    statistics: bool  # "(statistics)" header: a CONFIG_DEBUG_SLAB kernel with extra columns
    caches: tuple[SlabCache, ...]

    @property
    def total_bytes(self) -> int:
        return sum(c.total_bytes for c in self.caches)

    @property
    def active_bytes(self) -> int:
        return sum(c.active_bytes for c in self.caches)


@dataclass(frozen=True, slots=True)
class SlabRow:
    """A cache as the Kernel tab shows it: the sample, its growth, and whether it is reclaimable."""

    cache: SlabCache
    growth_bytes_per_min: float | None  # total_bytes change per minute over the window
    reclaimable: bool | None  # /sys/kernel/slab/NAME/reclaim_account (SLAB_RECLAIM_ACCOUNT)


# --- meminfo's kernel categories -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeminfoCategory:
    key: str  # the meminfo key, or "Unexplained" for the remainder
    bytes: int | None
    meaning: str


# meminfo keys whose memory belongs to the kernel (or to tmpfs/buffers, which no RSS shows),
# with one line each on what it is (Documentation/filesystems/proc.rst, "meminfo").
KERNEL_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("SReclaimable", "slab caches the kernel can shrink under pressure (dentries, inodes, ...)"),
    ("SUnreclaim", "slab memory that cannot be reclaimed: objects in use by the kernel, large kmallocs"),
    ("KernelStack", "the kernel stacks of all threads (16 KiB each on x86-64)"),
    ("PageTables", "page tables mapping processes' virtual memory (grows with mapped memory)"),
    ("SecPageTables", "secondary page tables: KVM / IOMMU mappings"),
    ("Percpu", "per-CPU allocations (grow with CPUs and cgroups)"),
    ("VmallocUsed", "vmalloc'ed kernel memory in use (modules, big buffers, BPF)"),
    ("Shmem", "tmpfs, /dev/shm, SysV and shared anonymous memory (counted in Cached, not in RSS unless mapped)"),
    ("Buffers", "block-device page cache (filesystem metadata)"),
)

UNEXPLAINED_MEANING = (
    "MemTotal - MemFree - (AnonPages + Cached + Buffers + SwapCached + Hugetlb + Zswap) - "
    "(Slab + KernelStack + PageTables + SecPageTables + Percpu + VmallocUsed): memory no meminfo "
    "line accounts for: pages drivers take straight from the page allocator, and free pages held in per-CPU lists"
)

# Memory on the user side of the ledger: what processes and the page cache hold.
_USER_SIDE = ("AnonPages", "Cached", "Buffers", "SwapCached", "Hugetlb", "Zswap")
# Kernel side (Slab = SReclaimable + SUnreclaim). Shmem and Buffers are in Cached already.
_KERNEL_SIDE = ("Slab", "KernelStack", "PageTables", "SecPageTables", "Percpu", "VmallocUsed")


def unexplained_bytes(meminfo: Mapping[str, int]) -> int | None:
    """The remainder that no meminfo category explains (see UNEXPLAINED_MEANING); None if unknown."""
    try:
        used = meminfo["MemTotal"] - meminfo["MemFree"]
        user = sum(meminfo[k] for k in ("AnonPages", "Cached", "Buffers"))
    except KeyError:
        return None
    user += sum(meminfo.get(k, 0) for k in _USER_SIDE[3:])  # absent on older kernels: 0
    if "Slab" not in meminfo:
        return None
    kernel = sum(meminfo.get(k, 0) for k in _KERNEL_SIDE)
    return used - user - kernel


def meminfo_categories(meminfo: Mapping[str, int]) -> tuple[MeminfoCategory, ...]:
    """The kernel categories of meminfo, plus the unexplained remainder (last)."""
    rows = [MeminfoCategory(key, meminfo.get(key), meaning) for key, meaning in KERNEL_CATEGORIES]
    rows.append(MeminfoCategory("Unexplained", unexplained_bytes(meminfo), UNEXPLAINED_MEANING))
    return tuple(rows)


# --- sockets (/proc/net/sockstat, sockstat6) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class SockProtocol:
    """One protocol line of sockstat: its counters as printed, plus memory in bytes.

    ``mem`` is in pages (proto_memory_allocated(), net/ipv4/proc.c), so ``mem_bytes`` is
    mem x page size; FRAG's ``memory`` is already bytes (ip_frag_mem). None where the line has
    no memory figure.
    """

    name: str
    counts: Mapping[str, int]
    mem_bytes: int | None

    def get(self, key: str) -> int | None:
        return self.counts.get(key)


@dataclass(frozen=True, slots=True)
class Sockstat:
    """sockstat (+ sockstat6) of one network namespace."""

    sockets_used: int | None
    protocols: tuple[SockProtocol, ...]

    def protocol(self, name: str) -> SockProtocol | None:
        for p in self.protocols:
            if p.name == name:
                return p
        return None

    @property
    def mem_bytes(self) -> int:
        return sum(p.mem_bytes or 0 for p in self.protocols)


@dataclass(frozen=True, slots=True)
class NetNamespace:
    """A network namespace seen among processes, with its sockstat."""

    inode: int | None  # the nsfs inode of /proc/PID/ns/net; None when it could not be read
    pids: tuple[int, ...]  # processes in it (sorted)
    example: str  # "PID comm" of its lowest PID, to name it
    own: bool  # memtop itself runs in this namespace (what /proc/net/sockstat shows)
    sockstat: Sockstat | None
    reason: str | None = None  # why sockstat is None


# --- file descriptors ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileNr:
    """/proc/sys/fs/file-nr: allocated file handles, unused (always 0 since 2.6), maximum."""

    allocated: int
    unused: int
    maximum: int


@dataclass(frozen=True, slots=True)
class FdBreakdown:
    """What the fds of one process point to (readlink of /proc/PID/fd/*)."""

    pid: int
    total: int
    sockets: int
    pipes: int
    files: int
    anon_inodes: int
    other: int
    deleted_files: int  # files whose link ends in " (deleted)": their pages live while open
    anon_kinds: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))  # eventfd, eventpoll, ...
    unreadable: int = 0  # links that vanished or could not be read during the listing
    # TCP/UDP/UNIX socket states of the process (psutil's net_connections: its sockets' inodes
    # matched in /proc/PID/net/*), e.g. {"ESTABLISHED": 3, "CLOSE_WAIT": 40}; None: unknown (reason)
    socket_states: Mapping[str, int] | None = None
    socket_states_reason: str | None = None


# --- fd growth and leaks --------------------------------------------------------------------

FD_WINDOW_S = 60.0
FD_MIN_SPAN_S = 10.0
FD_MIN_POINTS = 4
LEAK_MIN_INCREASE = 10  # fds over the window: below this, growth is noise (a pool warming up)
LEAK_MIN_R2 = 0.8  # how well a straight line fits the counts: "steadily"
LEAK_MIN_RISING = 0.6  # share of ticks at which the count did not fall
# A process that just started opens its files, sockets and libraries: 13 -> 28 fds in 12 s is
# start-up, not a leak. Call it a leak only when the growth held over (about) a whole window and
# the process is older than a minute. 55 s, not 60: the oldest point of a 60 s window lands up to
# one tick after its start.
LEAK_MIN_SPAN_S = 55.0
LEAK_MIN_AGE_S = 60.0


@dataclass(frozen=True, slots=True)
class FdGrowth:
    """fd count growth of one process over a window of its history."""

    per_min: float  # least-squares slope of the count, per minute
    first: int
    last: int
    span_s: float
    points: int
    r2: float | None  # coefficient of determination of the straight-line fit; None if flat
    rising_share: float  # share of steps where the count did not decrease

    @property
    def steady(self) -> bool:
        return (
            self.per_min > 0
            and self.last - self.first >= LEAK_MIN_INCREASE
            and self.r2 is not None
            and self.r2 >= LEAK_MIN_R2
            and self.rising_share >= LEAK_MIN_RISING
        )


def fd_growth(times: tuple[float, ...], fds: tuple[int | None, ...], window_s: float = FD_WINDOW_S) -> FdGrowth | None:
    """Growth of the fd count over the last ``window_s`` of history, or None without enough of it.

    Uses a least-squares line through every known point in the window rather than the two end
    points, so one tick that lands between an open and a close does not swing the rate.
    """
    if len(times) < 2:
        return None
    start = bisect.bisect_left(times, times[-1] - window_s)
    points = [(t, n) for t, n in zip(times[start:], fds[start:]) if n is not None]
    if len(points) < FD_MIN_POINTS or points[-1][0] - points[0][0] < FD_MIN_SPAN_S:
        return None
    count = len(points)
    mean_t = sum(t for t, _ in points) / count
    mean_n = sum(n for _, n in points) / count
    stt = sum((t - mean_t) ** 2 for t, _ in points)
    stn = sum((t - mean_t) * (n - mean_n) for t, n in points)
    snn = sum((n - mean_n) ** 2 for _, n in points)
    slope = stn / stt if stt else 0.0
    r2 = (stn * stn) / (stt * snn) if stt and snn else None
    steps = [b[1] - a[1] for a, b in zip(points, points[1:])]
    rising = sum(1 for s in steps if s >= 0) / len(steps)
    return FdGrowth(
        per_min=slope * 60.0,
        first=points[0][1],
        last=points[-1][1],
        span_s=points[-1][0] - points[0][0],
        points=count,
        r2=r2,
        rising_share=rising,
    )


def history_fd_growth(history: History, window_s: float = FD_WINDOW_S) -> FdGrowth | None:
    """fd_growth over a process's History (Snapshot.history)."""
    return fd_growth(history.point_times(), history.column(2), window_s)


def fd_leak_finding(view: ProcessView, growth: FdGrowth | None, *, age_s: float | None = None,
                    min_span_s: float = LEAK_MIN_SPAN_S, min_age_s: float = LEAK_MIN_AGE_S) -> Finding | None:
    """A finding when the process's fd count grows steadily (see FdGrowth.steady) over at least
    ``min_span_s`` of history and the process is at least ``min_age_s`` old (``age_s`` None:
    unknown, the span alone decides)."""
    if growth is None or not growth.steady or growth.span_s < min_span_s:
        return None
    if age_s is not None and age_s < min_age_s:
        return None
    s = view.sample
    text = (
        f"PID {s.pid} ({s.comm}): open fds grew steadily from {growth.first} to {growth.last} "
        f"in {growth.span_s:.0f} s ({growth.per_min:+.0f}/min, fit R² {growth.r2:.2f}); "
        "a leaked socket or file holds kernel memory that no RSS shows"
    )
    return Finding(
        Severity.WARNING,
        text,
        next_step=f"ls -l /proc/{s.pid}/fd | sort -k11 | uniq -c -f10, and compare /proc/net/sockstat over time",
    )


@dataclass(frozen=True, slots=True)
class FdGrower:
    view: ProcessView
    growth: FdGrowth
    finding: Finding | None


def fd_growers(views, history, window_s: float = FD_WINDOW_S, *, uptime_s: float | None = None, clock_ticks: int = 100,
               min_span_s: float = LEAK_MIN_SPAN_S, min_age_s: float = LEAK_MIN_AGE_S) -> tuple[FdGrower, ...]:
    """Processes whose fd count grew over the window, fastest first (``history``: a view's
    History, as Snapshot.history gives).

    ``uptime_s`` (/proc/uptime) and ``clock_ticks`` (sysconf(_SC_CLK_TCK)) give each process's
    age from its start time (stat field 22, in clock ticks since boot; proc(5)).
    """
    out = []
    for view in views:
        growth = history_fd_growth(history(view), window_s)
        if growth is None or growth.per_min <= 0:
            continue
        age = uptime_s - view.sample.identity.start_ticks / clock_ticks if uptime_s is not None else None
        finding = fd_leak_finding(view, growth, age_s=age, min_span_s=min_span_s, min_age_s=min_age_s)
        out.append(FdGrower(view, growth, finding))
    out.sort(key=lambda g: (-g.growth.per_min, g.view.pid))
    return tuple(out)


# --- one refresh of the Kernel tab ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KernelView:
    """Everything the Kernel tab shows for one refresh, immutable (built in a worker thread)."""

    tick: int
    meminfo: Mapping[str, int]
    categories: tuple[MeminfoCategory, ...]
    slabs: tuple[SlabRow, ...] | None
    slab_reason: str | None  # why slabs is None (e.g. needs root)
    slab_version: str | None
    # Oldest first: monotonic times and {cache name: total bytes} of the largest caches.
    slab_history_times: tuple[float, ...]
    slab_history: Mapping[str, tuple[int | None, ...]]
    namespaces: tuple[NetNamespace, ...]
    namespaces_unreadable: int  # processes whose /proc/PID/ns/net could not be read
    file_nr: FileNr | None
    file_nr_reason: str | None
    growers: tuple[FdGrower, ...]
    target_pid: int | None
    fd_breakdown: FdBreakdown | None
    fd_breakdown_reason: str | None
