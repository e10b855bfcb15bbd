"""The anonymous-mapping census: what /proc/PID/smaps alone says about arenas.

glibc maps every thread-arena heap with ``new_heap`` (malloc/arena.c): it reserves HEAP_MAX_SIZE
(64 MiB on 64-bit: 2 x DEFAULT_MMAP_THRESHOLD_MAX) PROT_NONE, aligned to 64 MiB, and makes the
used part read-write (``mprotect``) as the heap grows. In smaps that is an anonymous ``rw-p``
mapping that starts on a 64 MiB boundary followed by a ``---p`` one up to the next boundary.
Counting those shows the "hundreds of similarly sized regions" of an arena explosion without
reading the process's memory: it works for any process whose smaps the user may read, and for
processes that are not glibc (then it says that such regions are not glibc arenas).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from memtop.model.arenas import AnonCensus, AnonRegion, RegionClass, SizeGroup
from memtop.procfs import PAGE_SIZE, PROC
from memtop.procfs.smaps_mappings import SmapsMapping, read_smaps_mappings

HEAP_MAX_SIZE = 64 << 20  # malloc/arena.c, 64-bit, without the glibc.malloc.hugetlb tunable
MAX_GUARD = 64 << 10  # pthread stack guards: one page by default, up to 64 KiB on some arches
SIZE_GROUPS = 6


def detect_allocator(mappings: list[SmapsMapping]) -> tuple[str, str]:
    """(allocator, evidence) from the shared objects mapped. An allocator linked statically into
    the program (Rust, Redis' jemalloc) cannot be seen this way: glibc is then reported."""
    from memtop.heap.detect import detect_allocator as by_paths  # one rule for every consumer

    guess = by_paths(mappings, None)
    if guess.library is not None:
        return guess.kind, os.path.basename(guess.library)
    return "unknown", "no libc mapped: a static binary (Go, static musl...) or a runtime with its own allocator"


def _sum(regions: list[AnonRegion]) -> RegionClass:
    return RegionClass(
        count=len(regions),
        mapped_bytes=sum(r.mapped_bytes for r in regions),
        reserved_bytes=sum(r.reserved_bytes for r in regions),
        rss_bytes=sum(r.rss_bytes or 0 for r in regions),
        private_dirty_bytes=sum(r.private_dirty_bytes or 0 for r in regions),
        swap_bytes=sum(r.swap_bytes or 0 for r in regions),
    )


def _region(m: SmapsMapping, reserved: int | None = None) -> AnonRegion:
    return AnonRegion(start=m.start, mapped_bytes=m.size, reserved_bytes=reserved if reserved is not None else m.size,
                      rss_bytes=m.rss, private_dirty_bytes=m.private_dirty, swap_bytes=m.swap)


def _brk_heap(heap_maps: list[SmapsMapping]) -> AnonRegion | None:
    """The brk heap: every ``[heap]`` mapping, summed. The kernel names [heap] each VMA between
    start_brk and brk (fs/proc/task_mmu.c), and one heap is often several VMAs: a forked child
    (a postgres backend) that extends brk gets a new VMA that cannot merge with the one inherited
    from its parent (their anon_vma differ: mm/mmap.c is_mergeable_anon_vma), and an mprotect,
    madvise(MADV_HUGEPAGE) or mlock of part of the heap splits it."""
    if not heap_maps:
        return None

    def total(field):
        values = [getattr(m, field) for m in heap_maps]
        return None if any(v is None for v in values) else sum(values)

    size = sum(m.size for m in heap_maps)
    return AnonRegion(start=heap_maps[0].start, mapped_bytes=size, reserved_bytes=size, rss_bytes=total("rss"),
                      private_dirty_bytes=total("private_dirty"), swap_bytes=total("swap"), mappings=len(heap_maps))


def census_from_mappings(mappings: list[SmapsMapping], *, heap_max: int = HEAP_MAX_SIZE,
                         page_size: int = PAGE_SIZE) -> AnonCensus:
    """Classify the anonymous mappings (pure: smaps records in, census out)."""
    maps = sorted(mappings, key=lambda m: m.start)
    allocator, evidence = detect_allocator(maps)
    brk_heap = _brk_heap([m for m in maps if m.path == "[heap]"])

    # Pass 1: arena heaps and the PROT_NONE tails they own. A tail may have been merged by the
    # kernel with an adjacent PROT_NONE mapping (a thread stack's guard page): split it at the
    # 64 MiB boundary and keep the rest as its own piece.
    pieces: list[tuple[int, int, str, SmapsMapping]] = []  # (start, end, role, mapping)
    i = 0
    arena_heaps: list[AnonRegion] = []
    while i < len(maps):
        m = maps[i]
        if m.is_anonymous and m.perms.startswith("rw") and m.perms.endswith("p") and m.start % heap_max == 0:
            nxt = maps[i + 1] if i + 1 < len(maps) else None
            boundary = -(-m.end // heap_max) * heap_max  # the end of the last 64 MiB block it starts
            if m.size % heap_max == 0:
                # Fully grown heaps; several adjacent ones can be one merged VMA.
                for k in range(m.size // heap_max):
                    share = lambda v: None if v is None else v // (m.size // heap_max)  # noqa: E731
                    arena_heaps.append(AnonRegion(m.start + k * heap_max, heap_max, heap_max,
                                                  share(m.rss), share(m.private_dirty), share(m.swap)))
                pieces.append((m.start, m.end, "arena", m))
                i += 1
                continue
            if (nxt is not None and nxt.is_anonymous and nxt.perms == "---p" and nxt.start == m.end
                    and nxt.end >= boundary):
                arena_heaps.append(_region(m, reserved=boundary - m.start))
                pieces.append((m.start, m.end, "arena", m))
                pieces.append((nxt.start, boundary, "arena-tail", nxt))
                if nxt.end > boundary:
                    pieces.append((boundary, nxt.end, "", nxt))
                i += 2
                continue
        pieces.append((m.start, m.end, "", m))
        i += 1

    # Pass 2: thread stacks (rw right above a small PROT_NONE guard), other anonymous rw, and
    # PROT_NONE reservations that belong to no heap.
    stacks: list[AnonRegion] = []
    other: list[AnonRegion] = []
    reserved: list[AnonRegion] = []
    guards: set[int] = set()
    for index, (start, end, role, m) in enumerate(pieces):
        if role or not m.is_anonymous or not m.perms.endswith("p"):
            continue
        if m.perms.startswith("rw"):
            prev = pieces[index - 1] if index else None
            if (prev is not None and not prev[2] and prev[3].is_anonymous and prev[3].perms == "---p"
                    and prev[1] == start and prev[1] - prev[0] <= MAX_GUARD):
                stacks.append(_region(m, reserved=m.size + prev[1] - prev[0]))
                guards.add(index - 1)
            else:
                other.append(_region(m))
    for index, (start, end, role, m) in enumerate(pieces):
        if not role and m.is_anonymous and m.perms == "---p" and index not in guards:
            reserved.append(AnonRegion(start, 0, end - start, 0, 0, 0))

    counts = Counter(r.mapped_bytes for r in other)
    rss_by_size: Counter = Counter()
    for r in other:
        rss_by_size[r.mapped_bytes] += r.rss_bytes or 0
    groups = sorted(((size, n) for size, n in counts.items() if n >= 2), key=lambda sn: (-sn[1], -sn[0]))
    size_groups = tuple(SizeGroup(size, n, rss_by_size[size]) for size, n in groups[:SIZE_GROUPS])

    can, cannot = _what_it_tells(allocator, evidence, len(arena_heaps), heap_max)
    return AnonCensus(
        allocator=allocator,
        allocator_evidence=evidence,
        mappings=len(maps),
        brk_heap=brk_heap,
        arena_heaps=tuple(arena_heaps),
        thread_stacks=_sum(stacks),
        other_anon=_sum(other),
        reserved_only=_sum(reserved),
        size_groups=size_groups,
        can_tell=can,
        cannot_tell=cannot,
    )


def _what_it_tells(allocator: str, evidence: str, heaps: int, heap_max: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    mib = heap_max >> 20
    can = [
        f"how many {mib} MiB-aligned read-write regions with a PROT_NONE reservation there are, "
        "and how much of them is resident (Rss) and dirty",
        "the brk heap ([heap]), thread stacks and other anonymous regions, and groups of equal size",
    ]
    cannot = [
        "which arena each region belongs to (an arena larger than 64 MiB has several heaps), "
        "so the region count is an upper bound of the thread-arena count",
        "how much of the resident memory is live data and how much is free chunks glibc keeps: "
        "only the heap walk (/proc/PID/mem, root or CAP_SYS_PTRACE) or malloc_info can",
    ]
    if allocator == "glibc":
        can.append(f"glibc malloc is in use ({evidence}): {mib} MiB-aligned regions are its thread-arena heaps")
        cannot.append("whether the program replaced malloc with a statically linked allocator "
                      "(then these regions are not arenas)")
    else:
        note = {"unknown": f"the allocator is unknown ({evidence})"}.get(allocator, f"this process uses {allocator} ({evidence}), not glibc malloc")
        cannot.append(f"{note}: {mib} MiB-aligned regions here are not glibc arenas "
                      "(Go's heap arenas, for one, are 64 MiB-aligned too)")
    return tuple(can), tuple(cannot)


def read_census(pid: int, root: Path = PROC) -> AnonCensus:
    """Read /proc/PID/smaps (expensive: call it in a worker) and classify it.

    Raises AccessDenied / NoSuchProcess / ParseError.
    """
    return census_from_mappings(read_smaps_mappings(pid, root))
