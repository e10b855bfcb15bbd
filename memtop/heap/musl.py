"""musl's malloc (mallocng, musl 1.2.1 and later), read-only: a walk of its meta areas.

mallocng (src/malloc/mallocng/meta.h) hands out slots from groups; each group has a ``struct
meta`` out of band, in meta areas that start with ``check == ctx.secret`` and are chained from
``ctx.meta_area_head`` (``struct malloc_context ctx``, hidden symbol ``__malloc_context``). A
meta in use points to its group (``mem``, whose first word points back), knows the slot size
(``sizeclass``: ``UNIT * size_classes[sc]``, or ``maplen`` pages for a single-slot group), how
many slots (``last_idx + 1``) and which are free (``avail_mask``: never handed out or reclaimed;
``freed_mask``: freed, not yet reclaimed). A slot in use carries an in-band header before the
pointer the program got: the slot index, and the bytes reserved at its end, which give the size
the program asked for (``get_nominal_size``, what ``malloc_usable_size`` returns).

What can be known: the bytes the program holds (exact: the nominal sizes), slots in use and
their size, free slots kept in live groups, the groups' mappings and their resident pages. What
cannot: a release figure, because musl has none to give: there is no malloc_trim; a group is
unmapped as soon as all its slots are free, and (musl 1.2.3) the whole pages of a freed large slot
are given to the kernel at once with MADV_FREE (LazyFree in smaps until reclaimed), so musl keeps
no free pool the way glibc's arenas do. Small free slots inside a live group stay (fragmentation).

``ctx`` is found through the executable's symbol table when it is static and has one, otherwise
by its shape in libc's .bss: a 64-bit secret, ``init_done == 1``, and a ``meta_area_head`` whose
``check`` word equals the secret.
"""

from __future__ import annotations

import bisect
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from memtop.heap.allocators import ATTEMPTS, Inconsistent, LibraryImage, ReaderError, open_library, read_consistently
from memtop.heap.memory import Mapping, MemoryReadError, TargetMemory
from memtop.model.allocator import AllocatorReport
from memtop.procfs import PAGE_SIZE

UNIT = 16
IB = 4
SIZE_CLASSES = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 18, 20, 25, 31, 36, 42, 50, 63, 72, 84, 102, 127,
    146, 170, 204, 255, 292, 340, 409, 511, 584, 682, 818, 1023, 1169, 1364, 1637, 2047,
    2340, 2730, 3276, 4095, 4680, 5460, 6552, 8191,
)
# struct malloc_context on x86_64 (PAGESIZE is a constant there, so no pagesize field):
CTX_SECRET, CTX_INIT_DONE, CTX_META_AREA_HEAD, CTX_SIZE = 0, 8, 56, 928
META_SIZE = 40  # prev, next, mem, avail_mask, freed_mask, {last_idx:5, freeable:1, sizeclass:6, maplen}
AREA_HEADER = 24  # check, next, nslots (+ pad)
MAX_AREAS = 1 << 16
MAX_METAS = 4 << 20
_VERSION_RE = re.compile(rb"\x00(1\.\d+\.\d+)\x00")  # the dynamic linker prints it ("musl libc (x86_64)\nVersion %s")


@dataclass(frozen=True, slots=True)
class Meta:
    address: int
    mem: int
    avail_mask: int
    freed_mask: int
    last_idx: int
    sizeclass: int
    maplen: int

    @property
    def stride(self) -> int:
        if not self.last_idx and self.maplen:
            return self.maplen * 4096 - UNIT
        return UNIT * SIZE_CLASSES[self.sizeclass]

    @property
    def slots(self) -> int:
        return self.last_idx + 1

    def in_use(self, index: int) -> bool:
        return not (self.avail_mask | self.freed_mask) & (1 << index)


def parse_meta(address: int, raw: bytes) -> Meta | None:
    """A struct meta in use, or None for a free (zeroed by free_meta) or never used one."""
    _prev, _next, mem, avail, freed, bits = struct.unpack_from("<QQQIIQ", raw)
    if not mem:
        return None
    return Meta(address, mem, avail, freed, bits & 31, (bits >> 6) & 63, bits >> 12)


def find_ctx(mem: TargetMemory, image: LibraryImage, symbol: int | None) -> int:
    """The address of ``ctx``: the symbol when the symbol table has it, else its shape in .bss."""
    if symbol is not None:
        return symbol
    bss = image.section_range(".bss")
    if bss is None:
        raise ReaderError("unsupported", f"{image.path} has no .bss: musl's malloc context cannot be found")
    data = bytes(mem.read(bss[0], bss[1] - bss[0])[0])
    found = []
    for offset in range(0, len(data) - CTX_SIZE, 8):
        secret, init_done = struct.unpack_from("<QI", data, offset)
        if init_done != 1 or not secret:
            continue
        head = struct.unpack_from("<Q", data, offset + CTX_META_AREA_HEAD)[0]
        if not head or head % PAGE_SIZE:
            continue
        try:
            if mem.word(head) == secret:
                found.append(bss[0] + offset)
        except (MemoryReadError, OSError):
            continue
    if not found:
        raise ReaderError("empty", "musl's malloc context is not initialised (the program has not called malloc "
                                   "yet), or this is not mallocng")
    if len(found) > 1:
        raise ReaderError("unsupported", f"{len(found)} places in musl's .bss look like its malloc context")
    return found[0]


