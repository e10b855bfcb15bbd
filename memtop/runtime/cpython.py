"""CPython's small-object allocator (obmalloc), read from outside through /proc/PID/mem.

CPython serves requests of up to 512 bytes from its own arenas (Objects/obmalloc.c): 1 MiB
anonymous mmaps (256 KiB before 3.10) cut into 16 KiB pools (4 KiB before 3.10), each pool
serving one size class (16, 32 ... 512 bytes). An arena goes back to the system only when every
pool in it is empty, so a few live objects keep a whole arena: "arenas pinned by a few live
blocks", the Python layer's version of the brk pin.

Where the allocator's state lies is not told by symbols on this machine's Python: Debian's
python3.11 is stripped, and obmalloc's state (``arenas``, ``usedpools``) is static (3.11) or
inside ``_PyRuntime`` / the interpreter at offsets that change with every version (3.12+).
What does not change is the pool header every used pool starts with (struct pool_header, the
same from 3.8 to 3.13: ref.count, freeblock, nextpool, prevpool, arenaindex, szidx, nextoffset,
maxnextoffset). Its fields pin each other down (``maxnextoffset == POOL_SIZE - size`` for its
size class, ``nextoffset`` on a block boundary, ``count`` at most the blocks a pool holds,
``freeblock`` inside the pool), so memtop visits every POOL_SIZE-aligned, resident address of
the anonymous mappings and keeps the headers that pass; pools with the same ``arenaindex`` make
an arena. From them come exactly the figures ``sys._debugmallocstats()`` prints: arenas in use,
bytes in allocated blocks, bytes in available blocks, and the rest of the arenas (unused pools
and alignment). Pages that are not resident are not read (pagemap first), so the scan never
faults a page into the target.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

from memtop.format import MiB, fmt_bytes
from memtop.heap.memory import TargetMemory
from memtop.model.findings import Finding, Severity
from memtop.model.runtime import Figure, Region, RuntimeReport, Unknown
from memtop.procfs import PAGE_SIZE, AccessDenied, NoSuchProcess, ProcfsError, read_bytes
from memtop.runtime import Target

ALIGNMENT = 16  # 64-bit, since 3.8
SIZE_CLASSES = 32  # SMALL_REQUEST_THRESHOLD 512 / ALIGNMENT
POOL_OVERHEAD = 48  # sizeof(struct pool_header) rounded to ALIGNMENT
MAX_CANDIDATES = 4_000_000  # POOL_SIZE-aligned addresses visited at most (64 GiB of resident memory)
_HEADER = struct.Struct("<QQQQIIII")


@dataclass(frozen=True, slots=True)
class Geometry:
    pool_size: int
    arena_size: int


def geometry_for(version: str | None) -> Geometry | None:
    """Pool and arena sizes for a CPython version ("3.11"); None when it is not known."""
    if not version:
        return None
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return None
    if (major, minor) >= (3, 10):
        return Geometry(16 << 10, 1 << 20)  # bpo-37448: with the radix tree, 64-bit
    if (major, minor) >= (3, 8):
        return Geometry(4 << 10, 256 << 10)
    return None


@dataclass(frozen=True, slots=True)
class Pool:
    address: int
    count: int
    arena_index: int
    size_class: int


def parse_pool_header(raw: bytes, address: int, geometry: Geometry) -> Pool | None:
    """The pool header at ``address``, or None when these 48 bytes are not one."""
    count_word, freeblock, nextpool, prevpool, arena_index, szidx, nextoffset, maxnextoffset = _HEADER.unpack(raw)
    if szidx >= SIZE_CLASSES:
        return None
    size = (szidx + 1) * ALIGNMENT
    pool_size = geometry.pool_size
    if maxnextoffset != pool_size - size:
        return None
    if nextoffset < POOL_OVERHEAD or nextoffset > maxnextoffset + size or (nextoffset - POOL_OVERHEAD) % size:
        return None
    count = count_word & 0xFFFFFFFF
    if count > (pool_size - POOL_OVERHEAD) // size:
        return None
    if freeblock and not address + POOL_OVERHEAD <= freeblock < address + pool_size:
        return None
    if freeblock and (freeblock - address - POOL_OVERHEAD) % size:
        return None
    if nextpool == 0 or prevpool == 0 or nextpool & 7 or prevpool & 7:
        return None
    return Pool(address, count, arena_index, szidx)


@dataclass(frozen=True, slots=True)
class ArenaUse:
    index: int
    first_pool: int
    last_pool: int
    used_pools: int
    allocated_bytes: int
    resident_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class ObmallocScan:
    geometry: Geometry
    pools: tuple[Pool, ...]
    arenas: tuple[ArenaUse, ...]
    candidates: int
    complete: bool

    @property
    def used_pools(self) -> list[Pool]:
        return [p for p in self.pools if p.count]

    @property
    def allocated_bytes(self) -> int:
        return sum(p.count * (p.size_class + 1) * ALIGNMENT for p in self.pools)

    @property
    def available_bytes(self) -> int:
        pool = self.geometry.pool_size
        return sum(((pool - POOL_OVERHEAD) // ((p.size_class + 1) * ALIGNMENT) - p.count) * (p.size_class + 1) * ALIGNMENT
                   for p in self.pools if p.count)


def group_arenas(pools: list[Pool], geometry: Geometry) -> list[tuple[int, list[Pool]]]:
    """Pools by arena: the same arenaindex, within one arena's span (an index reused by another
    interpreter's allocator, 3.12+, lands elsewhere)."""
    by_index: dict[int, list[Pool]] = {}
    for p in pools:
        by_index.setdefault(p.arena_index, []).append(p)
    out = []
    for index, group in by_index.items():
        group.sort(key=lambda p: p.address)
        current = [group[0]]
        for p in group[1:]:
            if p.address - current[0].address < geometry.arena_size:
                current.append(p)
            else:
                out.append((index, current))
                current = [p]
        out.append((index, current))
    return out


