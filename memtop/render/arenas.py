"""Model records as plain text, shared by the TUI and the text outputs (no Textual here).

The TUI renders samples and ``memtop explain`` prints reports; where both show the same thing in
the same words (the arenas' census, histogram buckets), the words are written once, here.
"""

from __future__ import annotations

from memtop.format import fmt_bytes
from memtop.model.arenas import AnonCensus

HISTOGRAM_EDGES = tuple(1 << k for k in range(5, 25))  # 32 B .. 16 MiB, then "larger"


def utilization(arena) -> float | None:
    """In-use bytes (tcache included, as mallinfo's uordblks) over the arena's system bytes."""
    return arena.in_use_bytes / arena.system_bytes if arena.system_bytes else None


def bucket_low(size: int) -> int:
    """The low edge of the histogram bucket that holds ``size`` (0 below 32 bytes)."""
    low = 0
    for edge in HISTOGRAM_EDGES:
        if size >= edge:
            low = edge
    return low


def bucket_histogram(histogram) -> list[tuple[int, int | None, int, int]]:
    """Fold the walk's exact-size histogram ((size, count, total), ...) into power-of-two buckets:
    (low, high or None, count, total bytes), only buckets that hold something."""
    buckets: dict[int, list[int]] = {}
    for size, count, total in histogram:
        low = bucket_low(size)
        entry = buckets.setdefault(low, [0, 0])
        entry[0] += count
        entry[1] += total
    out = []
    for low in sorted(buckets):
        high = low * 2 - 1 if low and low < HISTOGRAM_EDGES[-1] else None
        out.append((low, high, buckets[low][0], buckets[low][1]))
    return out


def census_lines(c: AnonCensus) -> list[str]:
    """The census in a few lines of plain text."""
    lines = [f"allocator: {c.allocator} ({c.allocator_evidence}); {c.mappings} mappings"]
    if c.brk_heap is not None:
        split = f" in {c.brk_heap.mappings} mappings" if c.brk_heap.mappings > 1 else ""
        lines.append(f"[heap] (brk): {fmt_bytes(c.brk_heap.mapped_bytes)} mapped, {fmt_bytes(c.brk_heap.rss_bytes)} "
                     f"resident{split}")
    if c.arena_heaps:
        sizes = sorted(r.mapped_bytes for r in c.arena_heaps)
        low, high = fmt_bytes(sizes[0]), fmt_bytes(sizes[-1])
        spread = low if low == high else f"{low}–{high}"
        lines.append(f"64 MiB-aligned heaps: {len(c.arena_heaps)} ({spread} each), {fmt_bytes(c.arena_heap_mapped_bytes)} "
                     f"mapped, {fmt_bytes(c.arena_heap_rss_bytes)} resident")
    else:
        lines.append("64 MiB-aligned heaps: none")
    ts = c.thread_stacks
    if ts.count:
        lines.append(f"thread stacks: {ts.count}, {fmt_bytes(ts.mapped_bytes)} mapped, {fmt_bytes(ts.rss_bytes)} resident")
    oa = c.other_anon
    lines.append(f"other anonymous: {oa.count} regions, {fmt_bytes(oa.mapped_bytes)} mapped, {fmt_bytes(oa.rss_bytes)} resident")
    for g in c.size_groups[:3]:
        lines.append(f"  {g.count} x {fmt_bytes(g.size_bytes)} ({fmt_bytes(g.rss_bytes)} resident)")
    if c.reserved_only.count:
        lines.append(f"reserved (PROT_NONE) regions: {c.reserved_only.count}, {fmt_bytes(c.reserved_only.reserved_bytes)}")
    return lines


# Processes that have no malloc arenas at all: what to say instead of a cap, an environment and a
# census (a kernel thread is not "possibly a static binary"; a zombie's environment is not unknown).
NO_ARENAS = {
    "kernel-thread": "a kernel thread: no user-space memory, so no malloc arenas (nothing to cap, no "
                     "environment, no mappings)",
    "zombie": "a zombie: it has exited and its memory is freed; no arenas left",
}


def no_arenas_reason(a) -> str | None:
    """Why the process cannot have arenas at all, or None."""
    heap = a.heap
    return NO_ARENAS.get(heap.status) if heap is not None and not heap.valid else None


def threads_text(threads: int | None) -> str:
    return f"{'?' if threads is None else threads} thread{'' if threads == 1 else 's'}"


def cap_text(a) -> str:
    """The arena cap as far as it is known. Without the heap walk, mp_.arena_max (a cap the program
    set with mallopt) is unknown; without the environment, MALLOC_ARENA_MAX too: then the cap is
    unknown, and only glibc's default can be given (never "arena_max unset", which nobody read)."""
    cap = a.cap
    heap = a.heap
    walked = heap is not None and heap.valid
    if walked or a.env.readable:
        return f"cap {cap.limit} ({cap.basis})" if cap.limit else f"cap unknown ({cap.basis})"
    status = heap.status if heap is not None else "not walked"
    from memtop.heap.arena_advice import ARENAS_PER_CORE

    default = (f"; glibc's default here is {ARENAS_PER_CORE * cap.cpus} ({ARENAS_PER_CORE} x {cap.cpus} CPUs)"
               if cap.cpus else "")
    return (f"cap unknown: neither the heap (walk {status}: mp_.arena_max) nor the environment "
            f"(MALLOC_ARENA_MAX) could be read{default}")
