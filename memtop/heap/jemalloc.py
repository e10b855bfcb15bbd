"""jemalloc 5.3, read-only: a walk of its extent map, the structure jemalloc's own statistics
are sums over.

jemalloc registers every extent it manages (in use, dirty, muzzy and retained) in one radix
tree, ``arena_emap_global.rtree`` (src/emap.c, include/jemalloc/internal/rtree.h). With 48-bit
virtual addresses and 4 KiB pages it has two levels of 18 bits: the root, an array of 2^18
pointers embedded in the library's .bss, points to leaves of 2^18 words, one per page, each
packing an ``edata_t *`` with the extent's state, slab bit and size class
(``rtree_leaf_elm_bits_encode``: szind << 48 | edata | state << 2 | is_head << 1 | slab). Each
``edata_t`` (include/jemalloc/internal/edata.h) holds ``e_bits`` (arena, slab, state, szind,
nfree), the extent's address and size. From these:

- ``allocated`` = regions in use in active slabs (nregs - nfree, x region size) + the usable size
  of every active large extent: jemalloc's ``stats.allocated`` (tcache-held regions count as
  allocated in both);
- ``active`` = pages of active extents: ``stats.active``;
- ``dirty`` / ``muzzy`` / ``retained`` = pages of extents in those states: ``stats.arenas.<i>.
  pdirty`` / ``pmuzzy`` (x page) and ``stats.retained``.

Debian's libjemalloc2 is stripped and has no debug package in the archive, so the root is found
by its shape: a word of .bss that points to a leaf whose entries point to extents that cover the
pages those entries stand for gives the root's address; every other root entry is then checked
the same way. The size-class table ``sz_index2size_tab`` is computed at start-up into .bss and
is found by its first entries (8, 16, 32, 48, ...). Only jemalloc 5.3 (the version string in the
library) is read; anything else is refused.
"""

from __future__ import annotations

import os
import re
import struct
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from memtop.format import counted
from memtop.heap.allocators import (ATTEMPTS, Inconsistent, LibraryImage, ReaderError, environment, open_library,
                                    read_consistently, thread_names)
from memtop.heap.memory import Mapping, MemoryReadError, TargetMemory
from memtop.model.allocator import AllocatorArena, AllocatorReport, AllocatorSetting
from memtop.procfs import PAGE_SIZE

LG_PAGE = 12
ROOT_BITS = 18  # RTREE_NSB / RTREE_HEIGHT with LG_VADDR 48, LG_PAGE 12: (48 - 12) / 2
LEAF_BITS = 18
ROOT_ENTRIES = 1 << ROOT_BITS
LEAF_ENTRIES = 1 << LEAF_BITS
VADDR_MASK = (1 << 48) - 1
EDATA_ALIGNMENT = 128
EDATA_READ = 24  # e_bits, e_addr, e_size_esn
MALLCTL_ARENAS_ALL = 4096

# e_bits (edata.h, 5.3): arena 12 bits, slab, committed, pai, zeroed, guarded, state 3 bits,
# szind LG_CEIL(SC_NSIZES) = 8 bits, nfree SC_LG_SLAB_MAXREGS + 1 = 10 bits, binshard, is_head.
ARENA_MASK = (1 << 12) - 1
SLAB_SHIFT = 12
PAI_SHIFT = 14
STATE_SHIFT = 17
SZIND_SHIFT = 20
NFREE_SHIFT = 28
STATE_ACTIVE, STATE_DIRTY, STATE_MUZZY, STATE_RETAINED = 0, 1, 2, 3
STATE_NAMES = {STATE_ACTIVE: "active", STATE_DIRTY: "dirty", STATE_MUZZY: "muzzy", STATE_RETAINED: "retained"}

# sz_index2size_tab starts with the tiny class and the first groups (LG_QUANTUM 4, SC_LG_NGROUP 2).
SIZE_TABLE_START = (8, 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256)
SMALL_MAXCLASS = 14336  # SC_SMALL_MAXCLASS with LG_PAGE 12, SC_LG_NGROUP 2

_VERSION_RE = re.compile(rb"\b(\d+)\.(\d+)\.(\d+)-(\d+)-g([0-9a-f]{40})\b")
DEFAULTS = {"dirty_decay_ms": "10000", "muzzy_decay_ms": "0", "background_thread": "false"}  # arena_types.h, 5.3
SETTINGS_OF_INTEREST = ("dirty_decay_ms", "muzzy_decay_ms", "background_thread", "narenas", "retain")
BACKGROUND_THREAD_NAME = "jemalloc_bg_thd"  # src/background_thread.c pthread_setname_np


