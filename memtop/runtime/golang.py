"""The Go runtime's heap, read from outside: the binary's symbols + /proc/PID/mem.

runtime.ReadMemStats stops the world to compute its figures; memtop reads the counters they come
from, in place, without stopping anything. In Go 1.19 (src/runtime/mstats.go readmemstats_m):

- HeapInuse = gcController.heapInUse, HeapReleased = gcController.heapReleased,
  HeapIdle = gcController.heapFree + heapReleased, HeapSys = heapInUse + heapFree + heapReleased;
- GOGC is gcController.gcPercent, GOMEMLIMIT gcController.memoryLimit (mgcpacer.go);
- the madvise mode is runtime.debug.madvdontneed (runtime1.go; GODEBUG=madvdontneed=0 selects
  MADV_FREE, whose freed pages stay in RSS as LazyFree until the kernel needs them).

The offsets below were taken from Go 1.19's struct gcControllerState (the fields copied into a
Go program and measured with unsafe.Offsetof); other versions move these fields, so they are
refused with that reason rather than read at a wrong place. The version is the binary's own
runtime.buildVersion. A stripped binary (-ldflags=-s) has no symbol table: nothing can be read.
"""

from __future__ import annotations

import os
import re
import struct

from memtop.format import MiB, fmt_bytes
from memtop.heap.elf import ElfError, ElfFile
from memtop.heap.memory import TargetMemory
from memtop.model.findings import Finding, Severity
from memtop.model.runtime import Figure, Region, RuntimeReport, Unknown
from memtop.procfs import AccessDenied, NoSuchProcess, ProcfsError
from memtop.runtime import Target

MAX_EXE_BYTES = 512 << 20
# gcControllerState field offsets, by Go minor version (see the module doc).
LAYOUTS = {
    (1, 19): {"gcPercent": 0, "memoryLimit": 8, "heapLive": 136, "heapMarked": 184, "heapInUse": 304,
              "heapReleased": 312, "heapFree": 320, "totalAlloc": 328, "totalFree": 336, "size": 352},
}
DEBUG_MADVDONTNEED = {(1, 19): 36}  # runtime.debug: nine int32 before it
_SYMBOLS = {"runtime.gcController", "runtime.debug", "runtime.buildVersion"}


def _go_version(raw: str) -> tuple[int, int] | None:
    m = re.match(r"go(\d+)\.(\d+)", raw)
    return (int(m[1]), int(m[2])) if m else None


def _load_bias(target: Target, elf: ElfFile) -> int:
    exe = target.exe.removesuffix(" (deleted)")
    for m in target.maps:
        if m.path.removesuffix(" (deleted)") == exe and m.offset == 0:
            return m.start - elf.first_load_vaddr()
    return 0


