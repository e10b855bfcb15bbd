"""The read-only chunk walk of one glibc arena, and what malloc_trim(0) would do to it.

A heap segment (the main arena's [heap], or one heap of a thread arena) is a sequence of chunks:
each starts with prev_size and size (flag bits PREV_INUSE=1, IS_MMAPPED=2, NON_MAIN_ARENA=4);
the next chunk is at ``p + (size & ~7)``. A chunk is free in a bin when the following chunk's
PREV_INUSE bit is clear (malloc.c ``inuse_bit_at_offset``). Fastbin and tcache chunks keep the
bit set: fastbins are found by following ``fastbinsY`` (safe-linked ``fd``), tcache chunks by the
``tcache_key`` in their second user word (malloc.c ``tcache_put``; glibc's own double-free check).

The inner loop is plain Python over a ``memoryview.cast('Q')`` of a window of the heap read from
/proc/PID/mem, and it does as little as possible per chunk: it only advances and notes the chunks
whose successor has PREV_INUSE clear. Known addresses (fastbin and tcache candidates) become
stops, so that checking them costs nothing per chunk.

The compiled loop (memtop/heap/_walk.c) also notes, per window, the chunks that could be fastbin
nodes; the fastbin lists are then followed through those notes (:func:`fastbin_chunks`) instead
of being read from the target node by node (a second read of the whole heap for a heap of small
chunks), and free and fastbin chunks are merged into runs without a Python object per chunk
(:func:`merge_runs_packed`). The pure-Python walk reads the lists; both give the same report.
"""

from __future__ import annotations

import bisect
import struct
from array import array
from dataclasses import dataclass, field

from memtop.heap.glibc import (
    ARENA_ATTACHED,
    ARENA_FASTBINS,
    ARENA_NEXT,
    ARENA_SYSTEM_MEM,
    ARENA_TOP,
    MALLOC_STATE_SIZE,
    MINSIZE,
    NFASTBINS,
    Layout,
    align_up,
    reveal_ptr,
)
from memtop.heap import native
from memtop.heap.memory import MemoryReadError, TargetMemory
from memtop.procfs import PAGE_SIZE

MAX_CANDIDATE_BYTES = 32 << 20  # fastbin candidates kept (2 M): past that, the lists are read instead
WINDOW = 1 << 20  # bytes of heap read at a time (1 MiB: 10 % faster than 4 MiB, 30 % than 16 MiB here)
MAX_ARENAS = 4096
MAX_LIST = 50_000_000  # a fastbin or tcache list longer than this is a loop (corruption)
FAR = 1 << 62
NO_PREV = -(1 << 62)


class Inconsistent(Exception):
    """The heap did not look as it must: either it changed under the walk, or it is corrupt.

    ``address`` is where the walk stopped.
    """

    def __init__(self, detail: str, address: int | None = None):
        self.detail = detail
        self.address = address
        where = f" at 0x{address:x}" if address is not None else ""
        super().__init__(f"{detail}{where}")


class Cancelled(Exception):
    pass


@dataclass(slots=True)
class ArenaState:
    """The fields of one malloc_state (malloc.c ``struct malloc_state``) as read."""

    address: int
    raw: bytes
    mutex: int
    top: int
    fastbins: tuple[int, ...]
    next: int
    attached_threads: int
    system_mem: int

    @classmethod
    def parse(cls, address: int, raw: bytes) -> "ArenaState":
        return cls(
            address=address,
            raw=raw,
            mutex=struct.unpack_from("<i", raw, 0)[0],
            top=struct.unpack_from("<Q", raw, ARENA_TOP)[0],
            fastbins=struct.unpack_from(f"<{NFASTBINS}Q", raw, ARENA_FASTBINS),
            next=struct.unpack_from("<Q", raw, ARENA_NEXT)[0],
            attached_threads=struct.unpack_from("<Q", raw, ARENA_ATTACHED)[0],
            system_mem=struct.unpack_from("<Q", raw, ARENA_SYSTEM_MEM)[0],
        )

    def same_as(self, other: "ArenaState") -> bool:
        """Unchanged apart from the mutex word (taking and releasing the lock changes nothing)."""
        return self.raw[4:] == other.raw[4:]