@dataclass(frozen=True, slots=True)
class Layout:
    """Where jemalloc's structures are in one target."""

    version: str
    bss: tuple[int, int]
    root: int  # address of rtree.root[0]
    size_table: tuple[int, ...]  # sz_index2size_tab


def version_of(image: LibraryImage) -> str:
    match = _VERSION_RE.search(image.data)
    if match is None:
        raise ReaderError("unsupported", f"{image.path} carries no jemalloc version string (not jemalloc?)")
    major, minor, patch = (int(g) for g in match.groups()[:3])
    version = f"{major}.{minor}.{patch}"
    if (major, minor) != (5, 3):
        raise ReaderError("unsupported", f"jemalloc {version}: memtop reads the extent map of jemalloc 5.3 only "
                                         "(other versions lay out their structures differently)")
    return version


def size_table(bss: bytes) -> tuple[int, ...]:
    """sz_index2size_tab from .bss: it starts with SIZE_TABLE_START and grows to SC_NSIZES entries."""
    pattern = struct.pack(f"<{len(SIZE_TABLE_START)}Q", *SIZE_TABLE_START)
    at = bss.find(pattern)
    while at != -1 and at % 8:
        at = bss.find(pattern, at + 1)
    if at == -1:
        raise ReaderError("unsupported", "jemalloc's size-class table is not in its .bss (not initialised yet, or "
                                         "a build with another quantum or page size)")
    out = []
    prev = 0
    for (value,) in struct.iter_unpack("<Q", bss[at:at + 8 * 256]):
        if value <= prev:
            break
        out.append(value)
        prev = value
    if len(out) < 100:
        raise ReaderError("unsupported", f"jemalloc's size-class table ends after {len(out)} classes")
    return tuple(out)


def decode_leaf(word: int) -> tuple[int, int, int, int]:
    """(edata address, state, slab, szind) of a compact rtree leaf element."""
    return (word & VADDR_MASK) & ~(EDATA_ALIGNMENT - 1), (word >> 2) & 7, word & 1, word >> 48


def _mapping_of(maps: list[Mapping], address: int) -> Mapping | None:
    for m in maps:
        if m.start <= address < m.end:
            return m
    return None


_ZERO_BLOCK = bytes(4096)


def _leaf_words(mem: TargetMemory, leaf: int, limit: int | None = None) -> list[tuple[int, int]]:
    """(index, word) of the non-zero elements of one leaf (only its present pages are read);
    with ``limit``, the first that many whose extent pointer is not null."""
    data, _swapped = mem.read(leaf, LEAF_ENTRIES * 8)
    words = memoryview(data).cast("Q")
    out: list[tuple[int, int]] = []
    # 4 KiB at a time: most of a leaf is never touched (zero).
    for block in range(0, len(data), 4096):
        if data[block:block + 4096] == _ZERO_BLOCK:
            continue
        base = block // 8
        chunk = words[base:base + 512]
        out.extend((base + i, w) for i, w in enumerate(chunk) if w)
        if limit is not None:
            found = [e for e in out if e[1] & VADDR_MASK & ~(EDATA_ALIGNMENT - 1)]
            if len(found) >= limit:
                words.release()
                return found[:limit]
    words.release()
    if limit is not None:
        return [e for e in out if e[1] & VADDR_MASK & ~(EDATA_ALIGNMENT - 1)][:limit]
    return out


