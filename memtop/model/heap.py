"""The allocator's view of one process: a read-only walk of the glibc heap, and its runtime.

Produced by :func:`memtop.heap.analyze`. Bytes everywhere; None is unknown (with a reason).
Definitions follow glibc's own accounting (malloc/malloc.c ``__libc_mallinfo2``/``malloc_info``)
so that every figure can be checked against ``malloc_info()``:

- ``system_bytes``: the arena's ``system_mem`` (what it obtained from the kernel).
- ``free_bytes``: chunks sitting in the unsorted, small and large bins (found by the
  PREV_INUSE bit of the following chunk).
- ``fastbin_bytes``: chunks on the fastbin lists (they look in use from their headers).
- ``top_bytes``: the size of the top chunk.
- ``in_use_bytes``: ``system_bytes - free - fastbin - top``, exactly as mallinfo's ``uordblks``:
  it includes tcache chunks (``tcache_bytes`` is that part) and the arena's own headers.
"""

from __future__ import annotations

from dataclasses import dataclass

from memtop.model.allocator import AllocatorReport
from memtop.model.findings import Finding
from memtop.model.process import ProcessIdentity
from memtop.model.runtime import RuntimeReport

ALLOCATOR_KINDS = ("glibc", "musl", "jemalloc", "tcmalloc", "mimalloc", "static", "unknown")


@dataclass(frozen=True, slots=True)
class Tunables:
    """glibc's ``mp_`` (struct malloc_par) as read from the target."""

    trim_threshold: int
    top_pad: int
    mmap_threshold: int
    arena_test: int
    arena_max: int
    no_dyn_threshold: int
    n_mmaps: int
    mmapped_mem: int
    max_mmapped_mem: int
    sbrk_base: int
    hp_pagesize: int = 0
    thp_pagesize: int = 0


@dataclass(frozen=True, slots=True)
class Pin:
    """The busy chunk right below the main heap's top after the consolidation that a trim does.

    ``distance_below_top`` is the number of bytes between the end of the pin and the end of the
    heap (the consolidated top chunk); ``pinned_bytes`` is the run of free chunks directly below
    it, which would join top (and could be given back by brk) if the pin were freed.
    """

    address: int
    size: int
    distance_below_top: int
    pinned_bytes: int
    is_tcache: bool = False
    pinned_resident_bytes: int | None = None  # the part of pinned_bytes that is resident (pagemap)


@dataclass(frozen=True, slots=True)
class ArenaReport:
    address: int
    is_main: bool
    heaps: tuple[tuple[int, int], ...]  # (start, size) of each heap: [heap] or a thread-arena heap
    system_bytes: int
    in_use_bytes: int
    free_bytes: int
    fastbin_bytes: int
    tcache_bytes: int
    top_bytes: int
    resident_bytes: int | None  # pages of the heaps that pagemap marks present
    attached_threads: int
    mutex: int  # 0 free, 1 locked, 2 locked with waiters (read once, racy by nature)
    free_size_histogram: tuple[tuple[int, int, int], ...]  # (chunk size, count, total bytes), bins + fastbins
    trim_release_bytes: int | None  # resident bytes malloc_trim(0) would release in this arena
    top_address: int = 0
    free_count: int = 0
    fastbin_count: int = 0
    tcache_count: int = 0
    in_use_count: int = 0  # chunks that look in use, tcache chunks excluded
    chunks_walked: int = 0
    top_resident_bytes: int | None = None
    free_resident_bytes: int | None = None  # resident pages inside bin + fastbin chunks


@dataclass(frozen=True, slots=True)
class RuntimeRegion:
    start: int
    size: int
    rss_bytes: int | None
    label: str


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """The language runtime running in the process, if one is recognised."""

    kind: str  # 'cpython', 'jvm', 'go', 'node', 'dotnet', 'ruby' or 'none'
    version: str | None
    evidence: str  # what gave it away (a mapping, the exe, an ELF note)
    regions: tuple[RuntimeRegion, ...] = ()  # large anonymous regions it owns, when identifiable
    advice: tuple[str, ...] = ()  # the runtime's own tools and switches


