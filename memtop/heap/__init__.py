"""The glibc heap of a live process, read-only: arenas, a full chunk walk, trim prediction.
Another allocator (jemalloc, tcmalloc, mimalloc, musl) is read by its own reader
(:mod:`memtop.heap.allocators`); its report rides in ``HeapReport.allocator``.

Entry point: :func:`analyze`. Nothing here stops the target or calls into it; everything is
read through /proc/PID/maps, /proc/PID/mem and /proc/PID/pagemap (root or CAP_SYS_PTRACE).
The gdb session that calls malloc_trim/malloc_info lives in :mod:`memtop.heap.gdb`.
"""

from __future__ import annotations

import bisect
import os
from array import array
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from memtop.heap import glibc
from memtop.heap import native as walk_native
from memtop.heap.detect import classify_static, detect_allocator, detect_runtime, read_exe_header
from memtop.heap.elf import elf_class
from memtop.heap.glibc import HEAP_MAX_SIZE, GlibcError, Layout, Symbols, align_up
from memtop.heap.memory import Mapping, MemoryReadError, TargetMemory, read_maps
from memtop.heap.walk import (
    ArenaState,
    BlockCache,
    Cancelled,
    Inconsistent,
    Segment,
    arena_addresses,
    contains_address,
    count_sizes,
    fastbin_chunks,
    madvise_range,
    merge_runs_packed,
    packed_pairs,
    read_arena,
    systrim_range,
    tcache_struct_entries,
    walk_segment,
)
from memtop.model.heap import ArenaReport, HeapReport, Pin, Tunables
from memtop.model.process import ProcessIdentity
from memtop.procfs import PAGE_SIZE, AccessDenied, NoSuchProcess, ProcfsError
from memtop.procfs.process import read_stat

__all__ = ["analyze", "Cancelled"]

TCACHE_CHUNK = 0x290


class LastValidWalks:
    """The last valid walk of each process, for when a heap changes faster than a walk: the
    report then gives the last valid figures and their age. Whoever walks repeatedly owns one
    (the Collector's heap parts); bounded to ``limit`` processes, the oldest forgotten first."""

    def __init__(self, limit: int = 64):
        self.limit = limit
        self._walks: dict[ProcessIdentity, HeapReport] = {}
        self._lock = threading.Lock()

    def remember(self, identity: ProcessIdentity, report: HeapReport) -> None:
        with self._lock:
            self._walks.pop(identity, None)
            if len(self._walks) >= self.limit:
                self._walks.pop(next(iter(self._walks)))
            self._walks[identity] = report

    def last(self, identity: ProcessIdentity) -> HeapReport | None:
        with self._lock:
            return self._walks.get(identity)


SELF_REASON = ("this is memtop itself: its heap is not walked (the walk allocates while it reads, so its own heap "
               "changes under it: never consistent, and each try grew memtop's RSS by the heap's size)")


def is_memtop_itself(pid: int, root: Path) -> bool:
    """Whether ``root/pid`` is this very process (the proc root may be another mount of /proc)."""
    try:
        return os.path.samefile(f"{root}/{pid}", "/proc/self")
    except OSError:
        return False


