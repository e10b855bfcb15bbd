"""The JVM's own memory figures from its PerfData file, the one jstat reads; no attach, no stop.

HotSpot keeps its performance counters in a shared memory file, ``/tmp/hsperfdata_USER/PID``
(hotspot/share/runtime/perfMemory.hpp, perfData.hpp), that it maps into itself and updates in
place. The format: a 32-byte prologue (magic 0xcafec0c0 in the first four bytes, a byte-order
byte, major/minor version 2.0, an "accessible" flag, bytes used, the offset and number of
entries), then entries of a 20-byte header (entry length, name offset, vector length, type,
flags, units, variability, data offset), a NUL-terminated name and the data: a 64-bit long
('J') or a byte vector ('B', a string).

The file is hostile input: it lives in /tmp and belongs to the JVM's user, who can write
anything in it, or put a symlink or a FIFO in its place. So: it is found from the process's own
mappings (the JVM maps it), opened component by component below /proc/PID/root with O_NOFOLLOW
(never through a symlink, also inside a container), it must be a regular file owned by the
process's uid and be the very inode the process maps; its size and every offset and length in
it are bounded. When the file cannot be had (deleted from /tmp, another mount namespace with an
overlay inode) the same bytes are read from the process's mapping through /proc/PID/mem.

What the counters cannot tell is said: the code cache has no PerfData counter in JDK 17 (its
size comes from the rwx anonymous mappings, HotSpot's code heaps), and where metaspace lies is
not told (its committed size is).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import time
from dataclasses import dataclass

from memtop.format import MiB, counted, fmt_bytes
from memtop.heap.memory import Mapping, TargetMemory
from memtop.model.findings import Finding, Severity
from memtop.model.runtime import Figure, Region, RuntimeReport, Unknown
from memtop.procfs import PAGE_SIZE, AccessDenied, NoSuchProcess, ProcfsError
from memtop.runtime import RootUnreadable, Target, is_plain_name, opened_in_root

MAGIC = b"\xca\xfe\xc0\xc0"
PROLOGUE_SIZE = 32
ENTRY_HEADER_SIZE = 20
MAX_FILE_BYTES = 16 << 20  # PerfDataMemorySize is 64 KiB by default; 16 MiB is far above any setting
MAX_ENTRIES = 100_000
MAX_NAME = 1024
_PERF_PATH = re.compile(r"^(/.*)/hsperfdata_([^/]+)/(\d+)(?: \(deleted\))?$")


class PerfDataError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class PerfData:
    major: int
    minor: int
    accessible: bool
    counters: dict[str, int | str]
    units: dict[str, int]  # name -> U_* (1 none, 2 bytes, 3 ticks, 4 events, 5 string, 6 hertz)

    def long(self, name: str) -> int | None:
        value = self.counters.get(name)
        return value if isinstance(value, int) else None

    def string(self, name: str) -> str | None:
        value = self.counters.get(name)
        return value if isinstance(value, str) else None


def parse_perfdata(data: bytes) -> PerfData:
    """Parse a PerfData buffer (pure; every length checked). Raises PerfDataError."""
    if len(data) < PROLOGUE_SIZE or data[:4] != MAGIC:
        raise PerfDataError("not a HotSpot PerfData file (bad magic)")
    if len(data) > MAX_FILE_BYTES:
        raise PerfDataError(f"PerfData buffer larger than {MAX_FILE_BYTES} bytes")
    order = data[4]
    if order not in (0, 1):
        raise PerfDataError(f"unknown byte order {order}")
    e = "<" if order == 1 else ">"
    major, minor, accessible = data[5], data[6], data[7]
    if major != 2:
        raise PerfDataError(f"PerfData version {major}.{minor} (only 2.x is read)")
    used, _overflow, _mod_time, entry_offset, num_entries = struct.unpack_from(e + "iiqii", data, 8)
    limit = min(len(data), used) if used > 0 else len(data)
    if not PROLOGUE_SIZE <= entry_offset <= limit:
        raise PerfDataError(f"entry offset {entry_offset} outside the {limit} bytes used")
    if not 0 <= num_entries <= MAX_ENTRIES:
        raise PerfDataError(f"implausible entry count {num_entries}")
    counters: dict[str, int | str] = {}
    units: dict[str, int] = {}
    pos = entry_offset
    for _ in range(num_entries):
        if pos + ENTRY_HEADER_SIZE > limit:
            break  # the JVM may add entries while we read: take what is complete
        length, name_off, vlen, dtype, _flags, unit, _var, data_off = struct.unpack_from(e + "iiibbbbi", data, pos)
        if length < ENTRY_HEADER_SIZE or pos + length > limit:
            raise PerfDataError(f"entry at {pos} has a bad length {length}")
        if not ENTRY_HEADER_SIZE <= name_off < length or not 0 <= data_off < length or vlen < 0:
            raise PerfDataError(f"entry at {pos} has offsets outside it")
        end_of_entry = pos + length
        name_end = data.find(b"\0", pos + name_off, min(end_of_entry, pos + name_off + MAX_NAME))
        if name_end < 0:
            raise PerfDataError(f"entry at {pos} has an unterminated name")
        name = data[pos + name_off:name_end].decode("ascii", "replace")
        start = pos + data_off
        if vlen == 0 and dtype == ord("J"):
            if start + 8 > end_of_entry:
                raise PerfDataError(f"counter {name!r} overruns its entry")
            counters[name] = struct.unpack_from(e + "q", data, start)[0]
        elif vlen == 0 and dtype == ord("I"):
            if start + 4 > end_of_entry:
                raise PerfDataError(f"counter {name!r} overruns its entry")
            counters[name] = struct.unpack_from(e + "i", data, start)[0]
        elif vlen > 0 and dtype == ord("B"):
            if start + vlen > end_of_entry:
                raise PerfDataError(f"string {name!r} overruns its entry")
            counters[name] = data[start:start + vlen].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        units[name] = unit
        pos = end_of_entry
    return PerfData(major, minor, bool(accessible), counters, units)


# --- finding and opening the file -------------------------------------------------------------

def perfdata_mapping(maps: list[Mapping]) -> Mapping | None:
    """The JVM's mapping of its own hsperfdata file (perfMemory_linux.cpp mmaps it shared)."""
    for m in maps:
        if _PERF_PATH.match(m.path) and not m.anonymous:
            return m
    return None