@dataclass
class Totals:
    groups: int = 0
    nested_groups: int = 0
    slots_in_use: int = 0
    slot_bytes_in_use: int = 0
    requested_bytes: int = 0
    free_slot_bytes: int = 0
    freed_slot_bytes: int = 0
    mapped_bytes: int = 0
    resident_bytes: int = 0


def walk(mem: TargetMemory, ctx: int, maps: list[Mapping]) -> Totals:
    ctx_raw = mem.read_exact(ctx, CTX_SIZE)
    secret, init_done = struct.unpack_from("<QI", ctx_raw, CTX_SECRET)
    if init_done != 1:
        raise ReaderError("empty", "musl's malloc has not been used yet (ctx.init_done is 0)")
    area = struct.unpack_from("<Q", ctx_raw, CTX_META_AREA_HEAD)[0]
    metas: list[Meta] = []
    areas = 0
    while area:
        areas += 1
        if areas > MAX_AREAS:
            raise Inconsistent("the meta area list does not end")
        check, next_area, nslots = struct.unpack("<QQi", mem.read_exact(area, AREA_HEADER - 4))
        if check != secret:
            raise Inconsistent(f"meta area {area:#x} does not carry ctx.secret")
        if not 0 < nslots <= (PAGE_SIZE << 8) // META_SIZE:
            raise Inconsistent(f"meta area {area:#x} claims {nslots} slots")
        raw = bytes(mem.read(area + AREA_HEADER, nslots * META_SIZE)[0])
        for i in range(nslots):
            meta = parse_meta(area + AREA_HEADER + i * META_SIZE, raw[i * META_SIZE:(i + 1) * META_SIZE])
            if meta is not None:
                metas.append(meta)
        if len(metas) > MAX_METAS:
            raise Inconsistent("more metas than memtop reads")
        area = next_area
    group_starts = sorted(m.mem for m in metas)
    totals = Totals()
    pagemaps: dict[int, object] = {}
    for meta in metas:
        if meta.sizeclass >= len(SIZE_CLASSES) and meta.sizeclass != 63:
            raise Inconsistent(f"meta {meta.address:#x} has size class {meta.sizeclass}")
        if meta.sizeclass == 63 and not meta.maplen:
            raise Inconsistent(f"meta {meta.address:#x}: a single-slot group without a mapping")
        stride = meta.stride
        storage = meta.mem + UNIT
        end = storage + stride * meta.slots
        # The group's own bytes: its header, then the slots; read once (present pages only).
        data = bytes(mem.read(meta.mem, end - meta.mem)[0])
        if struct.unpack_from("<Q", data, 0)[0] != meta.address:
            raise Inconsistent(f"group {meta.mem:#x} does not point back to its meta")
        totals.groups += 1
        if meta.maplen:
            totals.mapped_bytes += meta.maplen * PAGE_SIZE
            m = next((x for x in maps if x.start <= meta.mem < x.end), None)
            if m is not None:
                pm = pagemaps.get(m.start)
                if pm is None:
                    pm = pagemaps[m.start] = mem.pagemap(m.start, m.end)
                totals.resident_bytes += mem.resident_bytes(meta.mem, min(m.end, meta.mem + meta.maplen * PAGE_SIZE), pm)
        else:
            totals.nested_groups += 1
        for index in range(meta.slots):
            if not meta.in_use(index):
                totals.free_slot_bytes += stride
                if meta.freed_mask & (1 << index):
                    totals.freed_slot_bytes += stride
                continue
            start = storage + stride * index
            at = bisect.bisect_left(group_starts, start)
            if at < len(group_starts) and group_starts[at] < start + stride:
                continue  # this slot holds a nested group: its slots are counted with their own meta
            totals.slots_in_use += 1
            totals.slot_bytes_in_use += stride
            totals.requested_bytes += _nominal(data, meta.mem, start, stride, index)
    return totals


def _nominal(data: bytes, base: int, start: int, stride: int, index: int) -> int:
    """The size the program asked for, from the slot's in-band header (meta.h enframe/set_size)."""
    p = start
    h = start - base
    if data[h - 3] == 7 << 5:  # enframed at an offset: the offset sits in the slot's first header
        p = start + UNIT * struct.unpack_from("<H", data, h - 2)[0]
    q = p - base
    if q - 3 < 0 or q >= len(data):
        raise Inconsistent(f"slot {index} at {start:#x} has an offset outside its slot")
    if data[q - 3] & 31 != index:
        raise Inconsistent(f"slot {index} at {start:#x} carries index {data[q - 3] & 31}")
    end = start + stride - IB
    reserved = data[q - 3] >> 5
    if reserved >= 5:
        reserved = struct.unpack_from("<I", data, end - 4 - base)[0]
    if reserved > end - p:
        raise Inconsistent(f"slot {index} at {start:#x} reserves more than it holds")
    return end - reserved - p