def analyze(pid: int, root: Path = Path("/proc"), *, retries: int = 3, symbols: str = "auto",
            progress=None, cancel=None, native: bool = True, walks: LastValidWalks | None = None) -> HeapReport:
    """Walk the heap of process ``pid`` and report on it. Never raises for a vanished process
    or a permission problem: the report's ``status`` and ``reason`` say why.

    Args:
        retries: walks to try before calling the heap "changing" (each walk is validated).
        symbols: 'auto' (libc6-dbg symbols when installed, else heuristics), 'debug', 'heuristic'.
        progress: called as ``progress(bytes_walked, bytes_total)`` from the walking thread.
        cancel: a callable; when it returns True the walk stops and Cancelled is raised.
        walks: where the last valid walk of each process is kept (a :class:`LastValidWalks`): when
            no walk validates, the report carries the last valid one and its age. None: not kept.
        native: use the compiled inner loop when it was built at install time (memtop.heap.native); False
            forces the pure-Python loop. Both give the same report.
    """
    root = Path(root)
    started = time.monotonic()

    def fail(status: str, reason: str, identity=None, kind="unknown", version=None, runtime=None, **kw) -> HeapReport:
        return HeapReport(identity=identity, allocator_kind=kind, glibc_version=version, valid=False, status=status,
                          reason=reason, walked_at=time.monotonic(), walk_seconds=time.monotonic() - started,
                          runtime=runtime, **kw)

    try:
        stat = read_stat(pid, root)
    except NoSuchProcess:
        return fail("gone", f"process {pid} does not exist (or exited)")
    except AccessDenied as e:
        return fail("denied", e.reason)
    except ProcfsError as e:
        return fail("gone", str(e))
    identity = ProcessIdentity(pid, stat.start_ticks)
    if stat.is_kernel_thread:
        return fail("kernel-thread", "a kernel thread has no user-space heap", identity)
    if stat.is_zombie:
        return fail("zombie", "the process has exited (zombie): its memory is already gone", identity)
    try:
        maps = read_maps(pid, root)
    except NoSuchProcess:
        return fail("gone", f"process {pid} exited", identity)
    except AccessDenied as e:
        return fail("denied", e.reason, identity)
    if not maps:
        return fail("gone", f"process {pid} has no memory mappings (exiting)", identity)
    exe_head = read_exe_header(pid, root)
    runtime = detect_runtime(pid, maps, root, exe_head)
    allocator = classify_static(pid, root, detect_allocator(maps, exe_head))
    static = allocator.static
    if is_memtop_itself(pid, root):
        return fail("self", SELF_REASON, identity, allocator.kind, runtime=runtime, static=static)
    if exe_head is not None and elf_class(exe_head) == 1:
        return fail("unsupported", "a 32-bit process: only x86_64 heaps are walked", identity, allocator.kind,
                    runtime=runtime, static=static)
    if allocator.kind != "glibc":
        from memtop.heap.allocators import read_allocator

        other = read_allocator(pid, root, maps, allocator, identity)
        if other is not None and allocator.kind == "static" and other.valid:
            allocator = replace(allocator, kind=other.kind, evidence="a stripped static executable: "
                                f"{other.kind}'s malloc found by its shape")
        words = {"static": "a static binary whose libc could not be told (no symbol table, no glibc ABI note)",
                 "unknown": "no glibc malloc found"}
        return fail("not-glibc", f"{allocator.evidence}; {words.get(allocator.kind, allocator.kind + ' is read by its own reader, not the glibc walk')}",
                    identity, allocator.kind, runtime=runtime, static=static, allocator=other)
    try:
        if static:
            libc = glibc.open_static(pid, maps, root, _exe_path(pid, root))
        else:
            libc = glibc.open_libc(pid, maps, root)
        if libc is None:
            return fail("not-glibc", "no libc is mapped", identity, "unknown", runtime=runtime)
        version = f"{libc.version[0]}.{libc.version[1]}"
        layout = glibc.layout_for(libc.version)
        syms = glibc.locate(libc, symbols)
    except GlibcError as e:
        return fail(e.status, e.reason, identity, "glibc", runtime=runtime, static=static)
    try:
        mem = TargetMemory(pid, root)
    except NoSuchProcess:
        return fail("gone", f"process {pid} exited", identity, "glibc", version, runtime)
    except AccessDenied as e:
        return fail("denied", e.reason, identity, "glibc", version, runtime)

    errors: list[Inconsistent] = []
    attempts = 0
    with mem:
        for attempt in range(max(1, retries)):
            attempts = attempt + 1
            try:
                report = _walk_all(mem, maps, layout, syms, identity, progress, cancel, native)
            except Inconsistent as e:
                if not mem.alive():
                    return fail("gone", f"process {pid} exited during the walk", identity, "glibc", version, runtime)
                errors.append(e)
                time.sleep(0.02 * attempts)
                try:
                    maps = read_maps(pid, root)
                except (NoSuchProcess, AccessDenied):
                    return fail("gone", f"process {pid} exited during the walk", identity, "glibc", version, runtime)
                continue
            except NoSuchProcess:
                return fail("gone", f"process {pid} exited during the walk", identity, "glibc", version, runtime)
            except AccessDenied as e:
                return fail("denied", e.reason, identity, "glibc", version, runtime)
            except MemoryReadError as e:
                if not mem.alive():
                    return fail("gone", f"process {pid} exited during the walk", identity, "glibc", version, runtime)
                errors.append(Inconsistent(str(e), e.address))
                continue
            now = time.monotonic()
            report = replace(report, glibc_version=version, walked_at=now, walk_seconds=now - started,
                             attempts=attempts, runtime=runtime, libc_path=libc.path, symbols=syms.source,
                             version_tested=libc.version in glibc.TESTED_VERSIONS, static=static,
                             version_basis=libc.version_basis)
            if walks is not None:
                walks.remember(identity, report)
            return report
    # Never validated.
    last = walks.last(identity) if walks is not None else None
    age = time.monotonic() - last.walked_at if last is not None else None
    same_place = len({e.address for e in errors}) == 1 and len(errors) == attempts and all(
        "changed" not in e.detail for e in errors)
    first = errors[0] if errors else Inconsistent("no walk completed")
    if same_place and attempts > 1:
        status, reason = "corrupt", f"the heap looks corrupt or unfamiliar: {first} (same place in {attempts} walks)"
    else:
        status, reason = "changing", f"heap changing too fast: no consistent walk in {attempts} tries (last: {errors[-1] if errors else first})"
    return fail(status, reason, identity, "glibc", version, runtime, attempts=attempts, last_valid=last,
                last_valid_age_s=age, libc_path=libc.path, symbols=syms.source)