def read_arena(mem: TargetMemory, address: int) -> ArenaState:
    return ArenaState.parse(address, mem.read_exact(address, MALLOC_STATE_SIZE))


def arena_addresses(mem: TargetMemory, main_arena: int) -> list[int]:
    """main_arena, then each arena by ``next`` until the cycle returns to main_arena."""
    addresses = [main_arena]
    seen = {main_arena}
    current = mem.word(main_arena + ARENA_NEXT)
    while current != main_arena:
        if current in seen or current == 0 or len(addresses) >= MAX_ARENAS:
            raise Inconsistent("the arena list (malloc_state.next) does not cycle back to main_arena", current)
        seen.add(current)
        addresses.append(current)
        current = mem.word(current + ARENA_NEXT)
    return addresses


class BlockCache:
    """Small reads (tcache nodes, heap_info, top headers) served from resident-only pages read once.

    One page a block, at most 1,024 kept (4 MiB): 64 KiB blocks, up to 8,192 of them, could hold
    512 MiB for words scattered over many arenas; one page a read cost no measurable time on
    ruby's 9 arenas or mariadbd's 16 (bench/heap_walk_real.py).
    """

    BLOCK = PAGE_SIZE

    def __init__(self, mem: TargetMemory, limit_blocks: int = 1024):
        self.mem = mem
        self.blocks: dict[int, memoryview] = {}
        self.limit = limit_blocks

    def _block(self, block: int):
        data = self.blocks.get(block)
        if data is None:
            if len(self.blocks) >= self.limit:
                self.blocks.clear()
            try:
                data = memoryview(self.mem.read(block, self.BLOCK)[0]).cast("Q")
            except MemoryReadError:
                return None  # straddles the end of a mapping
            self.blocks[block] = data
        return data

    def word(self, address: int) -> int:
        block = address & ~(self.BLOCK - 1)
        data = self._block(block)
        if data is None or address & 7:
            return self.mem.word(address)
        return data[(address - block) >> 3]


@dataclass(slots=True)
class Segment:
    """One contiguous run of chunks: [first_chunk, end). ``end`` is top for the segment that
    holds top, else the heap's end (where fenceposts close it)."""

    heap_start: int
    heap_size: int
    first_chunk: int
    end: int
    holds_top: bool


@dataclass(slots=True)
class SegmentWalk:
    chunks: int = 0
    # (address, size) of chunks free in a bin, packed (native 64-bit words), in address order: a
    # heap can hold millions (every other chunk), and a tuple each took 600 MiB for 1 GiB of heap
    free_packed: bytearray = field(default_factory=bytearray)
    checkpoints: list = field(default_factory=list)  # chunk addresses known to be chunk starts
    tcache: list = field(default_factory=list)  # (address, size) confirmed tcache chunks
    end_marker: int | None = None  # where a non-top segment's fencepost was found
    swapped_pages: int = 0
    last_chunk: int | None = None  # the chunk right before top (or the fencepost)
    candidates_dropped: bool = False  # more fastbin candidates than MAX_CANDIDATE_BYTES: none kept

    @property
    def free(self) -> list[tuple[int, int]]:
        """The free chunks as (address, size) tuples (for a few; the walk keeps them packed)."""
        view = packed_pairs(self.free_packed)
        return list(zip(view[0::2], view[1::2]))