def _madv_free_note(version: str | None) -> str:
    """musl 1.2.1-1.2.3 madvise(MADV_FREE) the whole pages of a freed large slot (free.c); 1.2.4
    stopped ("disable MADV_FREE usage in mallocng")."""
    words = ("give the whole pages of a freed large slot back at once (MADV_FREE, LazyFree until the kernel "
             "reclaims them)")
    if version is None:
        return f"; musl 1.2.1 to 1.2.3 also {words}, later versions keep them (this one's version is not told)"
    if tuple(int(x) for x in version.split(".")) <= (1, 2, 3):
        return f", and musl {version} gives" + words[len("give"):]
    return ""


_ctx_cache: dict[tuple, int] = {}


def version_of(image: LibraryImage) -> str | None:
    """musl's version string, found in the dynamic libc next to the loader's usage text; a
    static executable does not carry it."""
    if b"musl libc (" not in image.data:
        return None
    found = set(_VERSION_RE.findall(image.data))
    return found.pop().decode() if len(found) == 1 else None


def _start_ticks(pid: int, root: Path) -> int | None:
    from memtop.procfs.process import read_stat

    try:
        return read_stat(pid, root).start_ticks
    except Exception:  # noqa: BLE001 - then the place is found again next time
        return None


def read(pid: int, root: Path, maps: list[Mapping], guess) -> AllocatorReport:
    import os

    if guess.library is not None:
        path = guess.library
    else:
        try:
            path = os.readlink(f"{root}/{pid}/exe").removesuffix(" (deleted)")
        except OSError as e:
            raise ReaderError("denied", f"cannot read the target's executable link: {e.strerror}") from None
    image = open_library(pid, maps, root, path)
    version = version_of(image)
    if version is not None and tuple(int(x) for x in version.split(".")) < (1, 2, 1):
        raise ReaderError("unsupported", f"musl {version} uses the old malloc (oldmalloc): only mallocng (1.2.1+) is read")
    symbols = image.elf.symbols({"__malloc_context", "__simple_malloc"})
    ctx_symbol = image.base + symbols["__malloc_context"] if "__malloc_context" in symbols else None
    if guess.static and ctx_symbol is None and "__simple_malloc" in symbols:
        raise ReaderError("unsupported", "musl's lite malloc (a bump allocator linked when the program never calls "
                                         "free): it never gives memory back and keeps no books to read")
    with TargetMemory(pid, root) as mem:
        key = (pid, _start_ticks(pid, root), image.path, image.base)
        ctx = _ctx_cache.get(key)
        if ctx is None:
            ctx = find_ctx(mem, image, ctx_symbol)  # its place in .bss never changes: found once
            if len(_ctx_cache) > 64:
                _ctx_cache.clear()
            _ctx_cache[key] = ctx
        totals, problem = read_consistently(mem, pid, lambda: walk(mem, ctx, maps))
        if totals is None:
            return AllocatorReport(kind="musl", version=version, library=guess.library, static=guess.static,
                                   status="changing", reason=f"the heap changed under {ATTEMPTS} walks (last: {problem})",
                                   method="read-only walk of musl's meta areas")
    how = "read-only walk of mallocng's meta areas (ctx found by " + (
        "the __malloc_context symbol" if ctx_symbol is not None else "its shape in libc's .bss") + ")"
    return AllocatorReport(
        kind="musl", version=version, library=guess.library, static=guess.static, status="valid", reason=None,
        method=how,
        allocated_bytes=totals.requested_bytes, active_bytes=totals.slot_bytes_in_use, mapped_bytes=totals.mapped_bytes,
        resident_bytes=totals.resident_bytes, free_kept_bytes=totals.free_slot_bytes, retained_bytes=None,
        release_bytes=None, release_call=None,
        sources=(
            ("allocated_bytes", f"{how}: the sizes asked for, from each slot's in-band header (= malloc_usable_size)"),
            ("active_bytes", f"{how}: slots in use x their slot size"),
            ("mapped_bytes", f"{how}: groups with their own mapping (maplen pages)"),
            ("resident_bytes", "pagemap of the groups' mappings"),
            ("free_kept_bytes", f"{how}: free slots of live groups (avail + freed masks) x slot size"),
        ),
        unknown=(
            ("retained_bytes", "musl keeps no address space for reuse: a group is unmapped when its last slot is freed"),
            ("release_bytes", "musl has no call that gives memory back (no malloc_trim): it returns empty groups "
                              "and the pages of freed large slots by itself"),
        ),
        details=(("slots_in_use", totals.slots_in_use), ("groups", totals.groups),
                 ("nested_groups", totals.nested_groups), ("freed_slot_bytes", totals.freed_slot_bytes)),
        notes=("musl keeps no free pool the way glibc's arenas do: a group is unmapped as soon as all its slots are "
               "free" + _madv_free_note(version),
               "what stays is fragmentation: free slots inside groups that still hold a live allocation"),
    )