def _exe_path(pid: int, root: Path) -> str:
    """The executable's path as the target's maps name it."""
    try:
        return os.readlink(f"{root}/{pid}/exe").removesuffix(" (deleted)")
    except OSError as e:
        raise GlibcError("denied", f"cannot read the target's executable link: {e.strerror}") from None


def _read_tunables(mem: TargetMemory, syms: Symbols, layout: Layout) -> Tunables:
    mp = glibc.parse_mp(mem.read_exact(syms.mp, layout.mp_size), layout)
    return Tunables(
        trim_threshold=mp["trim_threshold"], top_pad=mp["top_pad"], mmap_threshold=mp["mmap_threshold"],
        arena_test=mp["arena_test"], arena_max=mp["arena_max"], no_dyn_threshold=mp["no_dyn_threshold"],
        n_mmaps=mp["n_mmaps"], mmapped_mem=mp["mmapped_mem"], max_mmapped_mem=mp["max_mmapped_mem"],
        sbrk_base=mp["sbrk_base"], hp_pagesize=mp.get("hp_pagesize", 0), thp_pagesize=mp.get("thp_pagesize", 0),
    )


def _mapping_at(maps: list[Mapping], address: int) -> Mapping | None:
    for m in maps:
        if m.start <= address < m.end:
            return m
    return None


def _segments(mem: TargetMemory, cache: BlockCache, state: ArenaState, is_main: bool, tunables: Tunables,
              layout: Layout, maps: list[Mapping]) -> tuple[list[Segment], int]:
    """The heaps of an arena, oldest first, and the size of its top chunk."""
    top_size = cache.word(state.top + 8) & ~7
    if is_main:
        start = tunables.sbrk_base
        if _mapping_at(maps, state.top) is None or _mapping_at(maps, start) is None:
            raise Inconsistent("main_arena.top or sbrk_base is not mapped", state.top)
        first = align_up(start, 16)
        end = state.top + top_size
        if end - start != state.system_mem:
            raise Inconsistent(f"main heap spans {end - start} bytes but system_mem is {state.system_mem} (changed, or not contiguous)",
                               state.top)
        return [Segment(start, end - start, first, state.top, True)], top_size
    heap_max = 4 * tunables.hp_pagesize if tunables.hp_pagesize else HEAP_MAX_SIZE
    h = state.top & ~(heap_max - 1)
    heaps = []
    while h:
        ar_ptr = cache.word(h)
        prev = cache.word(h + 8)
        size = cache.word(h + 16)
        if ar_ptr != state.address or size > heap_max or size < layout.heap_info_size:
            raise Inconsistent("a heap_info does not belong to its arena", h)
        heaps.append((h, size, prev))
        if len(heaps) > 1_000_000:
            raise Inconsistent("the heap list (heap_info.prev) does not end", h)
        h = prev
    heaps.reverse()
    segments = []
    total = 0
    for h, size, _prev in heaps:
        total += size
        holds_top = h <= state.top < h + size
        if h + layout.heap_info_size == state.address:
            first = align_up(state.address + glibc.MALLOC_STATE_SIZE, 16)
        else:
            first = align_up(h + layout.heap_info_size, 16)
        if holds_top and state.top + top_size != h + size:
            raise Inconsistent("top does not end at its heap's end", state.top)
        segments.append(Segment(h, size, first, state.top if holds_top else h + size, holds_top))
    if not segments or not segments[-1].holds_top:
        raise Inconsistent("top is not in the arena's newest heap", state.top)
    if total != state.system_mem:
        raise Inconsistent(f"heaps add up to {total} bytes, system_mem says {state.system_mem}", state.address)
    return segments, top_size