def walk_segment(mem: TargetMemory, segment: Segment, *, tcache_keys: set[int],
                 tcache_chunks: list[int] = (), progress=None, cancel=None, use_native: bool = True,
                 fast_candidates: bytearray | None = None, arena_range: tuple[int, int] = (0, 0),
                 safe_linking: bool = True) -> SegmentWalk:
    """Walk every chunk of a segment. Raises Inconsistent at the first chunk that cannot be.

    Fastbin chunks are not checked here: they come from the arena's own lists, and the arena is
    compared before and after the walk (any push or pop changes fastbinsY). ``tcache_keys``:
    values whose presence in a chunk's second user word marks it as a tcache candidate
    (confirmed when the walk lands on it). ``use_native``: the compiled loop when available.
    ``fast_candidates``: with the compiled loop, a bytearray the loop appends the chunks that
    could be fastbin list nodes to (see :func:`fastbin_chunks`); ``arena_range`` is [lo, hi) of
    the arena's heaps and ``safe_linking`` whether fd pointers are protected.
    """
    result = SegmentWalk()
    patterns: dict[tuple[int, int], bytes] = {}
    p = segment.first_chunk
    end = segment.end
    free_flat: list[int] = []
    key_bytes = [k.to_bytes(8, "little") for k in tcache_keys if k]
    tc_index = bisect.bisect_left(tcache_chunks, p)
    prev_abs = None
    chunks = 0
    # One buffer for every window: its pages stay faulted in (a fresh 4 MiB bytearray per window
    # cost a page fault per 4 KiB and an mmap/munmap each time).
    # Reads start on a page boundary: /proc/PID/mem copies page by page (fs/proc/base.c mem_rw),
    # and an unaligned read touches two of the target's pages per page copied.
    buffer = bytearray(min(WINDOW, align_up(end - p + 32, 16)) + PAGE_SIZE)
    read_into = getattr(mem, "read_into", None)
    while p < end:
        if cancel is not None and cancel():
            raise Cancelled()
        window_len = min(WINDOW, end - p + 32)
        window_len = align_up(window_len, 16)
        data_start = p & (PAGE_SIZE - 1)
        try:
            if read_into is not None:
                swapped = read_into(p - data_start, data_start + window_len, buffer)
            else:
                chunk, swapped = mem.read(p - data_start, data_start + window_len)
                buffer[:data_start + window_len] = chunk
        except MemoryReadError as e:
            raise Inconsistent(f"heap memory unreadable ({e})", p) from e
        data = memoryview(buffer)[data_start:data_start + window_len]
        result.swapped_pages += swapped
        result.checkpoints.append(p)
        words = data.cast("Q")
        base = p
        # Word index limit: a chunk's header (size at +8) and the tcache key (+24) must be inside.
        lim_window = (window_len - 32) // 8
        lim_end = (end - base) // 8
        limit = min(lim_window, lim_end)
        # Stops: tcache candidates inside this window, as word indices.
        stops = []
        window_end_abs = base + limit * 8
        while tc_index < len(tcache_chunks) and tcache_chunks[tc_index] < window_end_abs:
            stops.append(((tcache_chunks[tc_index] - base) >> 3, 2))
            tc_index += 1
        walker = native.load() if use_native and native.enabled else None
        for key in key_bytes if walker is None else ():  # the native loop compares keys itself
            pos = buffer.find(key, data_start + 24, data_start + window_len) - data_start
            while pos >= 0 and pos < limit * 8 + 24:
                if pos % 16 == 8:
                    stops.append(((pos - 24) >> 3, 2))
                pos = buffer.find(key, data_start + pos + 8, data_start + window_len) - data_start
        stops = sorted({index for index, _ in stops})
        prev = (prev_abs - base) >> 3 if prev_abs is not None else NO_PREV
        tc_hits: list[int] = []
        first_free = -1
        if walker is not None:
            i, prev, n, first_free = _window_native(walker, data, limit, stops, tcache_keys, prev, result.free_packed,
                                                    tc_hits, fast_candidates, base, arena_range, safe_linking)
        else:
            i, prev, n = _window_python(words, limit, stops, prev, free_flat, tc_hits, patterns)
        for index in tc_hits:
            result.tcache.append((base + index * 8, words[index + 1] & ~7))
        if i >= FAR // 2:  # a zero size: the fencepost that closes a heap without top, or damage
            q = base + prev * 8
            if segment.holds_top or q + 48 < segment.heap_start + segment.heap_size:
                raise Inconsistent("a chunk of size 0 (heap corrupt or changing)", q)
            result.end_marker = q
            n -= 1  # the size-0 fencepost is not a chunk
        chunks += n
        # Convert this window's free notes to absolute (address, size), packed (the compiled loop
        # appends them packed itself).
        if first_free >= 0:
            raise Inconsistent("the first chunk of a heap has PREV_INUSE clear", base + first_free * 8)
        if free_flat:
            notes = array("Q")
            for k in range(0, len(free_flat), 2):
                if free_flat[k] == NO_PREV:
                    raise Inconsistent("the first chunk of a heap has PREV_INUSE clear", base + free_flat[k + 1] * 8)
                a = base + free_flat[k] * 8
                notes.append(a)
                notes.append(base + free_flat[k + 1] * 8 - a)
            result.free_packed += notes.tobytes()
            free_flat.clear()
        if fast_candidates is not None and len(fast_candidates) > MAX_CANDIDATE_BYTES:
            fast_candidates.clear()  # the caller reads the lists instead (fastbin_chunks)
            fast_candidates = None
            result.candidates_dropped = True
        prev_abs = base + prev * 8 if prev != NO_PREV else None
        if result.end_marker is not None:
            break
        p = base + i * 8
        if progress is not None:
            progress(min(p, end) - segment.first_chunk)
    result.chunks = chunks
    if segment.holds_top:
        if p != end:
            raise Inconsistent(f"the walk ended at 0x{p:x}, not at top 0x{end:x}", prev_abs if prev_abs is not None else p)
    elif result.end_marker is None:
        raise Inconsistent("a heap without top has no fencepost", p)
    result.last_chunk = prev_abs
    return result