def _dev_of(maps_dev: str) -> int | None:
    major, _, minor = maps_dev.partition(":")
    try:
        return os.makedev(int(major, 16), int(minor, 16))
    except ValueError:
        return None


def open_perfdata_file(target: Target, mapping: Mapping) -> tuple[bytes | None, str, str | None]:
    """(bytes, path, why-not) reading the mapped file below /proc/PID/root without following a
    symlink anywhere, checked to be the inode the process maps and to belong to its uid."""
    path = mapping.path.removesuffix(" (deleted)")
    if mapping.path.endswith(" (deleted)"):
        return None, path, "the file was deleted from /tmp (the JVM still maps it)"
    parts = [p for p in path.split("/") if p]
    if not parts or not all(is_plain_name(p) for p in parts):
        return None, path, "an odd path"
    owner = target.uids[1] if len(target.uids) > 1 else None
    try:
        # O_NONBLOCK: a FIFO put in its place must not block the open.
        with opened_in_root(target, parts, os.O_RDONLY | os.O_NONBLOCK) as fd:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None, path, "not a regular file"
            if owner is not None and st.st_uid != owner:
                return None, path, f"owned by uid {st.st_uid}, not by the process's uid {owner}"
            if st.st_ino != mapping.inode or (_dev_of(mapping.dev) not in (None, st.st_dev)):
                return None, path, "not the inode the process maps (another mount namespace or a replaced file)"
            if st.st_size > MAX_FILE_BYTES:
                return None, path, f"larger than {MAX_FILE_BYTES} bytes"
            return os.pread(fd, min(st.st_size, mapping.size), 0), path, None
    except RootUnreadable as e:
        return None, path, f"cannot open /proc/{target.pid}/root ({os.strerror(e.errno)})"
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # O_NOFOLLOW met a symlink
            return None, path, "a symlink (or a non-directory) in its path: not followed"
        return None, path, os.strerror(e.errno) if e.errno else str(e)


