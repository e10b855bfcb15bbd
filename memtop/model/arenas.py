"""The Arenas tab's records: malloc_info as parsed, the anonymous-mapping census, the allocator's
settings from the environment, the arena cap, the tuning state, and the arena-explosion
prediction. All bytes; None is unknown (with the reason beside it).

The heap walk itself (ArenaReport, HeapReport) lives in :mod:`memtop.model.heap`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from memtop.model.findings import Finding
from memtop.model.process import ProcessIdentity

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

if TYPE_CHECKING:  # the heap walk's records; only for annotations
    from memtop.model.heap import HeapReport


# --- malloc_info(3) XML -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MallocInfoSize:
    """One ``<size>`` (a bin or fastbin) or ``<unsorted>`` line of an arena's ``<sizes>``.

    glibc prints ``chunksize_nomask``: sizes include the flag bits (``from="33"`` is a 32-byte
    chunk with PREV_INUSE set), so ``total`` is over by up to ``count`` bytes.
    """

    kind: str  # "size" or "unsorted"
    from_bytes: int
    to_bytes: int
    total_bytes: int
    count: int


@dataclass(frozen=True, slots=True)
class MallocInfoArena:
    """One ``<heap nr="N">`` of malloc_info: one arena (nr 0 is main_arena)."""

    nr: int
    sizes: tuple[MallocInfoSize, ...]
    fast_count: int | None  # <total type="fast">: chunks in fastbins
    fast_bytes: int | None
    rest_count: int | None  # <total type="rest">: chunks in the unsorted, small and large bins, plus top
    rest_bytes: int | None
    system_current: int | None  # ar_ptr->system_mem
    system_max: int | None
    aspace_total: int | None
    aspace_mprotect: int | None
    aspace_subheaps: int | None  # newer glibc (and Debian's 2.36): number of heaps of the arena
    unknown: tuple[str, ...] = ()  # elements this parser does not know, kept by name


@dataclass(frozen=True, slots=True)
class MallocInfo:
    """A whole ``<malloc version="1">`` document."""

    version: str | None
    arenas: tuple[MallocInfoArena, ...]
    fast_count: int | None
    fast_bytes: int | None
    rest_count: int | None
    rest_bytes: int | None
    mmap_count: int | None  # mp_.n_mmaps
    mmap_bytes: int | None  # mp_.mmapped_mem
    system_current: int | None
    system_max: int | None
    aspace_total: int | None
    aspace_mprotect: int | None
    unknown: tuple[str, ...] = ()
    text_bytes: int = 0  # the XML's length: the buffer it was written to was malloc'd in the target


# --- the anonymous-mapping census (/proc/PID/smaps) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class AnonRegion:
    """One anonymous mapping (or a 64 MiB arena heap with its reserved PROT_NONE tail; or the
    brk heap, which the kernel may split into several ``[heap]`` mappings)."""

    start: int
    mapped_bytes: int  # the accessible (rw) part
    reserved_bytes: int  # mapped + the PROT_NONE tail that belongs to it
    rss_bytes: int | None
    private_dirty_bytes: int | None
    swap_bytes: int | None
    mappings: int = 1  # the VMAs summed here (brk heap: every [heap] line of smaps)


@dataclass(frozen=True, slots=True)
class SizeGroup:
    """Anonymous regions of one size: the "hundreds of similarly sized regions" pattern."""

    size_bytes: int
    count: int
    rss_bytes: int


@dataclass(frozen=True, slots=True)
class RegionClass:
    """A class of anonymous regions, summed."""

    count: int
    mapped_bytes: int
    reserved_bytes: int
    rss_bytes: int
    private_dirty_bytes: int
    swap_bytes: int


@dataclass(frozen=True, slots=True)
class AnonCensus:
    """What /proc/PID/smaps alone tells about a process's anonymous memory.

    Works without access to the process's memory and for any allocator; ``cannot_tell`` says
    what only the heap walk (or the allocator's own tools) could add.
    """

    allocator: str  # "glibc", "jemalloc", "tcmalloc", "mimalloc", "musl", "unknown"
    allocator_evidence: str  # the mapping that says so, or why it is unknown
    mappings: int  # all mappings in smaps
    brk_heap: AnonRegion | None  # every [heap] mapping, summed: main_arena's brk heap under glibc
    arena_heaps: tuple[AnonRegion, ...]  # 64 MiB-aligned rw regions (thread-arena heaps under glibc)
    thread_stacks: RegionClass  # rw regions right above a one-page PROT_NONE guard
    other_anon: RegionClass  # every other private anonymous rw region
    reserved_only: RegionClass  # PROT_NONE anonymous regions that belong to no arena heap
    size_groups: tuple[SizeGroup, ...]  # other_anon grouped by size, the most numerous first
    can_tell: tuple[str, ...]
    cannot_tell: tuple[str, ...]

    @property
    def arena_heap_rss_bytes(self) -> int:
        return sum(r.rss_bytes or 0 for r in self.arena_heaps)

    @property
    def arena_heap_mapped_bytes(self) -> int:
        return sum(r.mapped_bytes for r in self.arena_heaps)


# --- settings, cap, tuning -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllocatorEnv:
    """malloc settings found in /proc/PID/environ (the environment the process started with)."""

    readable: bool
    reason: str | None  # why it could not be read
    malloc_vars: tuple[tuple[str, str], ...] = ()  # MALLOC_ARENA_MAX=..., MALLOC_TRIM_THRESHOLD_=...
    tunables: tuple[tuple[str, str], ...] = ()  # glibc.malloc.* from GLIBC_TUNABLES
    glibc_tunables: str | None = None  # the raw GLIBC_TUNABLES value

    def get(self, name: str) -> str | None:
        for key, value in (*self.malloc_vars, *self.tunables):
            if key == name:
                return value
        return None

    @property
    def arena_max_setting(self) -> str | None:
        """The environment's arena cap request, as the user wrote it, or None."""
        parts = []
        if (v := self.get("MALLOC_ARENA_MAX")) is not None:
            parts.append(f"MALLOC_ARENA_MAX={v}")
        if (v := self.get("glibc.malloc.arena_max")) is not None:
            parts.append(f"GLIBC_TUNABLES glibc.malloc.arena_max={v}")
        return ", ".join(parts) or None


@dataclass(frozen=True, slots=True)
class ArenaCap:
    """How many arenas glibc will create for this process (arena.c: arena_get2)."""

    limit: int | None
    cpus: int | None  # CPUs in the process's affinity mask (glibc >= 2.35 uses sched_getaffinity)
    basis: str  # in words: where the limit comes from


@dataclass(frozen=True, slots=True)
class TuningState:
    """The allocator's thresholds from mp_ (malloc.c: struct malloc_par)."""

    mmap_threshold: int
    trim_threshold: int
    top_pad: int
    dynamic_threshold: bool  # not no_dyn_threshold: free() of an mmapped chunk may raise it
    threshold_moved: bool  # the dynamic threshold has moved away from the 128 KiB default
    n_mmaps: int | None
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SavingPrediction:
    """The RSS MALLOC_ARENA_MAX=2 would save, from the walk (the model: heap/arena_advice.py).

    A walk made at one moment cannot tell whether the threads' peaks of use came at the same time
    or in turns, and that decides the saving: ``saving_low_bytes`` is the saving if they all
    coincide, ``saving_high_bytes`` if they take turns, ``saving_bytes`` the estimate at the
    assumed ``overlap`` (0: turns, 1: together), which ``overlap_basis`` explains.
    """

    thread_arenas: int
    thread_resident_bytes: int
    thread_live_bytes: int  # the thread arenas' chunks in use (tcache included, fastbins not)
    kept_slack_bytes: int  # free-but-resident memory the two capped arenas would keep (at ``overlap``)
    saving_bytes: int
    concentration_arenas: int  # how few arenas hold 80 % of the live data
    basis: str
    saving_low_bytes: int | None = None  # the threads' peaks coincide
    saving_high_bytes: int | None = None  # the threads take turns
    overlap: float | None = None  # the share of the threads' peaks assumed to coincide
    overlap_basis: str | None = None
    resident_bytes: int | None = None  # every arena's resident pages now
    live_bytes: int | None = None  # every arena's chunks in use now
    slack_bytes: int | None = None  # every arena's free-but-resident memory now


@dataclass(frozen=True, slots=True)
class ArenaDelta:
    """One figure of one arena, from the walk and from malloc_info, and whether they differ."""

    arena: int  # index in the arena list, 0 = main
    figure: str
    walk: int | None
    malloc_info: int | None
    tolerance: int
    differs: bool


@dataclass(frozen=True, slots=True)
class ArenaAnalysis:
    """Everything the Arenas tab, `memtop explain` and the JSON snapshot show for one process."""

    pid: int
    start_ticks: int | None
    comm: str | None
    threads: int | None
    heap: "HeapReport | None"
    heap_reason: str | None  # why the walk is missing or invalid
    env: AllocatorEnv
    cap: ArenaCap
    tuning: TuningState | None
    prediction: SavingPrediction | None
    census: AnonCensus | None
    census_reason: str | None
    setting_line: str | None  # the exact line to set, when arena explosion is found
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True, slots=True)
class MallocInfoResult:
    """malloc_info fetched through gdb, parsed; or why it could not be."""

    identity: ProcessIdentity
    info: MallocInfo | None
    error: str | None
    seconds: float
    fetched_at: float  # monotonic