def _window_python(words, limit: int, stops: list[int], prev: int, free_flat: list, tc_hits: list,
                   patterns: dict) -> tuple[int, int, int]:
    """Walk one window's chunks from word index 0 up to ``limit``; returns (i, prev, chunks).
    On a zero size, i is FAR or more and prev is the zero-size chunk."""
    stops = stops + [FAR]
    stop_i = 0
    i = 0
    app = free_flat.append
    n = 0
    last, same, k = -1, 0, 16
    while i < limit:
        next_stop = stops[stop_i]
        while next_stop < i:  # a candidate inside a chunk: not a tcache chunk after all
            stop_i += 1
            next_stop = stops[stop_i]
        if next_stop == i:
            tc_hits.append(i)
            stop_i += 1
            next_stop = stops[stop_i]
        lim = limit if next_stop > limit else next_stop
        # The inner loop: per chunk, read size, note a free predecessor, advance.
        # `or FAR` ends the loop on a zero size instead of spinning (checked by the caller).
        while i < lim:
            s = words[i + 1]
            if not s & 1:
                app(prev)
                app(i)
            prev = i
            n += 1
            step = (s >> 3) or FAR
            i += step
            if s != last:
                last = s
                same = 0
                continue
            same += 1
            if same < 8 or not s & 1:
                continue
            # Gallop through a run of identical headers (same size, PREV_INUSE set: no free
            # chunk among them): one strided slice compared at C speed checks k chunks.
            while i + k * step <= lim:
                pattern = patterns.get((s, k))
                if pattern is None:
                    pattern = patterns[(s, k)] = s.to_bytes(8, "little") * k
                if words[i + 1:i + 1 + k * step:step].tobytes() != pattern:
                    break
                prev = i + (k - 1) * step
                i += k * step
                n += k
                if k < 4096:
                    k *= 2
            k = 16
            same = 0
        if i >= FAR // 2:
            break
    return i, prev, n


def _window_native(walker, data: memoryview, limit: int, stops: list[int], keys, prev: int, free_packed: bytearray,
                   tc_hits: list, fast_candidates: bytearray | None = None, base: int = 0,
                   arena_range: tuple[int, int] = (0, 0), safe_linking: bool = True) -> tuple[int, int, int, int]:
    """The same as _window_python, by the compiled loop (memtop.heap.native, memtop/heap/_walk.c),
    except that the free chunks are appended to the bytearray ``free_packed`` as packed absolute
    (address, size) pairs; returns (i, prev, chunks, first_free): ``first_free`` is the index of
    a chunk that says the chunk before the first one is free, or -1."""
    i, prev, n, status, first_free = walker(data, limit, stops, [k for k in keys if k], prev, free_packed, tc_hits,
                                            fast_candidates, base, arena_range[0], arena_range[1], safe_linking)
    if status == native.ZERO:
        i = FAR
    return i, prev, n, first_free