def find_root(mem: TargetMemory, bss_start: int, bss: bytes, maps: list[Mapping]) -> int:
    """The address of rtree.root[0], from the shape of the tree (see module doc)."""
    if len(bss) < ROOT_ENTRIES * 8:
        raise ReaderError("unsupported", f"jemalloc's .bss ({len(bss)} bytes) cannot hold a 2^{ROOT_BITS}-entry rtree root: "
                                         "a build for another virtual address width")
    words = memoryview(bss).cast("Q")
    candidates = []
    for index in range(len(words)):
        w = words[index]
        if not w or w % 64:
            continue
        m = _mapping_of(maps, w)
        if m is None or not m.anonymous or "rw" not in m.perms:
            continue
        candidates.append((index * 8, w))
    words.release()
    votes: dict[int, int] = defaultdict(int)
    for offset, leaf in candidates[:64]:
        try:
            elements = _leaf_words(mem, leaf, limit=4)
        except MemoryReadError:
            continue
        for j, word in elements:
            edata, _state, _slab, _szind = decode_leaf(word)
            if _mapping_of(maps, edata) is None:
                break
            try:
                _bits, addr, size_esn = struct.unpack("<QQQ", bytes(mem.read(edata, EDATA_READ)[0]))
            except MemoryReadError:
                break
            page = addr & ~(PAGE_SIZE - 1)
            size = size_esn & ~(PAGE_SIZE - 1)
            # The page this element stands for: inside the extent, with leaf index j.
            lo = page >> LG_PAGE
            hi = (page + size) >> LG_PAGE
            key = None
            for gib in range(lo >> LEAF_BITS, (max(lo, hi - 1) >> LEAF_BITS) + 1):
                p = (gib << LEAF_BITS) | j
                if lo <= p < hi:
                    key = p
                    break
            if key is None:
                break
            root_index = (key >> LEAF_BITS) & (ROOT_ENTRIES - 1)
            votes[offset - 8 * root_index] += 1
    if not votes:
        raise ReaderError("empty", "jemalloc's extent map holds no extent yet (nothing allocated)")
    start, count = max(votes.items(), key=lambda kv: kv[1])
    if start < 0 or start + ROOT_ENTRIES * 8 > len(bss) or start % 8:
        raise ReaderError("unsupported", "jemalloc's rtree root could not be placed inside its .bss")
    return bss_start + start


_layouts: dict[tuple, Layout] = {}


def locate(pid: int, mem: TargetMemory, image: LibraryImage, maps: list[Mapping]) -> Layout:
    """The layout of one process's jemalloc; found once per process (its .bss does not move)
    and checked again by every walk."""
    key = (pid, _start_ticks(pid, mem), image.path, image.base)
    cached = _layouts.get(key)
    if cached is not None:
        return cached
    layout = _locate(pid, mem, image, maps)
    if len(_layouts) > 64:
        _layouts.clear()
    _layouts[key] = layout
    return layout


def _start_ticks(pid: int, mem: TargetMemory) -> int | None:
    from memtop.procfs.process import read_stat

    try:
        return read_stat(pid, mem.root).start_ticks
    except Exception:  # noqa: BLE001 - without it the layout is simply not cached
        return None


def _locate(pid: int, mem: TargetMemory, image: LibraryImage, maps: list[Mapping]) -> Layout:
    version = version_of(image)
    bss_range = image.section_range(".bss")
    if bss_range is None:
        raise ReaderError("unsupported", f"{image.path} has no .bss section")
    bss_start, bss_end = bss_range
    bss = bytes(mem.read(bss_start, bss_end - bss_start)[0])
    table = size_table(bss)
    root = find_root(mem, bss_start, bss, maps)
    return Layout(version, bss_range, root, table)


@dataclass
class _Totals:
    allocated: int = 0
    active: int = 0
    dirty: int = 0
    muzzy: int = 0
    retained: int = 0
    dirty_resident: int = 0
    muzzy_resident: int = 0
    active_resident: int = 0
    extents: int = 0
    slabs: int = 0
    slab_free: int = 0  # free regions inside active slabs (bytes)


class _EdataReader:
    """edata_t headers, read in 64 KiB blocks: they are allocated side by side from jemalloc's base."""

    BLOCK = 64 << 10

    def __init__(self, mem: TargetMemory):
        self.mem = mem
        self.blocks: dict[int, bytes] = {}

    def read(self, address: int) -> tuple[int, int, int]:
        block = address & ~(self.BLOCK - 1)
        data = self.blocks.get(block)
        if data is None:
            data = bytes(self.mem.read(block, self.BLOCK)[0])
            self.blocks[block] = data
        off = address - block
        if off + EDATA_READ > len(data):
            return struct.unpack("<QQQ", self.mem.read_exact(address, EDATA_READ))
        return struct.unpack_from("<QQQ", data, off)


