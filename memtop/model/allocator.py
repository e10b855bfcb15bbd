"""The allocator's view of a process that does not use glibc malloc: jemalloc, tcmalloc
(gperftools), mimalloc, musl (mallocng).

Built by :mod:`memtop.heap.allocators` (read-only readers, and the allocator's own stats call
through gdb on request). Bytes everywhere; None is unknown, and ``unknown`` says why. Every
figure that is known has an entry in ``sources`` that says how it was got, so that a user can
check it by hand (the allocator's own tool is named there).

The common figures mean the same for every allocator:

- ``allocated_bytes``: handed out to the program and not freed (jemalloc ``stats.allocated``,
  tcmalloc ``generic.current_allocated_bytes``, musl: slots in use x slot size). It counts
  what sits in thread caches as allocated where the allocator itself does (jemalloc's tcache).
- ``active_bytes``: pages that hold allocations (jemalloc ``stats.active``; tcmalloc: the page
  heap minus its free and unmapped pages, so its central and thread caches are in it).
- ``mapped_bytes``: address space the allocator obtained and still holds.
- ``resident_bytes``: the pages of that address space in RAM (pagemap), when the ranges are known.
- ``free_kept_bytes``: free memory the allocator keeps and could give back (jemalloc dirty +
  muzzy pages, tcmalloc page-heap free pages, mimalloc committed but unused).
- ``retained_bytes``: address space kept for reuse whose pages were already given back
  (jemalloc retained, tcmalloc unmapped): costs no RAM.
- ``release_bytes``: the resident bytes the allocator's own release (``release_call``) would
  return now: the prediction a trim is held against.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS_WITH_RELEASE = ("jemalloc", "tcmalloc", "mimalloc")


@dataclass(frozen=True, slots=True)
class AllocatorArena:
    """One jemalloc arena, from the extent walk (states: jemalloc's extent_state_t)."""

    index: int
    allocated_bytes: int  # regions in use in its slabs + its large allocations (usable sizes)
    active_bytes: int  # pages of its active extents (slabs and large)
    dirty_bytes: int  # unused pages not yet purged (still resident unless the kernel reclaimed them)
    muzzy_bytes: int  # unused pages purged lazily (MADV_FREE): resident until the kernel reclaims them
    retained_bytes: int  # unused, purged, kept mapped for reuse (no RAM)
    dirty_resident_bytes: int | None = None
    muzzy_resident_bytes: int | None = None
    extents: int = 0


@dataclass(frozen=True, slots=True)
class AllocatorSetting:
    """A setting that decides when the allocator gives memory back, with where it was read."""

    name: str  # e.g. "dirty_decay_ms", "background_thread", "TCMALLOC_RELEASE_RATE"
    value: str | None  # None: unknown
    source: str


@dataclass(frozen=True, slots=True)
class AllocatorReport:
    kind: str  # 'jemalloc', 'tcmalloc', 'mimalloc', 'musl'
    version: str | None
    library: str | None  # the shared object as the target maps it (None: linked statically)
    static: bool
    status: str  # 'valid', 'partial' (some figures unknown), 'unsupported', 'denied', 'changing', 'gone'
    reason: str | None  # why status is not 'valid'
    method: str  # how the figures were read, in words
    allocated_bytes: int | None = None
    active_bytes: int | None = None
    mapped_bytes: int | None = None
    resident_bytes: int | None = None
    free_kept_bytes: int | None = None
    retained_bytes: int | None = None
    release_bytes: int | None = None
    release_call: str | None = None  # the allocator's own release, as memtop calls it; None: it has none
    sources: tuple[tuple[str, str], ...] = ()  # (figure, how it was got)
    unknown: tuple[tuple[str, str], ...] = ()  # (figure, why it is unknown)
    details: tuple[tuple[str, int | None], ...] = ()  # allocator-specific figures (bytes or counts)
    arenas: tuple[AllocatorArena, ...] = ()
    settings: tuple[AllocatorSetting, ...] = ()
    release_ranges: tuple[tuple[int, int], ...] = ()  # (start, end) holding the releasable pages
    notes: tuple[str, ...] = ()  # what can and cannot be known, in words
    read_seconds: float = 0.0
    stopped_s: float | None = None  # how long the process was stopped (gdb), None when read-only

    @property
    def valid(self) -> bool:
        return self.status in ("valid", "partial")

    def source_of(self, figure: str) -> str | None:
        return dict(self.sources).get(figure)

    def unknown_reason(self, figure: str) -> str | None:
        return dict(self.unknown).get(figure)

    def detail(self, name: str) -> int | None:
        return dict(self.details).get(name)

    def setting(self, name: str) -> AllocatorSetting | None:
        return next((s for s in self.settings if s.name == name), None)


COMMON_FIGURES = ("allocated_bytes", "active_bytes", "mapped_bytes", "resident_bytes", "free_kept_bytes",
                  "retained_bytes", "release_bytes")