READ_AHEAD_PAGES = 16


def _read_block(mem: TargetMemory, pages: dict, page: int, first: int, last: int, mask: bytes, page_shift: int):
    """Read the present pages of the READ_AHEAD_PAGES-aligned block holding ``page`` into
    ``pages`` (runs of present pages, one read each); returns the words of ``page``."""
    lo = max(first, page - page % READ_AHEAD_PAGES)
    hi = min(last, lo + READ_AHEAD_PAGES)
    k = lo
    while k < hi:
        if not mask[k - first]:
            k += 1
            continue
        run_end = k
        while run_end < hi and mask[run_end - first]:
            run_end += 1
        data = mem.read_direct(k << page_shift, (run_end - k) << page_shift)
        view = memoryview(data)
        for j in range(k, run_end):
            offset = (j - k) << page_shift
            pages[j] = view[offset:offset + (1 << page_shift)].cast("Q")
        k = run_end
    return pages[page]


def follow_fastbins(mem: TargetMemory, state: ArenaState, layout: Layout, pagemaps: list) -> array:
    """Every chunk on the arena's fastbin lists, as its address ORed with its bin's index (chunks
    are 16-aligned: the low 4 bits are free), in list order; each chunk's size must be its bin's
    (glibc checks the same in malloc_consolidate). One machine word a chunk, not a tuple.

    Nodes are scattered over the heap, and a read of /proc/PID/mem costs mostly the call, so the
    page holding each node is read whole and kept (a dense list costs one read per page, a sparse
    one a read per node); a page is read only when the arena's pagemap says it is present (a
    wild pointer must not make the kernel map a zero page into the target).
    """
    out = array("Q")
    append = out.append
    safe = layout.safe_linking
    masks = [(pm.first_page, pm.first_page + len(pm), pm.present_mask()) for pm in pagemaps]
    pages: dict[int, memoryview] = {}
    last_miss, density = None, 0
    page_shift = PAGE_SIZE.bit_length() - 1
    in_page = PAGE_SIZE - 1
    for index, head in enumerate(state.fastbins):
        expected = fastbin_chunk_size(index)
        p = head
        count = 0
        while p:
            if p & 15:
                raise Inconsistent(f"misaligned fastbin chunk in fastbinsY[{index}]", p)
            page = p >> page_shift
            words = pages.get(page) if (p & in_page) + 24 <= PAGE_SIZE else None
            if words is None:
                for first, last, mask in masks:
                    if first <= page < last:
                        if not mask[page - first]:
                            raise Inconsistent(f"a fastbin chunk in a page that is not resident (fastbinsY[{index}])", p)
                        break
                else:
                    raise Inconsistent(f"a fastbin chunk outside the arena's heaps (fastbinsY[{index}])", p)
                if (p & in_page) + 24 > PAGE_SIZE:  # size and fd straddle two pages
                    size, stored = struct.unpack("<QQ", mem.read_direct(p + 8, 16))
                    words = None
                else:
                    if len(pages) >= 2048:  # 8 MiB of pages at most
                        pages.clear()
                    # Misses on neighbouring pages mean a dense list: then read the whole
                    # 64 KiB block around the page (its present pages) in one call.
                    near = last_miss is not None and abs(page - last_miss) <= 2
                    density = min(8, density + 1) if near else max(0, density - 2)
                    last_miss = page
                    try:
                        if density >= 4:
                            words = _read_block(mem, pages, page, first, last, mask, page_shift)
                        else:
                            words = pages[page] = memoryview(mem.read_direct(page << page_shift, PAGE_SIZE)).cast("Q")
                    except MemoryReadError as e:
                        raise Inconsistent(f"fastbin chunk unreadable ({e})", p) from e
            if words is not None:
                k = (p & in_page) >> 3
                size, stored = words[k + 1], words[k + 2]
            size &= ~7
            if size != expected:
                raise Inconsistent(f"a chunk of size {size} in fastbinsY[{index}]", p)
            append(p | index)
            count += 1
            if count > MAX_LIST:
                raise Inconsistent(f"fastbinsY[{index}] does not end", p)
            p = ((p + 16) >> 12) ^ stored if safe else stored
    return out