def _tcache_keys_and_chunks(cache: BlockCache, syms: Symbols, layout: Layout, struct_users: list[int],
                            mem: TargetMemory) -> tuple[set[int], set[int]]:
    """Key values marking tcache chunks, and chunks found by following the known tcaches."""
    chunks: set[int] = set()
    for user in struct_users:
        try:
            chunks.update(tcache_struct_entries(cache, user, layout))
        except (Inconsistent, MemoryReadError):
            continue
    keys: set[int] = set()
    if layout.tcache_key == "random":
        if syms.tcache_key is not None:
            keys.add(mem.word(syms.tcache_key))
        else:
            # Without symbols: the key any visible tcache entry carries (tcache_put sets e->key).
            for chunk in sorted(chunks)[:16]:
                keys.add(cache.word(chunk + 24))
    elif layout.tcache_key == "pointer":
        keys.update(struct_users)
    keys.discard(0)
    return keys, chunks


def _walk_all(mem: TargetMemory, maps: list[Mapping], layout: Layout, syms: Symbols, identity: ProcessIdentity,
              progress, cancel, native: bool = True) -> HeapReport:
    tunables = _read_tunables(mem, syms, layout)
    cache = BlockCache(mem)
    addresses = arena_addresses(mem, syms.main_arena)
    states = [read_arena(mem, a) for a in addresses]
    plans = []
    struct_users = []
    for state in states:
        is_main = state.address == syms.main_arena
        # No heap yet: top is initial_top (malloc_init_state ran, nothing was allocated), or 0 and
        # system_mem 0 (malloc never called: ptmalloc_init has not run, main_arena is as the
        # static initializer left it). An empty heap, not a corrupt one.
        if is_main and (state.top == state.address + 96 or (state.top == 0 and state.system_mem == 0)):
            plans.append((state, [], 0))
            continue
        segments, top_size = _segments(mem, cache, state, is_main, tunables, layout, maps)
        plans.append((state, segments, top_size))
        first = segments[0].first_chunk
        if cache.word(first + 8) & ~7 == layout.tcache_struct_size + 16:
            struct_users.append(first + 16)
    keys, listed_tcache = _tcache_keys_and_chunks(cache, syms, layout, struct_users, mem)
    total_bytes = sum(seg.end - seg.first_chunk for _, segs, _ in plans for seg in segs) or 1
    done_before = 0
    arenas = []
    chunks_total = 0
    pin = None
    for state, segments, top_size in plans:
        if not segments:
            arenas.append(ArenaReport(state.address, True, (), state.system_mem, state.system_mem, 0, 0, 0, 0, 0,
                                      state.attached_threads, state.mutex, (), 0, top_address=state.top))
            continue
        is_main = state.address == syms.main_arena
        pagemaps = [mem.pagemap(seg.heap_start & ~(PAGE_SIZE - 1), seg.heap_start + seg.heap_size) for seg in segments]
        # The compiled walk notes the chunks that could be fastbin nodes as it goes, so that the
        # lists are then followed without reading the heap a second time (walk.fastbin_chunks).
        # Only with safe-linking (glibc 2.32+): without it, every small chunk whose first word is 0
        # or a heap pointer would be a candidate.
        candidates = bytearray() if native and layout.safe_linking and walk_native.follow_fastbins() is not None else None
        arena_range = (min(seg.heap_start for seg in segments), max(seg.heap_start + seg.heap_size for seg in segments))
        results = []
        for seg in segments:
            listed = sorted(a for a in listed_tcache if seg.first_chunk <= a < seg.end)
            base_done = done_before

            def seg_progress(done, base_done=base_done):
                if progress is not None:
                    progress(base_done + done, total_bytes)

            results.append(walk_segment(mem, seg, tcache_keys=keys, tcache_chunks=listed, progress=seg_progress,
                                        cancel=cancel, use_native=native, fast_candidates=candidates,
                                        arena_range=arena_range, safe_linking=layout.safe_linking))
            if results[-1].candidates_dropped:
                candidates = None
            done_before += seg.end - seg.first_chunk
        if any(result.candidates_dropped for result in results):
            candidates = None
        fast_packed, fast_counts = fastbin_chunks(mem, state, layout, pagemaps, candidates)
        del candidates
        fast_view = packed_pairs(fast_packed)
        fast_addresses = fast_view[0::2]
        free_by_segment: list[bytearray] = []  # packed (address, size) pairs, in address order
        tcache: dict[int, int] = {}
        walked = 0
        checkpoints: list[int] = []
        resident = 0
        top_resident = 0
        runs_by_segment = []
        for seg, entries, result in zip(segments, pagemaps, results):
            lo, hi = bisect.bisect_left(fast_addresses, seg.first_chunk), bisect.bisect_left(fast_addresses, seg.end)
            if (lo < len(fast_addresses) and fast_addresses[lo] < seg.end) and not seg.first_chunk <= fast_addresses[lo]:
                raise Inconsistent("a fastbin chunk outside the heap", fast_addresses[lo])
            seg_free = result.free_packed
            if seg.holds_top:
                top_header = cache.word(seg.end + 8)
                if not top_header & 1 and result.last_chunk is not None:  # the last chunk, below top
                    seg_free += array("Q", (result.last_chunk, seg.end - result.last_chunk)).tobytes()
            free_by_segment.append(seg_free)
            for address, size in result.tcache:
                if not contains_address(fast_view, address):
                    tcache[address] = size
            walked += result.chunks
            checkpoints.extend(result.checkpoints)
            entries_start = seg.heap_start & ~(PAGE_SIZE - 1)
            resident += mem.resident_bytes(entries_start, align_up(seg.heap_start + seg.heap_size, PAGE_SIZE), entries)
            if seg.holds_top:
                top_resident = mem.resident_bytes(align_up(seg.end, PAGE_SIZE),
                                                  (seg.end + top_size) & ~(PAGE_SIZE - 1), entries)
            # Only runs that hold a whole page, or end at top, matter below; the pin merges the
            # last segment's chunks again for the run right below it.
            seg_fast = memoryview(fast_packed)[lo * 16:hi * 16]
            big_runs, _ = merge_runs_packed(seg_free, seg_fast, PAGE_SIZE + 48, seg.end if seg.holds_top else 0,
                                            use_native=native)
            runs_by_segment.append((seg, big_runs, entries, (seg_free, seg_fast)))
        after = read_arena(mem, state.address)
        if not after.same_as(state):
            raise Inconsistent("the arena changed during the walk", state.address)
        chunks_total += walked
        # --- trim prediction (malloc.c mtrim, then systrim for the main arena) -----------------
        release = 0
        free_resident = 0
        top_start = state.top
        top_end = state.top + top_size
        top_run = None
        for seg, runs, entries, _ in runs_by_segment:
            for run in runs:  # the runs that hold a whole page or end at top
                start, end = run
                if seg.holds_top and end == seg.end:
                    top_run = run  # malloc_consolidate merges it into top
                    continue
                if end - start < PAGE_SIZE + 48:
                    continue  # holds no whole page (the common case: skip the calls)
                interior_lo = align_up(start + 16, PAGE_SIZE)
                free_resident += mem.resident_bytes(interior_lo, max(interior_lo, end & ~(PAGE_SIZE - 1)), entries)
                rng = madvise_range(start, end)
                if rng is not None:
                    release += mem.resident_bytes(*rng, entries)
        if top_run is not None:
            top_start = top_run[0]
        if is_main:
            rng = systrim_range(top_start, top_end - top_start, thp_pagesize=tunables.thp_pagesize)
            heap_map = _mapping_at(maps, top_start)
            if rng is not None and heap_map is not None and heap_map.end == align_up(top_end, PAGE_SIZE):
                entries = runs_by_segment[-1][2]
                release += mem.resident_bytes(align_up(rng[0], PAGE_SIZE), align_up(rng[1], PAGE_SIZE), entries)
            pin = _find_pin(mem, segments[-1], checkpoints, top_start, top_end, runs_by_segment[-1][3], tcache,
                            native)
        histogram: Counter = Counter()
        free_bytes = sum(count_sizes(packed, histogram) for packed in free_by_segment)
        free_count = sum(len(packed) for packed in free_by_segment) // 16
        fast_bytes = sum(size * count for size, count in fast_counts.items())
        tcache_bytes = sum(tcache.values())
        histogram.update(fast_counts)
        arenas.append(ArenaReport(
            address=state.address,
            is_main=is_main,
            heaps=tuple((seg.heap_start, seg.heap_size) for seg in segments),
            system_bytes=state.system_mem,
            in_use_bytes=state.system_mem - free_bytes - fast_bytes - top_size,
            free_bytes=free_bytes,
            fastbin_bytes=fast_bytes,
            tcache_bytes=tcache_bytes,
            top_bytes=top_size,
            resident_bytes=resident,
            attached_threads=state.attached_threads,
            mutex=state.mutex,
            free_size_histogram=tuple(sorted((size, count, size * count) for size, count in histogram.items())),
            trim_release_bytes=release,
            top_address=state.top,
            free_count=free_count,
            fastbin_count=len(fast_addresses),
            tcache_count=len(tcache),
            in_use_count=walked - free_count - len(fast_addresses) - len(tcache),
            chunks_walked=walked,
            top_resident_bytes=top_resident,
            free_resident_bytes=free_resident,
        ))
    return HeapReport(
        identity=identity,
        allocator_kind="glibc",
        glibc_version=None,
        valid=True,
        status="valid",
        reason=None,
        arenas=tuple(arenas),
        mmapped_count=tunables.n_mmaps,
        mmapped_bytes=tunables.mmapped_mem,
        tunables=tunables,
        trim_release_bytes=sum(a.trim_release_bytes or 0 for a in arenas),
        pin=pin,
        chunks_walked=chunks_total,
    )