def scan_pools(mem: TargetMemory, mappings, geometry: Geometry) -> tuple[list[Pool], int, bool]:
    """Visit every POOL_SIZE-aligned, present address of the anonymous read-write mappings."""
    pools: list[Pool] = []
    candidates = 0
    step = geometry.pool_size
    for m in mappings:
        first = (m.start + step - 1) // step * step
        if first + POOL_OVERHEAD > m.end:
            continue
        pagemap = mem.pagemap(m.start, m.end)
        mask = pagemap.present_mask()
        base_page = m.start // PAGE_SIZE
        for address in range(first, m.end - POOL_OVERHEAD + 1, step):
            if not mask[address // PAGE_SIZE - base_page]:
                continue
            candidates += 1
            if candidates > MAX_CANDIDATES:
                return pools, candidates, False
            try:
                raw = mem.read_direct(address, POOL_OVERHEAD)
            except (ProcfsError, OSError):
                continue
            pool = parse_pool_header(raw, address, geometry)
            if pool is not None:
                pools.append(pool)
    return pools, candidates, True


def read_obmalloc(target: Target, geometry: Geometry) -> ObmallocScan:
    """Raises NoSuchProcess / AccessDenied."""
    mappings = [m for m in target.maps if m.anonymous and not m.path and m.perms.startswith("rw")
                and m.perms.endswith("p")]
    with TargetMemory(target.pid, target.root) as mem:
        pools, candidates, complete = scan_pools(mem, mappings, geometry)
        arenas = []
        for index, group in group_arenas(pools, geometry):
            lo, hi = group[0].address, group[-1].address + geometry.pool_size
            try:
                resident = mem.resident_bytes(lo // PAGE_SIZE * PAGE_SIZE, hi)
            except (ProcfsError, OSError):
                resident = None
            arenas.append(ArenaUse(index, lo, group[-1].address, sum(1 for p in group if p.count),
                                   sum(p.count * (p.size_class + 1) * ALIGNMENT for p in group), resident))
    return ObmallocScan(geometry, tuple(pools), tuple(sorted(arenas, key=lambda a: a.first_pool)), candidates, complete)


def _pymalloc_env(target: Target) -> tuple[str | None, str | None]:
    """PYTHONMALLOC as the process was started with it: (value, None), or (None, why not):
    "not set", or the environment could not be read (then whether it is set is unknown)."""
    try:
        raw = read_bytes(f"{target.root}/{target.pid}/environ")
    except ProcfsError as e:
        return None, f"/proc/PID/environ not readable: {e}"
    for item in raw.split(b"\0"):
        if item.startswith(b"PYTHONMALLOC="):
            return item.split(b"=", 1)[1].decode("utf-8", "replace"), None
    return None, "not set"


def cpython_report(target: Target) -> RuntimeReport:
    version = target.runtime_version
    geometry = geometry_for(version)
    if geometry is None:
        return RuntimeReport("cpython", version, "unsupported",
                             f"CPython {version or '(version unknown)'}: obmalloc's pool size is known for 3.8 to 3.13",
                             None, unknowns=(Unknown("obmalloc arenas", "version not recognised"),))
    if re.match(r"python3\.\d+t$", os.path.basename(target.exe)):
        return RuntimeReport("cpython", version, "unsupported", "a free-threaded build (its objects are in mimalloc, "
                             "not obmalloc)", None)
    try:
        scan = read_obmalloc(target, geometry)
    except NoSuchProcess:
        return RuntimeReport("cpython", version, "gone", f"process {target.pid} exited", None)
    except AccessDenied as e:
        return RuntimeReport("cpython", version, "denied", e.reason, None)
    env, env_unknown = _pymalloc_env(target)
    source = (f"obmalloc pool headers found in /proc/PID/mem ({scan.candidates:,} {geometry.pool_size >> 10} KiB-aligned "
              "resident addresses visited)")
    if not scan.arenas:
        why = (f"PYTHONMALLOC={env}: objects go to {'glibc malloc' if env.startswith('malloc') else env}, not to arenas"
               if env and not env.startswith("pymalloc") else "no obmalloc pool found in the process's anonymous memory")
        return RuntimeReport("cpython", version, "unavailable", why, source,
                             unknowns=(Unknown("obmalloc arenas", why),))
    arena_bytes = len(scan.arenas) * geometry.arena_size
    allocated = scan.allocated_bytes
    available = scan.available_bytes
    used_pools = len(scan.used_pools)
    pool_bytes = used_pools * geometry.pool_size
    residents = [a.resident_bytes for a in scan.arenas]
    resident = sum(residents) if None not in residents else None
    pinned = [a for a in scan.arenas if a.allocated_bytes * 4 < geometry.arena_size and a.used_pools]
    pinned_free = sum(geometry.arena_size - a.allocated_bytes for a in pinned)
    pinned_resident = sum((a.resident_bytes or 0) - a.allocated_bytes for a in pinned)
    src = "pool headers: "
    figures = (
        Figure("arenas", "obmalloc arenas", len(scan.arenas), "count", src + "distinct arenaindex values",
               None),
        Figure("arena_bytes", f"arena memory ({geometry.arena_size >> 10} KiB each)", arena_bytes, "bytes",
               src + "arenas x ARENA_SIZE (sys._debugmallocstats: 'N arenas * ... bytes/arena')"),
        Figure("arena_resident", "arena memory resident", resident, "bytes",
               "pagemap of each arena's pools (first to last)"),
        Figure("allocated_bytes", "in use (bytes in allocated blocks)", allocated, "bytes",
               src + "sum of count x block size"),
        Figure("available_bytes", "free blocks in used pools", available, "bytes",
               src + "sum of (blocks per pool - count) x block size"),
        Figure("free_pools_bytes", "unused pools and arena alignment", arena_bytes - pool_bytes, "bytes",
               "arena memory - used pools x POOL_SIZE"),
        Figure("overhead_bytes", "pool headers and quantization", pool_bytes - allocated - available, "bytes",
               "used pools x POOL_SIZE - in use - free blocks"),
        Figure("used_pools", "used pools", used_pools, "count", src + "ref.count > 0"),
        Figure("pinned_arenas", "arenas less than 1/4 used", len(pinned), "count",
               src + "arenas whose blocks in use fill under a quarter of them"),
        Figure("pinned_free_bytes", "  free room they keep", pinned_free, "bytes", "their arena size - in use"),
        Figure("pymalloc_env", "PYTHONMALLOC", env, "text", "/proc/PID/environ (at exec)", env_unknown),
    )
    regions = tuple(Region("obmalloc_arenas", "obmalloc arenas", a.first_pool, a.last_pool + geometry.pool_size - a.first_pool,
                           a.resident_bytes, "the pools of one arena (pool headers in /proc/PID/mem)")
                    for a in scan.arenas)
    unknowns = [Unknown("objects larger than 512 bytes", "they are malloc'd: the glibc layer counts them"),
                Unknown("which objects are live", "needs the interpreter: tracemalloc or gc.get_objects() inside the process")]
    if not scan.complete:
        unknowns.append(Unknown("arenas past the scan bound", f"the scan stopped after {MAX_CANDIDATES:,} addresses"))
    findings = []
    free_kept = arena_bytes - allocated
    if pinned and pinned_free >= 8 * MiB:
        findings.append(Finding(
            Severity.WARNING,
            f"{len(pinned)} of {len(scan.arenas)} obmalloc arenas are less than a quarter used: "
            f"{fmt_bytes(pinned_free)} of free room ({fmt_bytes(max(0, pinned_resident))} resident) is kept because a few "
            "live objects pin each arena (an arena is returned only when all its pools are empty).",
            "Long-lived small objects made during a burst pin the arenas: create them before the burst, or keep "
            "caches in fewer, larger objects; PYTHONMALLOC=malloc hands small objects to glibc (whose trim then "
            "applies), at some speed cost."))
    elif free_kept >= 32 * MiB and free_kept > allocated:
        findings.append(Finding(
            Severity.INFO,
            f"obmalloc holds {fmt_bytes(arena_bytes)} in {len(scan.arenas)} arenas for {fmt_bytes(allocated)} of small "
            f"objects: {fmt_bytes(free_kept)} is free inside them, reused for new small objects but not returned.",
            "sys._debugmallocstats() inside the process shows the same by size class."))
    return RuntimeReport("cpython", version, "ok", None, source, figures, regions, tuple(unknowns), tuple(findings))