def walk(mem: TargetMemory, layout: Layout, maps: list[Mapping]):
    """Walk the extent map once. Returns (per-arena totals, releasable ranges)."""
    root_data = bytes(mem.read(layout.root, ROOT_ENTRIES * 8)[0])  # untouched pages: zeros, not faulted in
    roots = [(i, w) for i, w in enumerate(memoryview(root_data).cast("Q")) if w]
    seen: dict[int, list[int]] = {}  # edata -> page numbers that point to it
    leaf_info: dict[int, tuple[int, int, int]] = {}  # edata -> (state, slab, szind) from the leaf
    for root_index, leaf in roots:
        m = _mapping_of(maps, leaf)
        if m is None:
            raise Inconsistent(f"rtree root entry {root_index} points outside any mapping")
        for j, word in _leaf_words(mem, leaf):
            edata, state, slab, szind = decode_leaf(word)
            if not edata:
                continue  # rtree_clear leaves szind = SC_NSIZES and no extent: a deregistered page
            page = (root_index << LEAF_BITS) | j
            seen.setdefault(edata, []).append(page)
            prev = leaf_info.get(edata)
            if prev is not None and prev[0] != state:
                raise Inconsistent(f"two rtree entries of extent {edata:#x} disagree on its state")
            leaf_info[edata] = (state, slab, szind)
    reader = _EdataReader(mem)
    totals: dict[int, _Totals] = defaultdict(_Totals)
    release: list[tuple[int, int]] = []
    by_state_ranges: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # state -> (start, end, arena)
    table = layout.size_table
    for edata, pages in seen.items():
        try:
            bits, addr, size_esn = reader.read(edata)
        except MemoryReadError as e:
            raise Inconsistent(f"extent header {edata:#x} unreadable: {e}") from None
        start = addr & ~(PAGE_SIZE - 1)
        size = size_esn & ~(PAGE_SIZE - 1)
        state = (bits >> STATE_SHIFT) & 7
        slab = (bits >> SLAB_SHIFT) & 1
        arena = bits & ARENA_MASK
        if state > STATE_RETAINED:
            raise Inconsistent(f"extent {edata:#x} is in transition (state {state})")
        leaf_state, leaf_slab, _leaf_szind = leaf_info[edata]
        # An inactive extent keeps the slab bit it had in edata; only the rtree's is cleared.
        if state != leaf_state or (state == STATE_ACTIVE and slab != leaf_slab):
            raise Inconsistent(f"extent {edata:#x} changed state during the walk")
        if size == 0:
            raise Inconsistent(f"extent {edata:#x} has size 0")
        first, last = start >> LG_PAGE, (start + size) >> LG_PAGE
        if any(not first <= p < last for p in pages):
            raise Inconsistent(f"extent {edata:#x} does not cover the pages that point to it")
        if (bits >> PAI_SHIFT) & 1:
            raise ReaderError("unsupported", "jemalloc's huge-page allocator (opt.hpa) is in use: its extents are not read")
        t = totals[arena]
        t.extents += 1
        if state == STATE_ACTIVE:
            t.active += size
            szind = (bits >> SZIND_SHIFT) & 0xFF
            if szind >= len(table):
                raise Inconsistent(f"extent {edata:#x} has size class {szind}")
            usize = table[szind]
            if slab:
                if usize > SMALL_MAXCLASS or size % usize:
                    raise Inconsistent(f"slab {edata:#x} of {size} bytes for regions of {usize}")
                nregs = size // usize
                nfree = (bits >> NFREE_SHIFT) & 0x3FF
                if nfree > nregs:
                    raise Inconsistent(f"slab {edata:#x} has {nfree} free of {nregs} regions")
                t.allocated += (nregs - nfree) * usize
                t.slab_free += nfree * usize
                t.slabs += 1
            else:
                # Large: usize plus one page of padding when cache-oblivious (sz_large_pad).
                if size - usize not in (0, PAGE_SIZE):
                    raise Inconsistent(f"large extent {edata:#x} of {size} bytes for size class {usize}")
                t.allocated += usize
        elif state == STATE_DIRTY:
            t.dirty += size
        elif state == STATE_MUZZY:
            t.muzzy += size
        else:
            t.retained += size
        by_state_ranges[state].append((start, start + size, arena))
    # Resident pages, per mapping (one pagemap read per mapping that holds extents).
    pagemaps: dict[int, object] = {}

    def resident(start: int, end: int) -> int:
        m = _mapping_of(maps, start)
        if m is None:
            return 0
        pm = pagemaps.get(m.start)
        if pm is None:
            pm = mem.pagemap(m.start, m.end)
            pagemaps[m.start] = pm
        return mem.resident_bytes(start, min(end, m.end), pm)

    for state in (STATE_DIRTY, STATE_MUZZY, STATE_ACTIVE):
        for start, end, arena in by_state_ranges.get(state, ()):
            r = resident(start, end)
            if state == STATE_DIRTY:
                totals[arena].dirty_resident += r
            elif state == STATE_MUZZY:
                totals[arena].muzzy_resident += r
            else:
                totals[arena].active_resident += r
            if state != STATE_ACTIVE and r:
                release.append((start, end))
    return dict(totals), release