def fastbin_chunks(mem: TargetMemory, state: ArenaState, layout: Layout, pagemaps: list,
                   candidates: bytearray | None = None) -> tuple[bytes | bytearray, dict[int, int]]:
    """Every chunk on the arena's fastbin lists as packed (address, size) pairs (native 64-bit
    words), sorted by address, and how many chunks of each size.

    With ``candidates`` (what the compiled walk noted: every walked chunk of a fastbin size whose
    fd could be a list link), the lists are followed through them in C, with no read at all, and
    the result is ``candidates`` itself, reduced in place to the list members (no second copy);
    the first node that is not a candidate, or any fault, sends it to :func:`follow_fastbins`,
    which reads the lists from the target and explains the fault. Both give the same chunks.
    """
    follow = native.follow_fastbins() if candidates is not None else None
    if follow is not None:
        status, _address, counts = follow(candidates, state.fastbins)
        if status == 0:
            return candidates, {fastbin_chunk_size(b): n for b, n in enumerate(counts) if n}
    packed = array("Q")
    by_bin = [0] * NFASTBINS
    for tagged in sorted(follow_fastbins(mem, state, layout, pagemaps)):
        index = tagged & 15
        packed.append(tagged - index)
        packed.append(fastbin_chunk_size(index))
        by_bin[index] += 1
    return packed.tobytes(), {fastbin_chunk_size(b): n for b, n in enumerate(by_bin) if n}


def packed_pairs(data: bytes | memoryview) -> memoryview:
    """Packed (a, b) pairs of 64-bit words as one flat view: ``view[0::2]`` the a's, ``view[1::2]`` the b's."""
    return memoryview(data).cast("Q")


def contains_address(pairs: memoryview, address: int) -> bool:
    """Whether ``address`` is the first word of one of the sorted packed ``pairs``."""
    firsts = pairs[0::2]
    k = bisect.bisect_left(firsts, address)
    return k < len(firsts) and firsts[k] == address


def fastbin_chunk_size(index: int) -> int:
    """malloc.c fastbin_index inverted: bin i holds chunks of (i + 2) * 16 bytes on 64-bit."""
    return (index + 2) * 16


def tcache_struct_entries(cache: BlockCache, struct_user: int, layout: Layout) -> list[int]:
    """Chunk addresses of every entry of one tcache_perthread_struct (user pointer given)."""
    out = []
    counts_size = 2 if layout.tcache_counts_u16 else 1
    entries_offset = 64 * counts_size
    for index in range(64):
        head = cache.word(struct_user + entries_offset + 8 * index)
        e = head
        count = 0
        while e:
            if e & 15:
                raise Inconsistent(f"misaligned tcache entry in bin {index}", e)
            out.append(e - 16)
            count += 1
            if count > 65535:
                raise Inconsistent(f"tcache bin {index} does not end", e)
            stored = cache.word(e)
            e = reveal_ptr(e, stored) if layout.safe_linking else stored
    return out


# ---- trim prediction ----------------------------------------------------------------------


def merge_runs(chunks: list[tuple[int, int]]) -> list[list[int]]:
    """Merge adjacent (address, size) chunks into [start, end] runs (malloc_consolidate joins
    fastbin chunks with free neighbours; bin-free chunks are never adjacent to each other)."""
    runs: list[list[int]] = []
    for address, size in sorted(chunks):
        if runs and runs[-1][1] == address:
            runs[-1][1] = address + size
        elif runs and address < runs[-1][1]:
            raise Inconsistent("two free chunks overlap", address)
        else:
            runs.append([address, address + size])
    return runs