def go_report(target: Target) -> RuntimeReport:
    try:
        with open(f"{target.root}/{target.pid}/exe", "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > MAX_EXE_BYTES:
                return RuntimeReport("go", None, "unsupported", f"the executable is over {MAX_EXE_BYTES >> 20} MiB", None)
            f.seek(0)
            elf = ElfFile(f.read())
    except (OSError, ElfError) as e:
        return RuntimeReport("go", None, "unavailable", f"the executable cannot be read: {e}", None)
    symbols = elf.symbols(_SYMBOLS)
    regions = _heap_regions(target)
    if "runtime.gcController" not in symbols:
        why = "the binary is stripped (no runtime.gcController symbol): build without -ldflags=-s to let memtop read it"
        return RuntimeReport("go", None, "unavailable", why, None, regions=regions,
                             unknowns=(Unknown("heap in use / idle / released, GOGC, GOMEMLIMIT", why),))
    bias = _load_bias(target, elf)
    try:
        with TargetMemory(target.pid, target.root) as mem:
            version_raw = None
            if "runtime.buildVersion" in symbols:
                ptr, length = struct.unpack("<QQ", mem.read_exact(symbols["runtime.buildVersion"] + bias, 16))
                if 0 < length <= 64:
                    version_raw = mem.read_exact(ptr + (bias if ptr < bias else 0), length).decode("ascii", "replace")
            version = _go_version(version_raw or "")
            layout = LAYOUTS.get(version) if version else None
            if layout is None:
                why = (f"{version_raw or 'an unknown Go version'}: memtop knows where gcController's fields lie "
                       f"in Go {', '.join(f'{a}.{b}' for a, b in LAYOUTS)} only")
                return RuntimeReport("go", version_raw, "unsupported", why, None, regions=regions,
                                     unknowns=(Unknown("heap in use / idle / released, GOGC, GOMEMLIMIT", why),))
            raw = mem.read_exact(symbols["runtime.gcController"] + bias, layout["size"])
            madv = None
            if "runtime.debug" in symbols and version in DEBUG_MADVDONTNEED:
                madv = struct.unpack("<i", mem.read_exact(symbols["runtime.debug"] + bias + DEBUG_MADVDONTNEED[version], 4))[0]
    except NoSuchProcess:
        return RuntimeReport("go", None, "gone", f"process {target.pid} exited", None)
    except AccessDenied as e:
        return RuntimeReport("go", None, "denied", e.reason, None)
    except (ProcfsError, OSError) as e:
        return RuntimeReport("go", None, "unavailable", f"reading the runtime's globals failed: {e}", None)

    def u64(name: str) -> int:
        return struct.unpack_from("<Q", raw, layout[name])[0]

    gc_percent = struct.unpack_from("<i", raw, layout["gcPercent"])[0]
    memory_limit = struct.unpack_from("<q", raw, layout["memoryLimit"])[0]
    in_use, released, free = u64("heapInUse"), u64("heapReleased"), u64("heapFree")
    objects = u64("totalAlloc") - u64("totalFree")
    src = "runtime.gcController."
    heap_rss = sum(r.rss_bytes or 0 for r in regions) if regions else None
    figures = (
        Figure("heap_inuse", "heap in use (HeapInuse)", in_use, "bytes", src + "heapInUse"),
        Figure("heap_idle", "heap idle (HeapIdle)", free + released, "bytes", src + "heapFree + heapReleased"),
        Figure("heap_released", "  released to the OS (HeapReleased)", released, "bytes", src + "heapReleased"),
        Figure("heap_free_kept", "  idle, kept (HeapIdle - HeapReleased)", free, "bytes", src + "heapFree"),
        Figure("heap_sys", "heap obtained (HeapSys)", in_use + free + released, "bytes", src + "heapInUse + heapFree + heapReleased"),
        Figure("heap_objects", "heap objects (~HeapAlloc)", objects, "bytes",
               src + "totalAlloc - totalFree (updated as spans are filled and swept)"),
        Figure("heap_live", "heap live for the pacer (heapLive)", u64("heapLive"), "bytes", src + "heapLive"),
        Figure("heap_marked", "marked live at the last GC", u64("heapMarked"), "bytes", src + "heapMarked"),
        Figure("heap_arenas_resident", "heap arenas resident", heap_rss, "bytes",
               "smaps Rss of the anonymous mappings at 0xc000000000 and up (Go's arena hints)"),
        Figure("gogc", "GOGC", "off" if gc_percent < 0 else gc_percent, "text", src + "gcPercent"),
        Figure("gomemlimit", "GOMEMLIMIT", None if memory_limit >= (1 << 63) - 1 else memory_limit, "bytes",
               src + "memoryLimit", "not set (math.MaxInt64)" if memory_limit >= (1 << 63) - 1 else None),
        Figure("madvise", "freed pages returned with",
               None if madv is None else ("MADV_DONTNEED" if madv else "MADV_FREE"), "text", "runtime.debug.madvdontneed",
               None if madv is not None else "runtime.debug not found"),
    )
    findings = []
    limit_set = memory_limit < (1 << 63) - 1
    if free >= max(64 * MiB, in_use // 2):
        findings.append(Finding(
            Severity.INFO,
            f"The Go heap keeps {fmt_bytes(free)} idle and not yet released (HeapIdle - HeapReleased) next to "
            f"{fmt_bytes(in_use)} in use; the background scavenger returns it slowly (about 1% of a CPU).",
            ("GOMEMLIMIT=<bytes> makes the runtime return memory (and collect) harder near the limit"
             if not limit_set else "debug.FreeOSMemory() returns it at once") + "; debug.FreeOSMemory() forces it now."))
    if not limit_set and gc_percent >= 100 and in_use >= 256 * MiB:
        findings.append(Finding(
            Severity.INFO,
            f"GOGC={gc_percent} and no GOMEMLIMIT: the heap may grow to {(100 + gc_percent) / 100:.1f}x the live data "
            f"({fmt_bytes(u64('heapMarked'))} at the last GC) before the next collection.",
            "Set GOMEMLIMIT to the container's budget (about 90% of it) so the GC works harder before the limit "
            "instead of letting the heap double."))
    if madv == 0:
        findings.append(Finding(
            Severity.INFO, "This Go program frees pages with MADV_FREE (GODEBUG=madvdontneed=0): they stay in RSS, as "
                           "LazyFree, until the kernel needs memory.",
            "Unset GODEBUG=madvdontneed=0 (the default since Go 1.16 is MADV_DONTNEED) if RSS must reflect use."))
    unknowns = (Unknown("GC count and pause times", "kept in runtime.memstats, whose layout is not read"),)
    source = f"runtime.gcController and runtime.debug (ELF symbols of {target.exe}) in /proc/PID/mem"
    return RuntimeReport("go", version_raw, "ok", None, source, figures, regions, unknowns, tuple(findings))


def _heap_regions(target: Target) -> tuple[Region, ...]:
    """Go's heap arenas: reserved at hint addresses 0xc000000000 and up (mallocinit, 64-bit)."""
    out = []
    for m in target.maps:
        if m.anonymous and not m.path and "rw" in m.perms and 0xC000000000 <= m.start < 0xFF00000000:
            rss = target.smaps.get(m.start, {}).get("Rss") if target.smaps else None
            out.append(Region("go_heap", "Go heap arenas", m.start, m.size, rss, "maps: Go's arena hint range"))
    return tuple(out)