def settings(pid: int, root: Path, mem: TargetMemory, image: LibraryImage, maps: list[Mapping]
             ) -> tuple[AllocatorSetting, ...]:
    """What decides when jemalloc gives pages back, as far as it can be read without asking it.

    The options come from malloc_conf sources read at start (src/jemalloc.c obtain_malloc_conf:
    the ``malloc_conf`` symbol, /etc/malloc.conf, MALLOC_CONF), later ones winning; mallctl can
    change decay and background threads at run time, which only the allocator can tell (memtop
    explain --allocator-stats). Background threads are seen by their name.
    """
    out: list[AllocatorSetting] = []
    conf: dict[str, tuple[str, str]] = {}
    symbol = _malloc_conf_symbol(pid, root, mem, image, maps)
    if symbol:
        _parse_conf(symbol, "the program's malloc_conf", conf)
    try:
        link = os.readlink(f"{root}/{pid}/root/etc/malloc.conf")
        _parse_conf(link, "/etc/malloc.conf (symlink)", conf)
    except OSError:
        pass
    env, why = environment(pid, root)
    if env is not None and env.get("MALLOC_CONF"):
        _parse_conf(env["MALLOC_CONF"], "MALLOC_CONF in the environment", conf)
    for name in SETTINGS_OF_INTEREST:
        if name in conf:
            value, source = conf[name]
            out.append(AllocatorSetting(name, value, f"{source} (at start; mallctl may have changed it since)"))
        elif name in DEFAULTS:
            where = "environment unreadable: " + why if env is None else "not set in malloc_conf, /etc/malloc.conf or MALLOC_CONF"
            out.append(AllocatorSetting(name, DEFAULTS[name], f"jemalloc 5.3's default ({where}; mallctl may have changed it)"))
    names = thread_names(pid, root)
    running = sum(1 for n in names if n == BACKGROUND_THREAD_NAME)
    if running:
        # Enabled, whatever the options said at start (redis turns it on through mallctl).
        out = [s if s.name != "background_thread" else
               AllocatorSetting("background_thread", "true", f"{counted(running, 'thread')} named {BACKGROUND_THREAD_NAME} running")
               for s in out]
    out.append(AllocatorSetting("background_threads_running", str(running),
                                f"threads named {BACKGROUND_THREAD_NAME} (/proc/PID/task/*/comm)"))
    return tuple(out)


def _parse_conf(text: str, source: str, into: dict[str, tuple[str, str]]) -> None:
    for item in text.split(","):
        key, sep, value = item.partition(":")
        if sep and key.strip():
            into[key.strip()] = (value.strip(), source)


def _malloc_conf_symbol(pid: int, root: Path, mem: TargetMemory, image: LibraryImage, maps: list[Mapping]) -> str | None:
    """The string the ``malloc_conf`` global points to: the program's own definition (exported by
    the executable) or, failing that, the library's (NULL by default)."""
    address = None
    try:
        exe = os.readlink(f"{root}/{pid}/exe").removesuffix(" (deleted)")
        exe_image = open_library(pid, maps, root, exe)
        address = exe_image.symbol("malloc_conf")
    except (ReaderError, OSError):
        address = None
    if address is None:
        address = image.symbol("malloc_conf")
    if address is None:
        return None
    try:
        pointer = mem.word(address)
        if not pointer:
            return None
        raw = bytes(mem.read(pointer, 512)[0])
    except (MemoryReadError, OSError):
        return None
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace") or None