def read_perfdata(target: Target) -> tuple[PerfData | None, str, str | None]:
    """(PerfData, source, why-not)."""
    mapping = perfdata_mapping(target.maps)
    if mapping is None:
        return None, "", ("the JVM maps no hsperfdata file: it runs with -XX:-UsePerfData or "
                          "-XX:+PerfDisableSharedMem (jstat cannot read it either)")
    data, path, why = open_perfdata_file(target, mapping)
    source = path
    if data is None:
        # The same bytes, from the JVM's own mapping of the file.
        try:
            with TargetMemory(target.pid, target.root) as mem:
                data = mem.read_exact(mapping.start, min(mapping.size, MAX_FILE_BYTES))
            source = f"{path} as mapped by the JVM (/proc/PID/mem at 0x{mapping.start:x}; the file: {why})"
        except (NoSuchProcess, AccessDenied, ProcfsError, OSError) as e:
            reason = e.reason if isinstance(e, AccessDenied) else str(e)
            return None, path, f"{path}: {why}; its mapping cannot be read either ({reason})"
    try:
        return parse_perfdata(data), source, None
    except PerfDataError as e:
        return None, source, f"{path}: {e}"


# --- the report -------------------------------------------------------------------------------

def _page_floor(value: int | None) -> int | None:
    # G1MonitoringSupport reports capacities plus a word (so that jstat never divides by 0):
    # heap sizes are multiples of the page size, so the floor is the real figure.
    return None if value is None else value // PAGE_SIZE * PAGE_SIZE


def find_heap_range(maps: list[Mapping], sizes: list[int], committed: int | None) -> tuple[int, int] | None:
    """The Java heap's reservation: a run of contiguous mappings, the first anonymous, spanning
    exactly one of ``sizes`` (MaxHeapSize). HotSpot reserves the heap whole (PROT_NONE) and
    commits parts of it read-write; G1 maps the CDS archive heap regions (classes.jsa) inside
    it. Among several runs, the one whose read-write part is closest to ``committed`` wins."""
    ordered = sorted(maps, key=lambda m: m.start)
    best = None
    for i, first in enumerate(ordered):
        if not first.anonymous or first.path:
            continue
        for size in sizes:
            if size <= 0:
                continue
            end = first.start + size
            pos = first.start
            writable = 0
            j = i
            while j < len(ordered) and ordered[j].start == pos and pos < end:
                m = ordered[j]
                if "w" in m.perms:
                    writable += min(m.end, end) - m.start
                pos = m.end
                j += 1
            if pos != end and not (pos > end and ordered[j - 1].anonymous and not ordered[j - 1].path):
                continue
            score = abs(writable - committed) if committed is not None else 0
            if best is None or score < best[0]:
                best = (score, first.start, end)
    return (best[1], best[2]) if best else None


def _code_cache(maps: list[Mapping], target: Target) -> tuple[list[Region], int | None]:
    """HotSpot's code heaps: anonymous rwx mappings with their PROT_NONE reserve, one run each."""
    ordered = sorted(maps, key=lambda m: m.start)
    regions = []
    i = 0
    while i < len(ordered):
        m = ordered[i]
        if m.anonymous and not m.path and m.perms.startswith("rwx"):
            start, pos = m.start, m.end
            j = i + 1
            while j < len(ordered) and ordered[j].start == pos and ordered[j].anonymous and not ordered[j].path \
                    and ordered[j].perms in ("rwxp", "---p"):
                pos = ordered[j].end
                j += 1
            regions.append(Region("code_cache", "code cache", start, pos - start, target.rss_of(start, pos),
                                  "anonymous rwx mappings and their PROT_NONE reserve (HotSpot's code heaps)"))
            i = j
            continue
        i += 1
    if not regions:
        return [], None
    rss = [r.rss_bytes for r in regions]
    return regions, None if any(v is None for v in rss) else sum(rss)