def merge_runs_packed(free: bytes | bytearray | memoryview, fast: bytes | memoryview, min_length: int, top_end: int,
                      end_at: int = -1, use_native: bool = True) -> tuple[list[list[int]], int]:
    """:func:`merge_runs` over the bin-free chunks ``free`` and the fastbin chunks ``fast``, both
    packed (address, size) pairs in address order (SegmentWalk.free_packed, :func:`fastbin_chunks`),
    keeping only what the trim prediction looks at: the runs at least ``min_length`` long or
    ending at ``top_end``, and the length of the run that ends at ``end_at`` (0 if none). The
    compiled merge when available: a heap with millions of free or fastbin chunks then makes no
    Python object per chunk, nor keeps its runs."""
    merge = native.merge_runs() if use_native else None
    if merge is not None:
        big, run_below, overlap = merge(free, fast, min_length, top_end, end_at & (2**64 - 1))
        if big is None:
            raise Inconsistent("two free chunks overlap", overlap)
        return big, run_below
    return _merge_runs_python(packed_pairs(free), packed_pairs(fast), min_length, top_end, end_at)


def _merge_runs_python(free: memoryview, fast: memoryview, min_length: int, top_end: int,
                       end_at: int) -> tuple[list[list[int]], int]:
    """merge_runs_packed without the compiled merge: the same two-way merge of sorted pairs
    (ordered by address, then size, as :func:`merge_runs` sorts), one run at a time."""
    big: list[list[int]] = []
    run_below = 0
    start = end = None
    i, j, n_free, n_fast = 0, 0, len(free), len(fast)
    while True:
        if i < n_free and (j >= n_fast or (free[i], free[i + 1]) <= (fast[j], fast[j + 1])):
            address, size = free[i], free[i + 1]
            i += 2
        elif j < n_fast:
            address, size = fast[j], fast[j + 1]
            j += 2
        else:
            break
        if end is not None and address == end:
            end = address + size
            continue
        if end is not None and address < end:
            raise Inconsistent("two free chunks overlap", address)
        if end is not None:
            if end == end_at:
                run_below = end - start
            if end - start >= min_length or end == top_end:
                big.append([start, end])
        start, end = address, address + size
    if end is not None:
        if end == end_at:
            run_below = end - start
        if end - start >= min_length or end == top_end:
            big.append([start, end])
    return big, run_below


def count_sizes(packed: bytes | bytearray, histogram: dict, slice_pairs: int = 1 << 16) -> int:
    """Add the sizes of packed (address, size) pairs to ``histogram`` (a Counter); returns their
    sum. By slices, so that the GIL is let go between them (a heap of millions of free chunks)."""
    sizes = packed_pairs(packed)[1::2]
    total = 0
    for start in range(0, len(sizes), slice_pairs):
        part = sizes[start:start + slice_pairs]
        histogram.update(part)
        total += sum(part)
    return total


def madvise_range(start: int, end: int, page: int = PAGE_SIZE) -> tuple[int, int] | None:
    """What mtrim (malloc.c) passes to madvise(MADV_DONTNEED) for a free chunk [start, end):
    only chunks larger than pagesize - 1 + sizeof(struct malloc_chunk) (48), from the first page
    boundary after the chunk's first 48 bytes, in whole pages."""
    size = end - start
    if size <= page - 1 + 48:
        return None
    lo = align_up(start + 48, page)
    rest = end - lo
    if rest <= page - 1:
        return None
    return lo, lo + (rest & ~(page - 1))


def systrim_range(top: int, top_size: int, page: int = PAGE_SIZE, pad: int = 0, thp_pagesize: int = 0) -> tuple[int, int] | None:
    """What systrim (malloc.c) gives back with sbrk(-extra): the tail of the top chunk."""
    top_area = top_size - MINSIZE - 1
    if top_area <= pad:
        return None
    unit = thp_pagesize or page
    extra = (top_area - pad) // unit * unit
    if extra == 0:
        return None
    end = top + top_size
    return end - extra, end