def read(pid: int, root: Path, maps: list[Mapping], guess) -> AllocatorReport:
    if guess.library is None:
        raise ReaderError("unsupported", "jemalloc linked into the executable (no libjemalloc mapped): its symbols are "
                                         "prefixed by the program's build, not read")
    image = open_library(pid, maps, root, guess.library)
    from memtop.heap.memory import read_maps

    with TargetMemory(pid, root) as mem:
        layout = None

        def walk_once():
            nonlocal layout
            if layout is None:
                layout = locate(pid, mem, image, maps)
            return walk(mem, layout, maps)

        def again():
            nonlocal maps
            maps = read_maps(pid, root)

        walked, problem = read_consistently(mem, pid, walk_once, again=again)
        if walked is None:
            return AllocatorReport(kind="jemalloc", version=layout.version if layout else None, library=image.path,
                                   static=False, status="changing",
                                   reason=f"the extent map changed under {ATTEMPTS} walks (last: {problem})",
                                   method="read-only walk of jemalloc's extent map")
        totals, release = walked
        conf = settings(pid, root, mem, image, maps)
    return build_report(image.path, layout, totals, release, conf)


def build_report(library: str, layout: Layout, totals: dict[int, _Totals], release, conf) -> AllocatorReport:
    arenas = tuple(AllocatorArena(index=i, allocated_bytes=t.allocated, active_bytes=t.active, dirty_bytes=t.dirty,
                                  muzzy_bytes=t.muzzy, retained_bytes=t.retained,
                                  dirty_resident_bytes=t.dirty_resident, muzzy_resident_bytes=t.muzzy_resident,
                                  extents=t.extents)
                   for i, t in sorted(totals.items()))
    allocated = sum(t.allocated for t in totals.values())
    active = sum(t.active for t in totals.values())
    dirty = sum(t.dirty for t in totals.values())
    muzzy = sum(t.muzzy for t in totals.values())
    retained = sum(t.retained for t in totals.values())
    dirty_res = sum(t.dirty_resident for t in totals.values())
    muzzy_res = sum(t.muzzy_resident for t in totals.values())
    active_res = sum(t.active_resident for t in totals.values())
    walk = "read-only walk of jemalloc's extent map (arena_emap_global rtree) through /proc/PID/mem"
    sources = (
        ("allocated_bytes", f"{walk}: regions in use in slabs + large usable sizes (= mallctl stats.allocated)"),
        ("active_bytes", f"{walk}: pages of active extents (= mallctl stats.active)"),
        ("mapped_bytes", f"{walk}: all extents, active + dirty + muzzy + retained (jemalloc's own metadata excluded)"),
        ("resident_bytes", "pagemap of the active, dirty and muzzy extents"),
        ("free_kept_bytes", f"{walk}: dirty + muzzy extents (= stats.arenas.<i>.pdirty + pmuzzy, x page)"),
        ("retained_bytes", f"{walk}: retained extents (= mallctl stats.retained)"),
        ("release_bytes", "pagemap: resident pages of the dirty and muzzy extents, which arena.<all>.purge gives back"),
    )
    details = (
        ("dirty_bytes", dirty), ("muzzy_bytes", muzzy), ("dirty_resident_bytes", dirty_res),
        ("muzzy_resident_bytes", muzzy_res), ("active_resident_bytes", active_res),
        ("slab_free_bytes", sum(t.slab_free for t in totals.values())),
        ("extents", sum(t.extents for t in totals.values())), ("slabs", sum(t.slabs for t in totals.values())),
        ("arenas_with_extents", len(totals)),
    )
    return AllocatorReport(
        kind="jemalloc", version=layout.version, library=library, static=False, status="valid", reason=None,
        method=walk,
        allocated_bytes=allocated, active_bytes=active, mapped_bytes=active + dirty + muzzy + retained,
        resident_bytes=active_res + dirty_res + muzzy_res, free_kept_bytes=dirty + muzzy, retained_bytes=retained,
        release_bytes=dirty_res + muzzy_res, release_call=f'mallctl("arena.{MALLCTL_ARENAS_ALL}.purge")',
        sources=sources,
        unknown=(("metadata_bytes", "jemalloc's own metadata (base allocations) is not in the extent map: "
                                    "mallctl stats.metadata through gdb tells it"),),
        details=details, arenas=arenas, settings=conf, release_ranges=tuple(release),
        notes=("thread caches (tcache) hold freed regions that count as allocated, in jemalloc's stats as here; "
               "arena.<all>.purge does not flush them",),
    )
