"""Node.js (V8): the heap's spaces read from outside, from V8's page headers; what cannot be read.

V8 allocates its heap in pages of 256 KiB (large objects get pages of their own size) aligned
to 256 KiB, each starting with a header (src/heap/basic-memory-chunk.h in V8 11.3, Node 20):
size, flags, the Heap it belongs to, area start and end, allocated bytes, wasted memory, high
water mark, the owning space, and its own reservation (address, size). The owning space object
starts with its vtable, the Heap, its AllocationSpace id and its committed bytes. memtop visits
each 256 KiB-aligned resident address of the anonymous mappings, keeps the headers that are
consistent (the area inside the page, the reservation at the page itself, the owner pointing
back at the same Heap, a known space id), and sums per space:

- size = the space's committed bytes (what v8.getHeapSpaceStatistics() calls space_size and
  process.memoryUsage() sums as heapTotal);
- used = the pages' allocated bytes, for the old, code and large-object spaces. New space is the
  exception: its used part ends at the allocation top kept in the isolate, not in the pages, so
  it is unknown.

The layout is V8 11.3's (Node 20); another V8 gives headers that fail the checks, and memtop then
says so rather than guess. Worker threads have their own isolates (another Heap): the main one,
the one with the most pages, is reported, and the others are counted.
"""

from __future__ import annotations

import struct
from collections import Counter, defaultdict

from memtop.format import MiB, fmt_bytes
from memtop.heap.memory import TargetMemory
from memtop.model.findings import Finding, Severity
from memtop.model.runtime import Figure, Region, RuntimeReport, Unknown
from memtop.procfs import PAGE_SIZE, AccessDenied, NoSuchProcess, ProcfsError
from memtop.runtime import Target

V8_PAGE = 256 << 10
HEADER = struct.Struct("<12Q")
MAX_CANDIDATES = 1_000_000
# AllocationSpace in V8 11.3 (src/common/globals.h).
SPACES = {0: "read_only_space", 1: "new_space", 2: "old_space", 3: "code_space", 4: "shared_space",
          5: "new_large_object_space", 6: "large_object_space", 7: "code_large_object_space",
          8: "shared_large_object_space"}
NEW_SPACE = 1


def parse_page_header(raw: bytes, address: int) -> tuple[int, int, int, int] | None:
    """(size, heap, allocated bytes, owner) of the V8 page header at ``address``, or None."""
    size, _flags, heap, area_start, area_end, allocated, _wasted, _hwm, owner, _x, reservation, _rsize = HEADER.unpack(raw)
    if not size or size % PAGE_SIZE or size >= 1 << 34:
        return None
    if not address < area_start < area_end <= address + size or reservation != address:
        return None
    if allocated > area_end - area_start or not heap or heap & 7 or not owner or owner & 7:
        return None
    return size, heap, allocated, owner


