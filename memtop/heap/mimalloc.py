"""mimalloc 2.0, read-only: a walk of its segments, and its own process-wide statistics.

mimalloc 2.0 (include/mimalloc-types.h) carves memory into 32 MiB-aligned segments of 64 KiB
slices. A segment starts with ``mi_segment_t``: the commit and pending-decommit masks (one bit
per 64 KiB), a ``cookie`` (the segment's address xor a process-wide key), the number of
slices, and ``slices[]``: one ``mi_page_t`` per slice, where the first slice of a page holds the
page's block size (``xblock_size``), its ``used`` count (blocks in use; a block freed by another
thread stays counted until collected, on ``xthread_free``, a plain list in release builds)
and the number of slices it spans. Segments are found in /proc/PID/maps (anonymous memory at
32 MiB-aligned addresses) and kept when their header is consistent and their cookies agree on
one key.

``_mi_stats_main`` (hidden) holds mimalloc's own process-wide ``reserved`` and ``committed``
counters (what ``mi_process_info`` and ``mi_stats_print`` report); it is found in the library's
.data/.bss by its shape: 14 ``{allocated, freed, peak, current}`` counters where ``current ==
allocated - freed``, with ``reserved`` and ``committed`` above zero. A release build (Debian's)
counts no allocated bytes itself (MI_STAT 0): the in-use figure comes from the segment walk.

Only the layout of mimalloc 2.0.x to 2.1.1 is read: the library carries no version string, and
its option names tell the family (``segment_decommit_delay``; 2.1.2 renamed it ``purge_delay``
and changed ``mi_segment_t``); the walk's consistency checks the rest. 1.x lays out segments
differently (its segments are not sliced).
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from memtop.heap.allocators import (ATTEMPTS, Inconsistent, LibraryImage, ReaderError, environment, open_library,
                                    read_consistently)
from memtop.heap.memory import Mapping, MemoryReadError, TargetMemory
from memtop.model.allocator import AllocatorReport, AllocatorSetting

SEGMENT_SIZE = 32 << 20
SLICE_SIZE = 64 << 10
SLICES_PER_SEGMENT = SEGMENT_SIZE // SLICE_SIZE  # 512
PAGE_STRUCT = 80  # mi_page_t on 64-bit, release build (no encoded free lists)
SEG_DECOMMIT_MASK, SEG_COMMIT_MASK, MASK_BYTES = 48, 112, 64
SEG_USED, SEG_COOKIE, SEG_SLICES, SEG_INFO_SLICES, SEG_KIND, SEG_ENTRIES, SEG_THREAD = 208, 216, 224, 232, 240, 248, 256
SEG_HEADER = 264  # slices[] start
HUGE_BLOCK = 2 << 30  # MI_HUGE_BLOCK_SIZE: xblock_size at or above it means "the page's size"
STAT_COUNTS = 14
STAT_NAMES = ("segments", "pages", "reserved", "committed", "reset", "page_committed", "segments_abandoned",
              "pages_abandoned", "threads", "normal", "huge", "large", "malloc", "segments_cache")
MAX_SEGMENTS = 1 << 16
MAX_LIST = 1 << 20
ENV_OPTIONS = ("MIMALLOC_DECOMMIT_DELAY", "MIMALLOC_RESET_DELAY", "MIMALLOC_SEGMENT_DECOMMIT_DELAY",
               "MIMALLOC_ALLOW_DECOMMIT", "MIMALLOC_EAGER_COMMIT", "MIMALLOC_PAGE_RESET", "MIMALLOC_LARGE_OS_PAGES")


def _bits(raw: bytes, offset: int) -> int:
    return sum(bin(w).count("1") for w in struct.unpack_from("<8Q", raw, offset))


def _mask_ranges(raw: bytes, offset: int, base: int) -> list[tuple[int, int]]:
    """(start, end) of the 64 KiB chunks whose bits are set in a commit mask."""
    out = []
    words = struct.unpack_from("<8Q", raw, offset)
    for w_index, word in enumerate(words):
        while word:
            bit = (word & -word).bit_length() - 1
            chunk = w_index * 64 + bit
            start = base + chunk * SLICE_SIZE
            if out and out[-1][1] == start:
                out[-1] = (out[-1][0], start + SLICE_SIZE)
            else:
                out.append((start, start + SLICE_SIZE))
            word &= word - 1
    return out


@dataclass
class Segment:
    address: int
    size: int
    cookie_key: int
    header: bytes


def find_segments(mem: TargetMemory, maps: list[Mapping]) -> list[Segment]:
    """Segments at 32 MiB-aligned addresses of anonymous mappings, kept when consistent and when
    their cookies agree on one key (``cookie == segment ^ key``, segment.c mi_segment_init)."""
    found: list[Segment] = []
    for m in maps:
        if not (m.anonymous and not m.path and m.perms.startswith("rw")):
            continue
        address = (m.start + SEGMENT_SIZE - 1) & ~(SEGMENT_SIZE - 1)
        while address < m.end:
            try:
                # pagemap-checked: an untouched page reads as zeros and is not faulted in
                header = bytes(mem.read(address, SEG_HEADER)[0])
            except (MemoryReadError, OSError):
                address += SEGMENT_SIZE
                continue
            slices, info, kind, entries = struct.unpack_from("<QQIxxxxQ", header, SEG_SLICES)
            cookie = struct.unpack_from("<Q", header, SEG_COOKIE)[0]
            ok = (kind in (0, 1) and 0 < info < 16 and entries <= SLICES_PER_SEGMENT + 1 and info <= entries
                  and slices >= entries and (kind == 1 or slices == SLICES_PER_SEGMENT) and slices < 1 << 24)
            size = slices * SLICE_SIZE if ok else SEGMENT_SIZE
            if ok and address + size <= m.end:
                found.append(Segment(address, size, cookie ^ address, header))
                address += (size + SEGMENT_SIZE - 1) & ~(SEGMENT_SIZE - 1)
            else:
                address += SEGMENT_SIZE
            if len(found) > MAX_SEGMENTS:
                raise Inconsistent("more segments than memtop reads")
    if not found:
        return []
    key, count = Counter(s.cookie_key for s in found).most_common(1)[0]
    if count == 1 and len(found) > 1:
        raise ReaderError("unsupported", "no two mimalloc segment candidates agree on the cookie key: not mimalloc 2.0's layout")
    return [s for s in found if s.cookie_key == key]


@dataclass
class Totals:
    segments: int = 0
    mapped: int = 0
    committed: int = 0
    pending_decommit: int = 0
    resident: int = 0
    pages: int = 0
    live_blocks: int = 0
    allocated: int = 0
    active: int = 0  # slices of pages that hold a live block
    deferred_free: int = 0  # blocks freed by other threads, not yet collected (thread_free)
    free_resident: int = 0  # resident bytes in free spans and in pages without a live block
    pending_resident: int = 0  # resident bytes in chunks waiting for a delayed decommit
    owners: set = field(default_factory=set)  # thread ids owning segments (0: abandoned)
    release: int = 0  # what mi_collect(true) would release, by mimalloc 2.0.9's rules (see collect_release)
    release_ranges: list = field(default_factory=list)


def _list_length(mem: TargetMemory, head: int, limit: int) -> int:
    n = 0
    while head:
        n += 1
        if n > limit:
            raise Inconsistent("a free list is longer than its page")
        head = mem.word(head)
    return n


DECOMMIT_EXTEND_DELAY_MS = 1  # mi_option_decommit_extend_delay's default


def collect_release(segment_resident: int, pending_resident: int, empty_pages: list[int], live_pages: int,
                    decommit_expire: int, now_ms: int, owned: bool) -> int:
    """Resident bytes mi_collect(true) gives back in one segment, by mimalloc 2.0.9's rules.

    - collect frees the calling thread's pages without a live block (retired or emptied:
      heap.c mi_heap_collect_ex); each freed span asks for a delayed decommit (segment.c
      mi_segment_perhaps_decommit): when the segment's earlier request has expired (its
      decommit_expire is more than decommit_extend_delay ago) the whole pending mask is
      decommitted at once, with the span being freed; otherwise the span only joins the pending
      mask, and nothing leaves RSS now;
    - a segment left without any page in use is freed, and the forced collect of the segment
      cache decommits it whole;
    - an abandoned segment (no owning thread) has its pending mask decommitted (forced).
    ``empty_pages`` are the resident bytes of the pages collect would free (the first one freed
    goes with the pending mask: the smallest is counted, a lower bound).
    """
    if not owned:
        return pending_resident
    if not empty_pages:
        return 0
    if live_pages == 0:
        return segment_resident
    if decommit_expire and decommit_expire + DECOMMIT_EXTEND_DELAY_MS <= now_ms:
        return pending_resident + min(empty_pages)
    return 0


def walk(mem: TargetMemory, segments: list[Segment], maps: list[Mapping], caller: int | None = None) -> Totals:
    """Walk the segments. ``caller``: the mimalloc thread id of the thread mi_collect will run on
    (None: the one owner every segment has, when there is only one)."""
    import time

    t = Totals()
    now_ms = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000)  # mimalloc's _mi_clock_now
    per_segment = []
    for seg in segments:
        h = seg.header
        entries = struct.unpack_from("<Q", h, SEG_ENTRIES)[0]
        info = struct.unpack_from("<Q", h, SEG_INFO_SLICES)[0]
        owner = struct.unpack_from("<Q", h, SEG_THREAD)[0]
        decommit_expire = struct.unpack_from("<q", h, 40)[0]
        raw = bytes(mem.read(seg.address + SEG_HEADER, PAGE_STRUCT * (entries + 1))[0])
        pm = mem.pagemap(seg.address, seg.address + seg.size)
        t.owners.add(owner)
        t.segments += 1
        t.mapped += seg.size
        t.committed += _bits(h, SEG_COMMIT_MASK) * SLICE_SIZE
        t.pending_decommit += _bits(h, SEG_DECOMMIT_MASK) * SLICE_SIZE
        seg_resident = mem.resident_bytes(seg.address, seg.address + seg.size, pm)
        t.resident += seg_resident
        pending = 0
        for start, end in _mask_ranges(h, SEG_DECOMMIT_MASK, seg.address):
            pending += mem.resident_bytes(start, end, pm)
        t.pending_resident += pending
        empty_pages: list[int] = []
        live_pages = 0
        i = info
        while i < entries:
            count, offset, _bits0, _cap, _res, _flags, _z, _free, used, xblock, _local_free, thread_free = \
                struct.unpack_from("<IIBxHHBBQIIQQ", raw, i * PAGE_STRUCT)
            if count == 0 or offset != 0 or i + count > entries + 1:
                raise Inconsistent(f"segment {seg.address:#x}: slice {i} does not start a span")
            start = seg.address + i * SLICE_SIZE
            end = min(start + count * SLICE_SIZE, seg.address + seg.size)
            if xblock >= 2:  # a page (0 marks a free span, 1 a span being set up or cleared)
                block = xblock if xblock < HUGE_BLOCK else end - start
                capacity = max(1, (end - start) // block)
                if used > capacity + 1:
                    raise Inconsistent(f"page at {start:#x} claims {used} blocks of {block}")
                # A local free already decremented ``used`` (alloc.c _mi_free_block); a free from
                # another thread is only subtracted when collected (page.c _mi_page_thread_free_collect).
                deferred = _list_length(mem, thread_free & ~3, used) if used else 0
                live = used - deferred
                t.pages += 1
                t.live_blocks += live
                t.allocated += live * block
                t.deferred_free += deferred * block
                if live:
                    t.active += end - start
                    live_pages += 1
                else:
                    r = mem.resident_bytes(start, end, pm)
                    t.free_resident += r
                    empty_pages.append(r)
            else:
                t.free_resident += mem.resident_bytes(start, end, pm)
            i += count
        per_segment.append((seg, owner, seg_resident, pending, empty_pages, live_pages, decommit_expire))
    owners = {o for o in t.owners if o}
    if caller is None and len(owners) <= 1:
        caller = next(iter(owners), None)
    if caller is None and owners:
        t.release = None
    else:
        for seg, owner, seg_resident, pending, empty_pages, live_pages, expire in per_segment:
            if owner and owner != caller:
                continue  # another live thread's heap: mi_collect on the calling thread does not touch it
            got = collect_release(seg_resident, pending, empty_pages, live_pages, expire, now_ms, owned=bool(owner))
            t.release += got
            if got:
                t.release_ranges.append((seg.address, seg.address + seg.size))
    return t


def find_stats(image: LibraryImage, mem: TargetMemory) -> tuple[int, dict[str, int]] | None:
    """``_mi_stats_main`` by its shape (see module doc): its address and current values."""
    candidates = []
    for name in (".data", ".bss"):
        rng = image.section_range(name)
        if rng is None:
            continue
        data = bytes(mem.read(rng[0], rng[1] - rng[0])[0])
        for off in range(0, len(data) - STAT_COUNTS * 32, 8):
            values = struct.unpack_from(f"<{STAT_COUNTS * 4}q", data, off)
            counts = [values[k:k + 4] for k in range(0, len(values), 4)]
            if any(c[3] != c[0] - c[1] or c[2] < c[3] or c[0] < 0 or c[1] < 0 for c in counts):
                continue
            reserved, committed = counts[2][3], counts[3][3]
            if reserved <= 0 or committed <= 0 or committed > reserved * 2:
                continue
            candidates.append((rng[0] + off, {n: c[3] for n, c in zip(STAT_NAMES, counts)}))
    return candidates[0] if len(candidates) == 1 else None


def read(pid: int, root: Path, maps: list[Mapping], guess) -> AllocatorReport:
    if guess.library is None:
        raise ReaderError("unsupported", "mimalloc linked into the executable: not read")
    image = open_library(pid, maps, root, guess.library)
    # The options' names tell the layout family: 2.0.x to 2.1.1 decommit with "decommit_delay";
    # 2.1.2 replaced it with "purge_delay" and changed mi_segment_t (memid became a struct).
    if b"purge_delay" in image.data or b"segment_decommit_delay" not in image.data:
        raise ReaderError("unsupported", f"{image.path} is a mimalloc whose segments memtop does not know (it reads "
                                         "the 2.0 layout, up to 2.1.1, which has the decommit_delay options)")
    with TargetMemory(pid, root) as mem:
        # no segments: nothing allocated yet, or all given back
        totals, problem = read_consistently(mem, pid, lambda: walk(mem, find_segments(mem, maps), maps))
        if totals is None:
            return AllocatorReport(kind="mimalloc", version=None, library=image.path, static=False, status="changing",
                                   reason=f"the segments changed under {ATTEMPTS} walks (last: {problem})",
                                   method="read-only walk of mimalloc's segments")
        stats = find_stats(image, mem)
    env, _why = environment(pid, root)
    settings = []
    if env is not None:
        settings = [AllocatorSetting(name, env[name], "the environment at start") for name in ENV_OPTIONS if name in env]
    settings.append(AllocatorSetting("decommit_delay", (env or {}).get("MIMALLOC_DECOMMIT_DELAY", "25"),
                                     "MIMALLOC_DECOMMIT_DELAY, else mimalloc 2.0's default (ms): freed pages stay "
                                     "committed that long, and longer while the thread allocates nothing"))
    t = totals
    how = "read-only walk of mimalloc's segments (32 MiB-aligned, checked by their cookies) through /proc/PID/mem"
    sources = [
        ("allocated_bytes", f"{how}: live blocks x block size (used - thread_free per page)"),
        ("active_bytes", f"{how}: the slices of pages that hold a live block"),
        ("mapped_bytes", f"{how}: the segments' sizes"),
        ("resident_bytes", "pagemap of the segments"),
        ("free_kept_bytes", "pagemap: resident pages of free spans and of pages without a live block"),
        ("release_bytes", "pagemap of the segments, under mimalloc 2.0.9's collect and delayed-decommit rules "
                          "(memtop.heap.mimalloc.collect_release)"),
    ]
    details = [("segments", t.segments), ("pages_in_use", t.pages), ("live_blocks", t.live_blocks),
               ("committed_bytes", t.committed), ("pending_decommit_bytes", t.pending_decommit),
               ("pending_decommit_resident_bytes", t.pending_resident), ("deferred_free_bytes", t.deferred_free)]
    if stats is not None:
        _address, values = stats
        details += [("stats_reserved_bytes", values["reserved"]), ("stats_committed_bytes", values["committed"]),
                    ("stats_reset_bytes", values["reset"])]
        sources.append(("stats_committed_bytes", "mimalloc's own _mi_stats_main.committed (= mi_process_info "
                                                 "current_commit), found by its shape"))
    return AllocatorReport(
        kind="mimalloc", version="2.0 (to 2.1.1)", library=image.path, static=False, status="valid", reason=None, method=how,
        allocated_bytes=t.allocated, active_bytes=t.active, mapped_bytes=t.mapped, resident_bytes=t.resident,
        free_kept_bytes=t.free_resident, retained_bytes=max(0, t.mapped - t.committed),
        release_bytes=t.release, release_call="mi_collect(true)", release_ranges=tuple(t.release_ranges),
        sources=tuple(sources) + (("retained_bytes", f"{how}: reserved but not committed (commit masks)"),),
        unknown=((() if stats is not None else
                  (("stats_committed_bytes", "mimalloc's _mi_stats_main was not found by its shape"),)) +
                 (() if t.release is not None else
                  (("release_bytes", f"segments belong to {len({o for o in t.owners if o})} threads: mi_collect(true) "
                                     "collects only the heap of the thread it runs on"),))),
        details=tuple(details), settings=tuple(settings),
        notes=("mimalloc's release builds keep no count of allocated bytes; the figure here is the segment walk's",
               "mimalloc 2.0 decommits freed pages only after decommit_delay, and only when the owning thread frees "
               "again: an idle thread keeps them committed (pending_decommit_resident_bytes), and mi_collect(true) "
               "gives them back only if it frees a page in the same segment"),
    )