def _find_pin(mem: TargetMemory, seg: Segment, checkpoints: list[int], top_start: int, top_end: int,
              free_chunks: tuple[bytearray, memoryview], tcache: dict[int, int], native: bool = True) -> Pin | None:
    """The busy chunk that ends where the consolidated top begins (re-walked from the nearest
    checkpoint below it). ``free_chunks``: the segment's bin-free chunks and packed fastbin
    chunks, merged again here to find the run right below the pin."""
    if top_start <= seg.first_chunk:
        return None
    below = [c for c in checkpoints if seg.first_chunk <= c < top_start]
    p = max(below) if below else seg.first_chunk
    data, _ = mem.read(p, top_start - p + 16)
    words = memoryview(data).cast("Q")
    i = 0
    limit = (top_start - p) // 8
    last = None
    while i < limit:
        size = words[i + 1] & ~7
        if size == 0:
            raise Inconsistent("a chunk of size 0 below top", p + i * 8)
        last = i
        i += size >> 3
    if last is None or i != limit:
        raise Inconsistent("the chunk below top could not be found again", p)
    address = p + last * 8
    _, run_below = merge_runs_packed(*free_chunks, 1 << 63, 0, end_at=address, use_native=native)
    # What the pin costs in RAM: after a trim the pages of that free run are no longer resident.
    try:
        lo, hi = align_up(address - run_below, PAGE_SIZE), address // PAGE_SIZE * PAGE_SIZE
        pinned_resident = mem.resident_bytes(lo, hi) if hi > lo else 0
    except (ProcfsError, OSError):
        pinned_resident = None
    return Pin(address=address, size=top_start - address, distance_below_top=top_end - top_start,
               pinned_bytes=run_below, is_tcache=address in tcache, pinned_resident_bytes=pinned_resident)