# What memtop's calls that fetch malloc_info keep allocated in the target while it runs, beside
# the XML's own buffer: open_memstream's two out-parameters (malloc(16)), its FILE (~500 bytes)
# and the FILE's stdio buffer (BUFSIZ, 8 KiB), with chunk headers.
FETCH_OVERHEAD = 16 + 1024 + 8192
# The chunks those calls allocate, and the buffer's reallocations as the XML grows: a bucket of
# the free-chunk histogram may be off by that many chunks for the fetch alone.
FETCH_CHUNKS = 4


def compare_with_malloc_info(arenas, info: MallocInfo) -> tuple[ArenaDelta, ...]:
    """Per arena (matched by position: both follow main_arena.next round the list): system bytes,
    bytes free in bins plus top (malloc_info's "rest" starts with the top chunk), fastbin bytes.

    malloc_info prints sizes with the flag bits (chunksize_nomask), so free totals may be over by
    one byte per chunk: that much is tolerated. The two were read at different moments, and the
    gdb calls that fetch malloc_info allocate in the calling thread's arena while it runs (16
    bytes for open_memstream's out-parameters, the memstream FILE with its 8 KiB stdio buffer,
    and the buffer the XML is written to: 8,641 bytes less free than the walk in a Python
    process with 2 KiB of XML): FETCH_OVERHEAD plus the XML's length is tolerated in free + top
    (in whichever arena that is). A busy process may still really differ.
    """
    deltas: list[ArenaDelta] = []
    fetch = FETCH_OVERHEAD + info.text_bytes

    def add(index, figure, walk, mi, tolerance):
        differs = walk is None or mi is None or abs(walk - mi) > tolerance
        deltas.append(ArenaDelta(index, figure, walk, mi, tolerance, differs))

    count = max(len(arenas), len(info.arenas))
    for index in range(count):
        a = arenas[index] if index < len(arenas) else None
        m = info.arenas[index] if index < len(info.arenas) else None
        add(index, "system", a.system_bytes if a else None, m.system_current if m else None, PAGE_SIZE)
        add(index, "free + top", a.free_bytes + a.top_bytes if a else None, m.rest_bytes if m else None,
            (m.rest_count or 0) + fetch if m else 0)
        add(index, "fastbins", a.fastbin_bytes if a else None, m.fast_bytes if m else None,
            (m.fast_count or 0) if m else 0)
    return tuple(deltas)
