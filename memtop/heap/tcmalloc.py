"""tcmalloc (gperftools 2.10), read-only: the page heap, the central, transfer and thread caches:
the same sums ``MallocExtension::GetNumericProperty`` computes (src/tcmalloc.cc ExtractStats).

- ``PageHeap::stats_`` (src/page_heap.h): system_bytes, free_bytes (spans on the normal free
  lists), unmapped_bytes (spans released to the kernel), committed_bytes, and lifetime counters.
  The PageHeap lives in a hidden static (``Static::pageheap_``); its Stats are found in .bss by
  the identities tcmalloc keeps: ``unmapped + committed == system`` (page_heap.cc asserts it),
  ``total_reserve_bytes == system`` and ``total_commit - total_decommit == committed``, all in
  8 KiB pages.
- The free lists sit right before Stats (``SpanList free_[kMaxPages]``, a list of spans of
  length i + 1 each, then the sets of larger spans before them): walking them gives each free
  span's pages, whose sum must equal free_bytes and unmapped_bytes; pagemap over the normal
  ones is what ``MallocExtension_ReleaseFreeMemory()`` would give back.
- ``Static::central_cache_[kClassSizesMax]`` (src/central_freelist.h, 1216 bytes each) is found
  by its shape (entry i holds size class i); ``SizeMap::class_to_size_`` by its first classes
  (0, 8, 16, 32, ...), with ``num_objects_to_move_`` before it and ``class_to_pages_`` after.
- ``ThreadCache::thread_heaps_`` is an exported symbol: the list of thread caches, each with
  its byte count (``size_``), checked against its free lists.

allocated = system - page-heap free - unmapped - central - transfer - thread caches, exactly
``generic.current_allocated_bytes``. Only gperftools 2.10 (the version string in the library) is
read: the layouts above are that version's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from memtop.heap.allocators import (ATTEMPTS, Inconsistent, LibraryImage, ReaderError, environment, open_library,
                                    read_consistently)
from memtop.heap.memory import Mapping, MemoryReadError, TargetMemory
from memtop.model.allocator import AllocatorReport, AllocatorSetting

PAGE_SHIFT = 13  # kPageShift: 8 KiB tcmalloc pages
TC_PAGE = 1 << PAGE_SHIFT
MAX_PAGES = 128  # kMaxPages = 1 << (20 - kPageShift)
SPAN_SIZE = 48  # start, length, next, prev, objects/iterator, bitfields
SPANLIST_SIZE = 2 * SPAN_SIZE  # normal, returned
SPANSET_SIZE = 48  # std::set (libstdc++ _Rb_tree): compare, header node (32), node count
STATS_FIELDS = 11
STATS_SIZE = 8 * STATS_FIELDS
CENTRAL_SIZE = 1216  # sizeof(CentralFreeListPadded) with kMaxNumTransferEntries 64
CENTRAL_SIZE_CLASS, CENTRAL_NUM_SPANS, CENTRAL_COUNTER, CENTRAL_USED_SLOTS = 8, 112, 120, 1152
CLASS_SIZES_MAX = 128
THREAD_CACHE_READ = 4160
THREAD_SIZE, THREAD_NEXT = 4096, 4144  # size_ after FreeList list_[128] (32 bytes each); next_ after the sampler
FREELIST_SIZE = 32
LOC_NORMAL, LOC_RETURNED = 1, 2
SIZE_START = (0, 8, 16, 32, 48, 64, 80, 96, 112, 128)
THREAD_HEAPS = "_ZN8tcmalloc11ThreadCache13thread_heaps_E"
RELEASE_RATE = "_ZN62FLAG__namespace_do_not_use_directly_use_DECLARE_double_instead27FLAGS_tcmalloc_release_rateE"
MAX_SPANS = 1 << 22
VERSION = b"gperftools 2.10"


@dataclass(frozen=True, slots=True)
class Layout:
    stats: int
    size_classes: tuple[int, ...]  # class_to_size_[0..num_size_classes)
    objects_to_move: tuple[int, ...]
    class_pages: tuple[int, ...]
    central: int  # central_cache_[0]
    thread_heaps: int | None  # &ThreadCache::thread_heaps_
    release_rate: int | None  # &FLAGS_tcmalloc_release_rate


def find_stats(bss: bytes) -> list[int]:
    """Offsets in .bss where PageHeap::Stats' identities hold (see module doc)."""
    words = memoryview(bss[: len(bss) // 8 * 8]).cast("Q")
    out = []
    for i in range(len(words) - STATS_FIELDS):
        system = words[i]
        if not system or system % TC_PAGE or words[i + 10] != system:
            continue
        free, unmapped, committed = words[i + 1], words[i + 2], words[i + 3]
        total_commit, total_decommit, reserves = words[i + 6], words[i + 8], words[i + 9]
        if unmapped + committed == system and total_commit - total_decommit == committed and free <= committed \
                and reserves >= 1 and free % TC_PAGE == 0:
            out.append(i * 8)
    words.release()
    return out


def find_size_classes(bss: bytes) -> int:
    pattern = struct.pack(f"<{len(SIZE_START)}i", *SIZE_START)
    at = bss.find(pattern)
    while at != -1 and at % 4:
        at = bss.find(pattern, at + 1)
    if at == -1 or bss.find(pattern, at + 4) != -1:
        raise ReaderError("unsupported", "tcmalloc's size-class table (SizeMap::class_to_size_) is not in its .bss "
                                         "exactly once")
    return at


def find_central(bss: bytes, classes: int) -> int:
    """Offset of central_cache_[0]: entries 1, 2, 3 carry their size class at +8, CENTRAL_SIZE apart."""
    hits = []
    for o in range(0, len(bss) - CENTRAL_SIZE * 4, 8):
        if struct.unpack_from("<Q", bss, o + CENTRAL_SIZE + CENTRAL_SIZE_CLASS)[0] != 1:
            continue
        if all(struct.unpack_from("<Q", bss, o + k * CENTRAL_SIZE + CENTRAL_SIZE_CLASS)[0] == k for k in (0, 2, 3)):
            hits.append(o)
    hits = [o for o in hits if all(
        o + k * CENTRAL_SIZE + 16 <= len(bss) and struct.unpack_from("<Q", bss, o + k * CENTRAL_SIZE + CENTRAL_SIZE_CLASS)[0] == k
        for k in range(classes))]
    if len(hits) != 1:
        raise ReaderError("unsupported", f"tcmalloc's central cache array was found {len(hits)} times in its .bss")
    return hits[0]


_layouts: dict[tuple, Layout] = {}


def locate(mem: TargetMemory, image: LibraryImage) -> Layout:
    """The layout of one process's tcmalloc: found once per process (its .bss does not move)."""
    from memtop.procfs.process import read_stat

    try:
        key = (mem.pid, read_stat(mem.pid, mem.root).start_ticks, image.path, image.base)
    except Exception:  # noqa: BLE001 - the layout is then simply not cached
        key = None
    cached = _layouts.get(key) if key else None
    if cached is not None:
        return cached
    layout = _locate(mem, image)
    if key:
        if len(_layouts) > 64:
            _layouts.clear()
        _layouts[key] = layout
    return layout


def _locate(mem: TargetMemory, image: LibraryImage) -> Layout:
    if VERSION not in image.data:
        import re

        other = re.search(rb"gperftools \d+\.\d+", image.data)
        raise ReaderError("unsupported", f"{(other.group(0).decode() if other else 'an unknown tcmalloc')}: memtop "
                                         "reads the layout of gperftools 2.10 only")
    bss_range = image.section_range(".bss")
    if bss_range is None:
        raise ReaderError("unsupported", f"{image.path} has no .bss section")
    bss = bytes(mem.read(bss_range[0], bss_range[1] - bss_range[0])[0])
    stats = find_stats(bss)
    if not stats:
        raise ReaderError("empty", "tcmalloc's page heap has no memory yet (or its statistics are not where 2.10 keeps them)")
    if len(stats) > 1:
        raise ReaderError("unsupported", f"{len(stats)} places in tcmalloc's .bss look like its page-heap statistics")
    at = find_size_classes(bss)
    pages_at = (at + 512 + 7) & ~7
    classes = struct.unpack_from("<I", bss, pages_at + 8 * CLASS_SIZES_MAX)[0]
    if not 2 < classes <= CLASS_SIZES_MAX:
        raise ReaderError("unsupported", f"tcmalloc's SizeMap says {classes} size classes")
    sizes = struct.unpack_from(f"<{classes}i", bss, at)
    moves = struct.unpack_from(f"<{classes}i", bss, at - 4 * CLASS_SIZES_MAX)
    pages = struct.unpack_from(f"<{classes}Q", bss, pages_at)
    if any(b <= a for a, b in zip(sizes[1:], sizes[2:])) or any(p == 0 for p in pages[1:]):
        raise ReaderError("unsupported", "tcmalloc's size-class table is not increasing: not the SizeMap memtop knows")
    central = find_central(bss, classes)
    return Layout(bss_range[0] + stats[0], sizes, moves, pages, bss_range[0] + central,
                  image.symbol(THREAD_HEAPS), image.symbol(RELEASE_RATE))


@dataclass
class Figures:
    system: int = 0
    free: int = 0
    unmapped: int = 0
    committed: int = 0
    central: int = 0
    transfer: int = 0
    thread: int = 0
    thread_caches: int = 0
    free_spans: list = None  # (start, end) of normal free spans
    free_resident: int = 0
    aggressive_decommit: bool | None = None


def _walk_list(mem: TargetMemory, head: int, length: int | None, location: int) -> list[tuple[int, int]]:
    """(start address, pages) of the spans of one circular span list (DLL with a dummy head)."""
    out = []
    node = mem.word(head + 16)
    while node != head:
        start, pages, nxt, _prev = struct.unpack("<QQQQ", mem.read_exact(node, 32))
        bits = struct.unpack("<I", mem.read_exact(node + 40, 4))[0]
        if (length is not None and pages != length) or (bits >> 24) & 3 != location:
            raise Inconsistent(f"span {node:#x} on the free list of {length} pages has {pages} pages, location {(bits >> 24) & 3}")
        out.append((start << PAGE_SHIFT, pages))
        if len(out) > MAX_SPANS:
            raise Inconsistent("a free list does not end")
        node = nxt
    return out


def _walk_set(mem: TargetMemory, set_address: int, location: int) -> list[tuple[int, int]]:
    """(start address, pages) of the spans in a SpanSet (std::set of {Span*, length})."""
    _color, root, _left, _right, count = struct.unpack("<IxxxxQQQQ", mem.read_exact(set_address + 8, 40))
    out = []
    stack = [root] if root else []
    while stack:
        node = stack.pop()
        _c, _parent, left, right, span, pages = struct.unpack("<IxxxxQQQQQ", mem.read_exact(node, 48))
        start, span_pages = struct.unpack("<QQ", mem.read_exact(span, 16))
        bits = struct.unpack("<I", mem.read_exact(span + 40, 4))[0]
        if span_pages != pages or pages < MAX_PAGES or (bits >> 24) & 3 != location:
            raise Inconsistent(f"large span {span:#x} in a free set disagrees with its entry")
        out.append((start << PAGE_SHIFT, pages))
        if len(out) > count:
            raise Inconsistent("a free set holds more nodes than it counts")
        stack.extend(x for x in (left, right) if x)
    if len(out) != count:
        raise Inconsistent(f"a free set counts {count} nodes, {len(out)} found")
    return out


def measure(mem: TargetMemory, layout: Layout, maps: list[Mapping]) -> Figures:
    raw = mem.read_exact(layout.stats, STATS_SIZE + 16)
    f = Figures()
    f.system, f.free, f.unmapped, f.committed = struct.unpack_from("<QQQQ", raw)
    f.aggressive_decommit = bool(raw[STATS_SIZE + 12])
    free_lists = layout.stats - MAX_PAGES * SPANLIST_SIZE
    normal: list[tuple[int, int]] = []
    returned: list[tuple[int, int]] = []
    for i in range(MAX_PAGES):
        head = free_lists + i * SPANLIST_SIZE
        normal += _walk_list(mem, head, i + 1, LOC_NORMAL)
        returned += _walk_list(mem, head + SPAN_SIZE, i + 1, LOC_RETURNED)
    normal += _walk_set(mem, free_lists - 2 * SPANSET_SIZE, LOC_NORMAL)
    returned += _walk_set(mem, free_lists - SPANSET_SIZE, LOC_RETURNED)
    again = struct.unpack_from("<QQQ", mem.read_exact(layout.stats, 24))
    if again != (f.system, f.free, f.unmapped):
        raise Inconsistent("the page heap changed during the walk")
    if sum(p for _, p in normal) << PAGE_SHIFT != f.free or sum(p for _, p in returned) << PAGE_SHIFT != f.unmapped:
        raise Inconsistent("the free lists do not add up to the page heap's free and unmapped bytes")
    f.free_spans = [(start, start + (pages << PAGE_SHIFT)) for start, pages in normal]
    # Central and transfer caches (tcmalloc.cc ExtractStats, central_freelist.cc OverheadBytes).
    central = bytes(mem.read(layout.central, CENTRAL_SIZE * len(layout.size_classes))[0])
    for cl in range(1, len(layout.size_classes)):
        o = cl * CENTRAL_SIZE
        if struct.unpack_from("<Q", central, o + CENTRAL_SIZE_CLASS)[0] != cl:
            raise Inconsistent(f"central cache entry {cl} does not carry its size class")
        num_spans, counter = struct.unpack_from("<QQ", central, o + CENTRAL_NUM_SPANS)
        used_slots = struct.unpack_from("<i", central, o + CENTRAL_USED_SLOTS)[0]
        size = layout.size_classes[cl]
        overhead = num_spans * ((layout.class_pages[cl] << PAGE_SHIFT) % size)
        f.central += size * counter + overhead
        f.transfer += size * used_slots * layout.objects_to_move[cl]
    # Thread caches (thread_cache.cc GetThreadStats).
    if layout.thread_heaps is not None:
        heap = mem.word(layout.thread_heaps)
        seen = set()
        while heap:
            if heap in seen or len(seen) > 65536:
                raise Inconsistent("the thread cache list loops")
            seen.add(heap)
            blob = mem.read_exact(heap, THREAD_CACHE_READ)
            size = struct.unpack_from("<i", blob, THREAD_SIZE)[0]
            listed = sum(struct.unpack_from("<I", blob, i * FREELIST_SIZE + 8)[0] *
                         struct.unpack_from("<i", blob, i * FREELIST_SIZE + 24)[0] for i in range(CLASS_SIZES_MAX))
            if size != listed:
                raise Inconsistent(f"thread cache {heap:#x} holds {listed} bytes in its lists but counts {size}")
            f.thread += size
            heap = struct.unpack_from("<Q", blob, THREAD_NEXT)[0]
        f.thread_caches = len(seen)
    # What ReleaseFreeMemory would give back: the resident pages of the normal free spans.
    pagemaps: dict[int, object] = {}
    for start, end in f.free_spans:
        m = next((x for x in maps if x.start <= start < x.end), None)
        if m is None:
            continue
        pm = pagemaps.get(m.start)
        if pm is None:
            pm = pagemaps[m.start] = mem.pagemap(m.start, m.end)
        f.free_resident += mem.resident_bytes(start, min(end, m.end), pm)
    return f


def read(pid: int, root: Path, maps: list[Mapping], guess) -> AllocatorReport:
    if guess.library is None:
        raise ReaderError("unsupported", "tcmalloc linked into the executable: not read")
    image = open_library(pid, maps, root, guess.library)
    with TargetMemory(pid, root) as mem:
        layout = locate(mem, image)
        figures, problem = read_consistently(mem, pid, lambda: measure(mem, layout, maps))
        if figures is None:
            return AllocatorReport(kind="tcmalloc", version="2.10", library=image.path, static=False, status="changing",
                                   reason=f"the page heap changed under {ATTEMPTS} reads (last: {problem})",
                                   method="read-only reading of tcmalloc's page heap and caches")
        rate = None
        if layout.release_rate is not None:
            try:
                rate = struct.unpack("<d", mem.read_exact(layout.release_rate, 8))[0]
            except MemoryReadError:
                rate = None
    env, why = environment(pid, root)
    settings = [AllocatorSetting("release_rate", None if rate is None else f"{rate:g}",
                                 "FLAGS_tcmalloc_release_rate in the process (TCMALLOC_RELEASE_RATE at start, "
                                 "SetMemoryReleaseRate since; 0 never releases, default 1)"),
                AllocatorSetting("aggressive_decommit", None if figures.aggressive_decommit is None else
                                 str(figures.aggressive_decommit).lower(),
                                 "PageHeap::aggressive_decommit_ (TCMALLOC_AGGRESSIVE_DECOMMIT)")]
    if env is not None:
        for name in ("TCMALLOC_RELEASE_RATE", "TCMALLOC_AGGRESSIVE_DECOMMIT", "TCMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES"):
            if name in env:
                settings.append(AllocatorSetting(name, env[name], "the environment at start"))
    f = figures
    how = "read-only reading of tcmalloc's PageHeap stats, free lists and caches through /proc/PID/mem"
    active = f.system - f.free - f.unmapped
    return AllocatorReport(
        kind="tcmalloc", version="2.10", library=image.path, static=False, status="valid", reason=None, method=how,
        allocated_bytes=active - f.central - f.transfer - f.thread, active_bytes=active, mapped_bytes=f.system,
        resident_bytes=None, free_kept_bytes=f.free, retained_bytes=f.unmapped, release_bytes=f.free_resident,
        release_call="MallocExtension_ReleaseFreeMemory()",
        sources=(
            ("allocated_bytes", f"{how}: heap - page-heap free - unmapped - central - transfer - thread caches "
                                "(= generic.current_allocated_bytes)"),
            ("active_bytes", f"{how}: heap - page-heap free - unmapped (the caches are in it)"),
            ("mapped_bytes", f"{how}: PageHeap stats system_bytes (= generic.heap_size)"),
            ("free_kept_bytes", f"{how}: PageHeap stats free_bytes (= tcmalloc.pageheap_free_bytes)"),
            ("retained_bytes", f"{how}: PageHeap stats unmapped_bytes (= tcmalloc.pageheap_unmapped_bytes)"),
            ("release_bytes", "pagemap: resident pages of the spans on the page heap's normal free lists, which "
                              "ReleaseFreeMemory gives back"),
        ),
        unknown=(("resident_bytes", "tcmalloc does not list the spans in use without a walk of its page map; "
                                    "the kernel layer has the process's RSS"),),
        details=(("pageheap_free_bytes", f.free), ("pageheap_unmapped_bytes", f.unmapped),
                 ("pageheap_free_resident_bytes", f.free_resident), ("committed_bytes", f.committed),
                 ("central_cache_free_bytes", f.central), ("transfer_cache_free_bytes", f.transfer),
                 ("thread_cache_free_bytes", f.thread), ("thread_caches", f.thread_caches),
                 ("free_spans", len(f.free_spans))),
        settings=tuple(settings), release_ranges=tuple(f.free_spans),
        notes=("ReleaseFreeMemory empties the page heap's free lists only: memory in the central, transfer and "
               "thread caches stays",),
    )