def node_report(target: Target) -> RuntimeReport:
    mappings = [m for m in target.maps if m.anonymous and not m.path and m.perms.startswith("rw")]
    pages: list[tuple[int, int, int, int, int]] = []  # address, size, heap, allocated, owner
    try:
        with TargetMemory(target.pid, target.root) as mem:
            candidates = 0
            for m in mappings:
                first = (m.start + V8_PAGE - 1) // V8_PAGE * V8_PAGE
                if first + HEADER.size > m.end:
                    continue
                mask = mem.pagemap(m.start, m.end).present_mask()
                base = m.start // PAGE_SIZE
                for address in range(first, m.end - HEADER.size + 1, V8_PAGE):
                    if not mask[address // PAGE_SIZE - base]:
                        continue
                    candidates += 1
                    if candidates > MAX_CANDIDATES:
                        break
                    try:
                        header = parse_page_header(mem.read_direct(address, HEADER.size), address)
                    except (ProcfsError, OSError):
                        continue
                    if header is not None:
                        pages.append((address, *header))
            heaps = Counter(p[2] for p in pages)
            spaces: dict[int, int] = {}
            owners: dict[int, tuple[int, int]] = {}
            main_heap = heaps.most_common(1)[0][0] if heaps else None
            if main_heap is not None:
                for owner in {p[4] for p in pages if p[2] == main_heap}:
                    try:
                        _vtable, heap, ident, committed = struct.unpack("<4Q", mem.read_direct(owner, 32))
                    except (ProcfsError, OSError):
                        continue
                    ident &= 0xFFFFFFFF
                    if heap == main_heap and ident in SPACES and committed % PAGE_SIZE == 0:
                        owners[owner] = (ident, committed)
            resident = {}
            for address, size, heap, _a, _o in pages:
                if heap == main_heap:
                    try:
                        resident[address] = mem.resident_bytes(address, address + size)
                    except (ProcfsError, OSError):
                        resident[address] = None
    except NoSuchProcess:
        return RuntimeReport("node", target.runtime_version, "gone", f"process {target.pid} exited", None)
    except AccessDenied as e:
        return RuntimeReport("node", target.runtime_version, "denied", e.reason, None)
    main = [p for p in pages if p[2] == main_heap and p[4] in owners]
    if not main:
        why = ("no V8 page header with V8 11.3's layout (Node 20) was found in the process's anonymous memory: "
               "another V8 version, or pointer compression")
        return RuntimeReport("node", target.runtime_version, "unsupported", why, None,
                             unknowns=(Unknown("V8 heap spaces", why),),
                             findings=(_inside_advice(),))
    committed: dict[int, int] = defaultdict(int)
    for ident, size in owners.values():
        committed[ident] += size
    used: dict[int, int] = defaultdict(int)
    for _address, _size, _heap, allocated, owner in main:
        used[owners[owner][0]] += allocated
    figures = []
    src = "V8 page headers: "
    total = sum(committed.values())
    known_used = sum(v for k, v in used.items() if k != NEW_SPACE)
    figures.append(Figure("heap_total", "heapTotal (spaces' committed bytes)", total, "bytes",
                          src + "each space's committed bytes"))
    figures.append(Figure("heap_used_old", "used outside new space", known_used, "bytes",
                          src + "allocated bytes of the old, code and large-object pages"))
    for ident in sorted(committed):
        name = SPACES[ident]
        figures.append(Figure(f"{name}_size", f"{name}: size", committed[ident], "bytes", src + "the space's committed bytes"))
        figures.append(Figure(f"{name}_used", f"{name}: used", None if ident == NEW_SPACE else used[ident], "bytes",
                              src + "allocated bytes of its pages",
                              "new space's allocation top is kept in the isolate, not in its pages"
                              if ident == NEW_SPACE else None))
    res = [v for v in resident.values() if v is not None]
    figures.append(Figure("heap_resident", "V8 pages resident", sum(res), "bytes", "pagemap of each page"))
    figures.append(Figure("isolates", "isolates (main + workers)", len(heaps), "count", src + "distinct Heap pointers"))
    regions = tuple(Region("v8_heap", "V8 heap pages", address, size, resident.get(address),
                           "a 256 KiB-aligned V8 page (its header)") for address, size, *_ in sorted(main))
    unknowns = (Unknown("new space used", "its allocation top is kept in the isolate, not in its pages"),
                Unknown("external memory and ArrayBuffers", "counted by the isolate, not in the heap's pages"))
    findings = [_inside_advice()]
    old = committed.get(2, 0)
    if old >= 256 * MiB and used.get(2, 0) < old // 2:
        findings.insert(0, Finding(Severity.INFO, f"V8's old space has {fmt_bytes(old)} committed for "
                                                  f"{fmt_bytes(used.get(2, 0))} used: V8 shrinks it only after full GCs.",
                                   "Nothing is leaking if used stays flat; --max-old-space-size caps the space."))
    source = f"V8 11.3 page headers in /proc/PID/mem ({len(main)} pages of the main isolate)"
    return RuntimeReport("node", target.runtime_version, "ok", None, source, tuple(figures), regions, unknowns,
                         tuple(findings))


def _inside_advice() -> Finding:
    return Finding(Severity.INFO, "Which objects hold V8's heap is known only inside the process: heap snapshots "
                                  "(an inspector, which opens a debug port: the owner's decision) or "
                                  "v8.writeHeapSnapshot() from the service itself.",
                   "--max-old-space-size=N caps the old space; --trace-gc logs each collection.")