def _range_rss(target: Target, start: int, end: int) -> int | None:
    """Resident bytes of [start, end): smaps for mappings inside it, pagemap for a mapping that
    crosses an end (the kernel merged the heap's reserve with a neighbour)."""
    total = target.rss_of(start, end)
    if total is None:
        return None
    partial = [m for m in target.maps if m.start < end and m.end > start and not (start <= m.start and m.end <= end)]
    if partial:
        try:
            with TargetMemory(target.pid, target.root) as mem:
                for m in partial:
                    lo, hi = max(m.start, start), min(m.end, end)
                    total += mem.resident_bytes(lo, hi)
        except (ProcfsError, OSError):
            return None
    return total


def jvm_report(target: Target) -> RuntimeReport:
    perf, source, why = read_perfdata(target)
    if perf is None:
        return RuntimeReport("jvm", None, "unavailable", why, source or None,
                             unknowns=(Unknown("heap, metaspace, GC", why or "no PerfData"),))
    if not perf.accessible:
        return RuntimeReport("jvm", None, "unavailable", "the JVM has not finished starting (PerfData not accessible yet)",
                             source)
    c = perf.long
    version = perf.string("java.property.java.vm.version") or perf.string("java.property.java.version")
    gc_name = perf.string("sun.gc.policy.name")
    figures: list[Figure] = []
    unknowns: list[Unknown] = []
    src = "hsperfdata "

    def fig(key, label, value, unit="bytes", source=None, reason=None):
        figures.append(Figure(key, label, value, unit, source or src, reason))

    gens = []
    for g in range(4):
        name = perf.string(f"sun.gc.generation.{g}.name")
        if name is None:
            break
        spaces = []
        for s in range(min(c(f"sun.gc.generation.{g}.spaces") or 0, 8)):
            sname = perf.string(f"sun.gc.generation.{g}.space.{s}.name") or str(s)
            spaces.append((s, sname, c(f"sun.gc.generation.{g}.space.{s}.used"),
                           _page_floor(c(f"sun.gc.generation.{g}.space.{s}.capacity"))))
        gens.append((g, name, spaces, _page_floor(c(f"sun.gc.generation.{g}.capacity")),
                     _page_floor(c(f"sun.gc.generation.{g}.maxCapacity"))))
    used_parts = [u for _, _, spaces, _, _ in gens for _, _, u, _ in spaces]
    heap_used = sum(used_parts) if used_parts and None not in used_parts else None
    caps = [cap for *_, cap, _ in gens]
    heap_committed = sum(caps) if caps and None not in caps else None
    maxes = [m for *_, m in gens if m is not None]
    # Serial and Parallel split the reservation between the generations; G1, Shenandoah and Z
    # report the whole heap's maximum for each.
    size_guesses = sorted({sum(maxes), max(maxes)} if maxes else set())
    fig("heap_used", "Java heap used", heap_used, source=src + "sun.gc.generation.*.space.*.used")
    fig("heap_committed", "Java heap committed", heap_committed, source=src + "sun.gc.generation.*.capacity")
    for g, name, spaces, cap, mx in gens:
        gused = [u for _, _, u, _ in spaces]
        fig(f"gen{g}_used", f"{name} generation used", sum(gused) if None not in gused else None,
            source=src + f"sun.gc.generation.{g}.space.*.used")
        fig(f"gen{g}_committed", f"{name} generation committed", cap, source=src + f"sun.gc.generation.{g}.capacity")
        for s, sname, u, _cap in spaces:
            fig(f"gen{g}_space{s}_used", f"{name}: {sname} used", u, source=src + f"sun.gc.generation.{g}.space.{s}.used")
    heap_range = find_heap_range(target.maps, size_guesses, heap_committed) if size_guesses else None
    heap_max = (heap_range[1] - heap_range[0]) if heap_range else (max(maxes) if gc_name == "GarbageFirst" and maxes else None)
    fig("heap_max", "Java heap max (-Xmx)", heap_max,
        source="the heap's reservation in /proc/PID/maps, sized by " + src + "sun.gc.generation.*.maxCapacity",
        reason=None if heap_max is not None else "the reservation was not found in the maps")
    regions: list[Region] = []
    heap_rss = None
    if heap_range:
        heap_rss = _range_rss(target, *heap_range)
        regions.append(Region("java_heap", "Java heap", heap_range[0], heap_range[1] - heap_range[0], heap_rss,
                              "the mappings spanning MaxHeapSize (hsperfdata) in /proc/PID/maps"))
    else:
        unknowns.append(Unknown("Java heap address range",
                                "no run of mappings in /proc/PID/maps spans the heap's maximum size"))
    fig("heap_resident", "Java heap resident", heap_rss, source="smaps Rss of the heap's mappings",
        reason=None if heap_rss is not None else "the heap's mappings were not found")
    meta_used, meta_committed = c("sun.gc.metaspace.used"), c("sun.gc.metaspace.capacity")
    fig("metaspace_used", "metaspace used", meta_used, source=src + "sun.gc.metaspace.used (updated at each GC)")
    fig("metaspace_committed", "metaspace committed", meta_committed,
        source=src + "sun.gc.metaspace.capacity (class space included; updated at each GC)")
    fig("metaspace_reserved", "metaspace reserved", c("sun.gc.metaspace.maxCapacity"),
        source=src + "sun.gc.metaspace.maxCapacity")
    fig("class_space_used", "compressed class space used", c("sun.gc.compressedclassspace.used"),
        source=src + "sun.gc.compressedclassspace.used")
    fig("class_space_committed", "compressed class space committed", c("sun.gc.compressedclassspace.capacity"),
        source=src + "sun.gc.compressedclassspace.capacity")
    code_regions, code_rss = _code_cache(target.maps, target)
    regions += code_regions
    fig("code_cache_resident", "code cache resident", code_rss,
        source="smaps Rss of the anonymous rwx mappings (HotSpot's code heaps); PerfData has no code cache counter",
        reason=None if code_rss is not None else "no rwx anonymous mapping found")
    fig("code_cache_reserved", "code cache reserved", sum(r.size for r in code_regions) if code_regions else None,
        source="the code heaps' reservation in /proc/PID/maps (ReservedCodeCacheSize)")
    freq = c("sun.os.hrt.frequency") or None
    gc_seconds = 0.0
    for k in range(8):
        cname = perf.string(f"sun.gc.collector.{k}.name")
        if cname is None:
            break
        count, ticks = c(f"sun.gc.collector.{k}.invocations"), c(f"sun.gc.collector.{k}.time")
        seconds = ticks / freq if ticks is not None and freq else None
        fig(f"gc{k}_count", f"{cname}: collections", count, "count", src + f"sun.gc.collector.{k}.invocations")
        fig(f"gc{k}_seconds", f"{cname}: time", seconds, "seconds",
            src + f"sun.gc.collector.{k}.time / sun.os.hrt.frequency")
        gc_seconds += seconds or 0.0
    begin_ms = c("sun.rt.createVmBeginTime")
    uptime = time.time() - begin_ms / 1000 if begin_ms else None
    fig("uptime", "JVM uptime", round(uptime, 1) if uptime is not None and uptime >= 0 else None, "seconds",
        src + "sun.rt.createVmBeginTime")
    fig("gc_policy", "garbage collector", gc_name, "text", src + "sun.gc.policy.name")
    native = None
    if target.rss_bytes is not None and heap_rss is not None and meta_committed is not None and code_rss is not None:
        native = max(0, target.rss_bytes - heap_rss - meta_committed - code_rss)
    fig("native", "native (RSS - heap - metaspace - code)", native,
        source="VmRSS minus the three above (metaspace counted at its committed size)",
        reason=None if native is not None else "one of RSS, heap, metaspace or code cache is unknown")
    unknowns.append(Unknown("where metaspace lies", "PerfData gives its committed size, not its address; "
                            "it is counted at its committed size"))
    unknowns.append(Unknown("native memory by category (threads, GC structures, direct buffers)",
                            "only Native Memory Tracking knows (-XX:NativeMemoryTracking=summary, "
                            "then `jcmd PID VM.native_memory summary`); memtop does not attach to the JVM"))
    findings = _advice(target.pid, gc_name, heap_used, heap_committed, heap_rss, heap_max, meta_committed,
                       native, gc_seconds, uptime, perf)
    status = "ok" if heap_range and heap_used is not None else "partial"
    return RuntimeReport("jvm", version, status, None, source, tuple(figures), tuple(regions), tuple(unknowns),
                         tuple(findings))