@dataclass(frozen=True, slots=True)
class HeapReport:
    identity: ProcessIdentity | None
    allocator_kind: str
    glibc_version: str | None
    valid: bool
    # 'valid', 'changing', 'unsupported', 'denied', 'gone', 'not-glibc', 'corrupt', 'empty', 'kernel-thread',
    # 'zombie', 'self' (memtop's own process: not walked)
    status: str
    reason: str | None
    arenas: tuple[ArenaReport, ...] = ()
    mmapped_count: int | None = None
    mmapped_bytes: int | None = None
    tunables: Tunables | None = None
    trim_release_bytes: int | None = None
    pin: Pin | None = None
    walked_at: float = 0.0
    walk_seconds: float = 0.0
    chunks_walked: int = 0
    attempts: int = 0
    last_valid_age_s: float | None = None
    symbols: str | None = None  # 'debug' (libc6-dbg by build-id) or 'heuristic'
    runtime: RuntimeInfo | None = None
    libc_path: str | None = None
    last_valid: "HeapReport | None" = None  # when not valid: the last validated report, if any
    version_tested: bool | None = None  # False: a layout known from the glibc source, not tried live
    static: bool = False  # the allocator is linked into the executable (no shared libc)
    version_basis: str | None = None  # how glibc_version was told when not from libc's version string
    allocator: AllocatorReport | None = None  # a non-glibc allocator's own figures (jemalloc, tcmalloc...)

    @property
    def system_bytes(self) -> int:
        return sum(a.system_bytes for a in self.arenas)

    @property
    def in_use_bytes(self) -> int:
        return sum(a.in_use_bytes for a in self.arenas)

    @property
    def free_bytes(self) -> int:
        return sum(a.free_bytes for a in self.arenas)

    @property
    def fastbin_bytes(self) -> int:
        return sum(a.fastbin_bytes for a in self.arenas)

    @property
    def tcache_bytes(self) -> int:
        return sum(a.tcache_bytes for a in self.arenas)

    @property
    def top_bytes(self) -> int:
        return sum(a.top_bytes for a in self.arenas)

    @property
    def main_arena(self) -> ArenaReport | None:
        for arena in self.arenas:
            if arena.is_main:
                return arena
        return None


@dataclass(frozen=True, slots=True)
class Layer:
    """One slice of a process's memory: a label, resident bytes (None: unknown) and its source."""

    key: str
    label: str
    bytes: int | None
    source: str
    note: str | None = None
    parent: str | None = None  # key of the layer this one splits (heap_split: "brk" or "thread_heaps")


@dataclass(frozen=True, slots=True)
class LayerReport:
    """Who holds each byte of one process, from RSS down (what the Layers tab and
    ``memtop explain`` show). Kernel figures are from status/smaps; heap figures from the walk."""

    identity: ProcessIdentity | None
    comm: str
    cmdline: str
    rss_bytes: int | None
    pss_bytes: int | None
    private_dirty_bytes: int | None
    lazyfree_bytes: int | None
    swap_bytes: int | None
    file_bytes: int | None
    anon_bytes: int | None
    shmem_bytes: int | None
    anon_split: tuple[Layer, ...]  # brk heap, thread-arena heaps, mmapped chunks, runtime, stacks, other
    heap_split: tuple[Layer, ...]  # resident heap pages: in use, free kept by glibc, top; per parent layer
    heap: HeapReport | None
    runtime: RuntimeInfo | None
    findings: tuple[Finding, ...] = ()
    kernel_reason: str | None = None  # why kernel figures are unknown, if they are
    made_at: float = 0.0
    # The runtime's or the application's own view (memtop.runtime): figures, regions, advice.
    runtime_report: "RuntimeReport | None" = None
    runtime_split: tuple[Layer, ...] = ()  # the runtime layer's resident bytes per region (parent "runtime")


def split_unknown_reason(report: LayerReport) -> str | None:
    """Why the heap's in use / free / top split is not shown (None when it is, or when there is
    no glibc heap to split)."""
    heap = report.heap
    if report.heap_split or heap is None or heap.allocator_kind != "glibc" or heap.valid:
        return None
    if heap.status in ("gone", "kernel-thread", "zombie"):
        return None
    return f"heap walk {heap.status}: {heap.reason}" if heap.reason else f"heap walk {heap.status}"