def _advice(pid, gc_name, used, committed, resident, heap_max, meta, native, gc_seconds, uptime, perf) -> list[Finding]:
    out = []
    c = perf.long
    if used is not None and committed is not None and committed - used >= max(128 * MiB, used):
        held = resident if resident is not None else committed
        if gc_name == "GarbageFirst":
            step = ("G1 gives committed memory back only after a GC that finds it free: "
                    "-XX:G1PeriodicGCInterval=60000 (JDK 12+, JEP 346) runs one when the JVM is idle; "
                    "-XX:MaxHeapFreeRatio=30 -XX:MinHeapFreeRatio=10 make it shrink harder; or lower -Xmx.")
        elif gc_name in ("Shenandoah", "Z"):
            step = "Shenandoah and ZGC uncommit by themselves after -XX:ShenandoahUncommitDelay / -XX:ZUncommitDelay."
        else:
            step = ("Parallel and Serial shrink only at a full GC: -XX:MaxHeapFreeRatio=30 -XX:MinHeapFreeRatio=10, "
                    "or G1 with -XX:G1PeriodicGCInterval, or a lower -Xmx.")
        out.append(Finding(Severity.WARNING if held - used >= 256 * MiB else Severity.INFO,
                           f"The Java heap has {fmt_bytes(committed)} committed ({fmt_bytes(resident)} resident) for "
                           f"{fmt_bytes(used)} used: it grew for a spike and keeps the room.", step))
    if heap_max is not None and used is not None and used >= 0.85 * heap_max:
        out.append(Finding(Severity.WARNING, f"The Java heap is {used / heap_max:.0%} full ({fmt_bytes(used)} of "
                                             f"-Xmx {fmt_bytes(heap_max)}): GCs come often and an OutOfMemoryError is near.",
                           "Raise -Xmx, or find what holds the objects (`jcmd PID GC.class_histogram`)."))
    if uptime and uptime > 30 and gc_seconds / uptime >= 0.05:
        out.append(Finding(Severity.WARNING, f"GC took {gc_seconds:.1f} s of {uptime:.0f} s ({gc_seconds / uptime:.0%}).",
                           "The heap is too small for the live set or the allocation rate: raise -Xmx or cut allocation."))
    full = None
    for k in range(8):
        name = perf.string(f"sun.gc.collector.{k}.name") or ""
        if "full" in name.lower():
            full = c(f"sun.gc.collector.{k}.invocations")
    if gc_name == "GarbageFirst" and full:
        out.append(Finding(Severity.INFO, f"G1 ran {counted(full, 'full GC')}: concurrent marking did not keep up, or "
                                          "humongous objects filled the heap.",
                           "`-Xlog:gc*` says why; -XX:G1HeapRegionSize larger if humongous allocations cause them."))
    if meta is not None and meta >= 256 * MiB:
        out.append(Finding(Severity.WARNING, f"Metaspace holds {fmt_bytes(meta)}: many classes, or class loaders "
                                             "that are never collected (redeploys, generated proxies).",
                           "`jcmd PID VM.metaspace` and `jcmd PID GC.class_stats`; -XX:MaxMetaspaceSize caps it."))
    if native is not None and resident is not None and native >= max(256 * MiB, resident):
        out.append(Finding(Severity.WARNING, f"{fmt_bytes(native)} of RSS is native memory outside the Java heap "
                                             f"({fmt_bytes(resident)} resident): thread stacks, GC structures, direct "
                                             "buffers, malloc by JNI code.",
                           "Start with -XX:NativeMemoryTracking=summary and run `jcmd PID VM.native_memory summary`; "
                           "MALLOC_ARENA_MAX=2 limits glibc's arenas; -XX:MaxDirectMemorySize caps NIO buffers."))
    return out
