"""From RSS down: who holds each byte of one process (the Layers tab and ``memtop explain``).

The kernel's split (file / anonymous / shmem) is /proc/PID/status (RssFile, RssAnon, RssShmem);
PSS, Private_Dirty, LazyFree and Swap are smaps_rollup. The anonymous part is split per mapping
with /proc/PID/smaps ``Anonymous:``: the brk heap ([heap]), thread-arena heaps (from the heap
walk), mmapped malloc chunks (mappings made of chunks with IS_MMAPPED set, malloc.c
``sysmalloc_mmap``), the runtime's regions, thread stacks ([stack] and the mappings holding each
thread's stack pointer, /proc/PID/task/TID/syscall), and the rest. The heap's resident pages are
split by the walk into top, free chunks kept by glibc, and in use.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from memtop.format import MiB, fmt_bytes, fmt_percent
from memtop.heap import analyze
from memtop.heap.glibc import HEAP_MAX_SIZE
from memtop.heap.memory import Mapping, TargetMemory, parse_maps_file
from memtop.model.findings import Finding, Severity
from memtop.model.heap import HeapReport, Layer, LayerReport, split_unknown_reason
from memtop.procfs import PAGE_SIZE, AccessDenied, NoSuchProcess, ProcfsError, read_bytes
from memtop.procfs.process import read_cmdline, read_rollup, read_stat, read_status

_SMAPS_KEYS = {"Rss", "Pss", "Anonymous", "LazyFree", "Swap", "Private_Dirty"}


def parse_smaps_mappings(text: str) -> list[tuple[Mapping, dict[str, int]]]:
    """Parse /proc/PID/smaps into (mapping, {field: bytes}) per mapping (man 5 proc_pid_smaps)."""
    out: list[tuple[Mapping, dict[str, int]]] = []
    current: dict[str, int] | None = None
    for line in text.splitlines():
        if not line:
            continue
        head = line.split(None, 1)[0]
        if "-" in head and not head.endswith(":"):
            mapping = parse_maps_file(line)
            if mapping:
                current = {}
                out.append((mapping[0], current))
            continue
        if current is None:
            continue
        key, sep, rest = line.partition(":")
        if sep and key in _SMAPS_KEYS:
            parts = rest.split()
            if parts:
                try:
                    current[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
                except ValueError:
                    pass
    return out


def thread_stack_pointers(pid: int, root: Path) -> list[int]:
    """Each thread's stack pointer from /proc/PID/task/TID/syscall ("nr a1..a6 sp pc", or
    "-1 sp pc" outside a syscall; "running" gives none). Needs ptrace access (root)."""
    sps = []
    try:
        tids = [t for t in (Path(root) / str(pid) / "task").iterdir()]
    except OSError:
        return sps
    for tid in tids:
        try:
            fields = (tid / "syscall").read_text().split()
        except OSError:
            continue
        if len(fields) >= 3 and fields[0] != "running":
            try:
                sps.append(int(fields[-2], 16))
            except ValueError:
                pass
    return sps


MAX_SCAN_PAGES = 50_000


def mmapped_chunk_ranges(mem: TargetMemory, mappings: list[Mapping]) -> tuple[list[tuple[int, int, int]], bool]:
    """(start, end, mapping start) of mmapped malloc chunks inside anonymous mappings, and
    whether the scan was complete.

    An mmapped chunk starts on a page boundary (plus an alignment offset kept in prev_size)
    with IS_MMAPPED (2) in its size, and its length with that offset is a multiple of the page
    size (malloc.c sysmalloc_mmap). The kernel merges neighbouring anonymous mappings, so each
    present page start is checked, and a chunk found is skipped over whole. The caller compares
    the total with mp_.mmapped_mem, which says whether all were found.
    """
    found = []
    scanned = 0
    for m in mappings:
        if not (m.anonymous and not m.path and m.perms.startswith("rw")):
            continue
        pagemap = mem.pagemap(m.start, m.end)
        mask = pagemap.present_mask()
        p = m.start
        while p < m.end:
            index = (p - m.start) // PAGE_SIZE
            if not mask[index]:
                nxt = mask.find(1, index)
                if nxt == -1:
                    break
                p = m.start + nxt * PAGE_SIZE
                continue
            scanned += 1
            if scanned > MAX_SCAN_PAGES:
                return found, False
            try:
                prev_size, size = struct.unpack("<QQ", mem.read_direct(p, 16))
            except (ProcfsError, OSError, ValueError):
                p += PAGE_SIZE
                continue
            chunk_size = size & ~7
            if prev_size & 15 or prev_size >= PAGE_SIZE or not size & 2 or size & 4 or chunk_size == 0 \
                    or (prev_size + chunk_size) % PAGE_SIZE or p + prev_size + chunk_size > m.end:
                p += PAGE_SIZE
                continue
            found.append((p, p + prev_size + chunk_size, m.start))
            p += prev_size + chunk_size
    return found, True


def explain(pid: int, root: Path = Path("/proc"), *, heap: HeapReport | None = None, symbols: str = "auto",
            progress=None, cancel=None, with_runtime: bool = True, walks=None) -> LayerReport:
    """Build the layered report of one process. Never raises for a vanished or forbidden process.

    ``with_runtime``: also read the runtime's own figures (memtop.runtime: hsperfdata, obmalloc,
    the Go runtime's globals; an application's regions)."""
    root = Path(root)
    now = time.monotonic()
    identity = None
    comm, cmdline = "?", ""
    kernel_reason = None
    kernel_thread = False
    status = rollup = None
    smaps: list[tuple[Mapping, dict[str, int]]] = []
    try:
        stat = read_stat(pid, root)
        comm = stat.comm
        from memtop.model.process import ProcessIdentity

        identity = ProcessIdentity(pid, stat.start_ticks)
        kernel_thread = stat.is_kernel_thread
        cmdline = read_cmdline(pid, root)
        status = read_status(pid, root)
        rollup = read_rollup(pid, root)
        smaps = parse_smaps_mappings(read_bytes(f"{root}/{pid}/smaps").decode("utf-8", "surrogateescape"))
    except NoSuchProcess:
        kernel_reason = f"process {pid} does not exist (or exited)"
    except AccessDenied as e:
        kernel_reason = e.reason
    except ProcfsError as e:
        kernel_reason = str(e)
    if heap is None:
        heap = analyze(pid, root, symbols=symbols, progress=progress, cancel=cancel, walks=walks)
    runtime = heap.runtime
    runtime_report = _runtime_report(pid, root, smaps, status, runtime) if smaps and with_runtime else None
    anon_split, runtime_split = _anon_split(pid, root, smaps, heap, runtime, runtime_report) if smaps else ((), ())
    heap_split = _heap_split(heap, anon_split)
    if runtime_report is not None and runtime_report.kind == "jvm":
        runtime_report = _jvm_native_split(runtime_report, anon_split, status)
    # A kernel thread has no user address space (no mm): its RSS is 0, as Processes shows it,
    # not unknown (status has no Vm* lines and smaps is empty for it).
    zero = 0 if kernel_thread and status is not None else None
    report = LayerReport(
        identity=identity or heap.identity,
        comm=comm,
        cmdline=cmdline,
        rss_bytes=status.rss if status and status.rss is not None else zero,
        pss_bytes=rollup.pss if rollup and rollup.pss is not None else zero,
        private_dirty_bytes=rollup.private_dirty if rollup and rollup.private_dirty is not None else zero,
        lazyfree_bytes=rollup.lazyfree if rollup and rollup.lazyfree is not None else zero,
        swap_bytes=status.swap if status and status.swap is not None else zero,
        file_bytes=status.rss_file if status and status.rss_file is not None else zero,
        anon_bytes=status.rss_anon if status and status.rss_anon is not None else zero,
        shmem_bytes=status.rss_shmem if status and status.rss_shmem is not None else zero,
        anon_split=anon_split,
        heap_split=heap_split,
        heap=heap,
        runtime=runtime,
        kernel_reason=kernel_reason,
        made_at=now,
        runtime_report=runtime_report,
        runtime_split=runtime_split,
    )
    return _with_findings(report)


def _jvm_native_split(rr, anon_split: tuple[Layer, ...], status):
    """The JVM's native memory (RSS - heap - metaspace - code) split by what the other layers
    know: glibc's heaps (the walk), thread stacks, file-backed pages, and the rest."""
    from dataclasses import replace

    from memtop.model.runtime import Figure

    native = rr.value("native")
    if native is None:
        return rr
    by_key = {layer.key: layer.bytes for layer in anon_split}
    malloc_parts = [by_key.get(k) for k in ("brk", "thread_heaps", "mmapped")]
    malloc = sum(malloc_parts) if None not in malloc_parts else None
    stacks = by_key.get("stacks")
    files = status.rss_file if status is not None else None
    parts = [malloc, stacks, files]
    rest = native - sum(parts) if None not in parts else None
    extra = (
        Figure("native_malloc", "  native: glibc malloc heaps", malloc, "bytes",
               "the Layers' brk heap + thread-arena heaps + mmapped chunks (heap walk, smaps)",
               None if malloc is not None else "needs a valid glibc heap walk"),
        Figure("native_stacks", "  native: thread stacks", stacks, "bytes", "the Layers' thread stacks"),
        Figure("native_files", "  native: file-backed (libjvm.so, CDS)", files, "bytes", "RssFile"),
        Figure("native_other", "  native: other (GC, NIO, JNI malloc...)",
               rest, "bytes", "native minus the three above",
               None if rest is not None else "one of the parts is unknown"),
    )
    figures = list(rr.figures)
    at = next(i for i, f in enumerate(figures) if f.key == "native") + 1
    return replace(rr, figures=tuple(figures[:at]) + extra + tuple(figures[at:]))


def _runtime_report(pid: int, root: Path, smaps, status, runtime):
    """The runtime's (or application's) own figures (memtop.runtime); None when there is none."""
    from memtop.runtime import make_target, read_runtime

    target = make_target(pid, root, [m for m, _ in smaps], {m.start: fields for m, fields in smaps},
                         status.rss if status is not None else None,
                         runtime.kind if runtime is not None else "none", runtime.version if runtime is not None else None)
    try:
        return read_runtime(target)
    except (ProcfsError, OSError) as e:  # a reader must not take the whole report down
        from memtop.model.runtime import RuntimeReport

        return RuntimeReport(target.runtime_kind, None, "unavailable", str(e), None)


def _anon_split(pid: int, root: Path, smaps, heap: HeapReport, runtime,
                runtime_report=None) -> tuple[tuple[Layer, ...], tuple[Layer, ...]]:
    anon_of = {m.start: fields.get("Anonymous", 0) for m, fields in smaps}
    mappings = [m for m, _ in smaps]
    used: set[int] = set()

    def take(starts) -> int:
        total = 0
        for start in starts:
            if start not in used and start in anon_of:
                used.add(start)
                total += anon_of[start]
        return total

    brk = take(m.start for m in mappings if m.path == "[heap]")
    thread_heaps: set[int] = set()
    for arena in (heap.arenas if heap and heap.valid else ()):
        if arena.is_main:
            continue
        for start, size in arena.heaps:
            thread_heaps.update(m.start for m in mappings if m.start < start + size and m.end > start)
    thread = take(thread_heaps) if heap and heap.valid else None
    thread_source = "smaps Anonymous of the heaps found by the walk"
    if thread is None and heap is not None and heap.allocator_kind == "glibc":
        # Without a valid walk, thread-arena heaps are still recognisable from the maps: glibc
        # maps each one HEAP_MAX_SIZE-aligned (malloc/arena.c new_heap) and makes only its used
        # part read-write, so it is an anonymous rw mapping starting on a 64 MiB boundary and
        # ending on a 64 MiB boundary or followed by the PROT_NONE rest of its reservation.
        # Heaps of one arena lie next to each other and the kernel merges their rw parts into
        # one mapping, so it may span several 64 MiB blocks.
        by_start = {m.start: m for m in mappings}
        for m in mappings:
            if not (m.anonymous and not m.path and m.perms.startswith("rw")) or m.start % HEAP_MAX_SIZE:
                continue
            rest = by_start.get(m.end)
            if m.end % HEAP_MAX_SIZE == 0 or (rest is not None and rest.perms.startswith("---")
                                               and rest.end % HEAP_MAX_SIZE == 0
                                               and rest.end - m.end < HEAP_MAX_SIZE):
                thread_heaps.add(m.start)
        thread = take(thread_heaps)
        thread_source = "smaps Anonymous of 64 MiB-aligned heap mappings (maps; the walk is not valid)"
    mmapped = None
    mmapped_note = None
    if heap is not None and heap.allocator_kind == "glibc" and heap.status not in ("denied", "gone"):
        try:
            with TargetMemory(pid, root) as mem:
                candidates = [m for m in mappings if m.start not in used]
                mmapped = 0
                ranges, complete = mmapped_chunk_ranges(mem, candidates)
                for start, end, mapping_start in ranges:
                    resident = mem.resident_bytes(start, end)
                    mmapped += resident
                    if mapping_start in anon_of:  # the rest of the mapping stays "other"
                        anon_of[mapping_start] = max(0, anon_of[mapping_start] - resident)
                found_virtual = sum(end - start for start, end, _ in ranges)
                if heap.mmapped_bytes is not None and found_virtual != heap.mmapped_bytes:
                    mmapped_note = (f"found {fmt_bytes(found_virtual)} of the {fmt_bytes(heap.mmapped_bytes)} that mp_ counts"
                                    + ("" if complete else f" (scan stopped after {MAX_SCAN_PAGES} pages)"))
        except (ProcfsError, OSError) as e:
            mmapped_note = str(e)
    elif heap is not None and heap.allocator_kind != "glibc":
        mmapped_note = f"not glibc ({heap.allocator_kind})"
    runtime_bytes = None
    runtime_split: list[Layer] = []
    # Regions of private memory only: a shared segment (postgres) is shmem, not anonymous.
    report_regions = tuple(r for r in (runtime_report.regions if runtime_report is not None else ())
                           if any(m.perms.endswith("p") and m.start < r.end and m.end > r.start for m in mappings))
    if report_regions:
        # The runtime's own regions (the Java heap from hsperfdata, obmalloc's arenas, the Go
        # heap...): every mapping inside each, counted once, in the order the reader gave.
        runtime_bytes = 0
        mem = None
        for region in report_regions:
            part = take(m.start for m in mappings if region.start <= m.start and m.end <= region.end)
            # A region inside a mapping the kernel merged with its neighbours (obmalloc's
            # arenas are plain 1 MiB mmaps): its own resident pages (pagemap), taken out of
            # that mapping's count.
            for m in mappings:
                if m.start in used or not (m.start < region.end and m.end > region.start) or m.start not in anon_of:
                    continue
                lo, hi = max(m.start, region.start), min(m.end, region.end)
                lo, hi = lo // PAGE_SIZE * PAGE_SIZE, -(-hi // PAGE_SIZE) * PAGE_SIZE
                try:
                    mem = mem or TargetMemory(pid, root)
                    resident = min(anon_of[m.start], mem.resident_bytes(lo, hi))
                except (ProcfsError, OSError):
                    continue
                anon_of[m.start] -= resident
                part += resident
            runtime_bytes += part
            runtime_split.append(Layer(region.key, region.label, part, f"smaps Anonymous; {region.source}",
                                       parent="runtime"))
        if mem is not None:
            mem.close()
        merged: dict[str, Layer] = {}
        for layer in runtime_split:  # several regions of one kind (code heaps, arenas) as one row
            seen = merged.get(layer.key)
            merged[layer.key] = layer if seen is None else Layer(layer.key, layer.label, (seen.bytes or 0) + (layer.bytes or 0),
                                                                 layer.source, parent="runtime")
        runtime_split = list(merged.values())
    elif runtime is not None and runtime.kind != "none":
        runtime_bytes = take(r.start for r in runtime.regions) if runtime.regions else 0
    stack_starts = {m.start for m in mappings if m.path == "[stack]"}
    for sp in thread_stack_pointers(pid, root):
        for m in mappings:
            if m.start <= sp < m.end:
                stack_starts.add(m.start)
    stacks = take(stack_starts)
    other = sum(v for start, v in anon_of.items() if start not in used)
    allocator_layer = _allocator_layer(heap)
    if allocator_layer is not None and allocator_layer.bytes:
        other = max(0, other - allocator_layer.bytes)  # its mappings are among "other"; pagemap counted them
    layers = [
        Layer("brk", "brk heap [heap]", brk, "smaps Anonymous of [heap]"),
        Layer("thread_heaps", "thread-arena heaps", thread, thread_source,
              None if thread is not None else "needs a valid heap walk"),
        Layer("mmapped", "mmapped malloc chunks", mmapped, "resident pages (pagemap) of IS_MMAPPED chunks",
              mmapped_note),
    ]
    if allocator_layer is not None:
        layers = layers[:1]  # glibc's thread arenas and mmapped chunks do not exist under another malloc
    if report_regions:
        labels = ", ".join(dict.fromkeys(r.label for r in report_regions))
        layers.append(Layer("runtime", f"{runtime_report.kind} {'regions' if runtime_report.is_application else 'runtime'}",
                            runtime_bytes, "smaps Anonymous of the regions the runtime's own figures locate", labels))
    elif runtime is not None and runtime.kind != "none":
        why = runtime_report.reason if runtime_report is not None and runtime_report.reason else None
        layers.append(Layer("runtime", f"{runtime.kind} runtime regions", runtime_bytes,
                            "smaps Anonymous of the runtime's own mappings",
                            None if runtime.regions else (why or "not separable from other anonymous memory")))
    if allocator_layer is not None:
        layers.append(allocator_layer)
    layers += [
        Layer("stacks", "thread stacks", stacks, "[stack] and mappings holding a thread's SP (task/TID/syscall)"),
        Layer("other", "other anonymous", other, "smaps Anonymous of the remaining mappings"),
    ]
    return tuple(layers), tuple(runtime_split)


def _allocator_layer(heap: HeapReport | None) -> Layer | None:
    """The resident memory of a non-glibc allocator (its extents, segments or groups), when its
    reader knows it (memtop.heap.allocators)."""
    other = heap.allocator if heap is not None else None
    if other is None or not other.valid:
        return None
    return Layer("allocator_heap", f"{other.kind} heap", other.resident_bytes,
                 other.source_of("resident_bytes") or "", other.unknown_reason("resident_bytes"))


def _heap_split(heap: HeapReport | None, anon_split: tuple[Layer, ...] = ()) -> tuple[Layer, ...]:
    """Resident pages of the heaps, per place: the main arena's under the brk heap layer, the
    thread arenas' under the thread-arena heaps layer. Each is split into top, interior pages of
    free chunks, and the rest (in use), so that the three add up to their parent exactly."""
    other = heap.allocator if heap is not None else None
    if other is not None and other.valid and other.resident_bytes is not None and other.kind in ("jemalloc", "mimalloc"):
        # In use / free kept, as for glibc's heaps: jemalloc's dirty+muzzy extents' resident pages,
        # mimalloc's free spans and empty pages; the rest of the resident pages hold allocations.
        free = min(other.resident_bytes, other.free_kept_bytes if other.kind == "mimalloc" else
                   (other.detail("dirty_resident_bytes") or 0) + (other.detail("muzzy_resident_bytes") or 0))
        return (Layer("in_use", "pages in use", other.resident_bytes - free, "resident pages not in free extents or spans",
                      parent="allocator_heap"),
                Layer("free", "free pages (kept)", free, other.source_of("free_kept_bytes") or "", parent="allocator_heap"))
    if heap is None or not heap.valid or not heap.arenas:
        return ()
    parents = {layer.key: layer.bytes for layer in anon_split}
    out: list[Layer] = []
    for parent, arenas in (("brk", [a for a in heap.arenas if a.is_main]),
                           ("thread_heaps", [a for a in heap.arenas if not a.is_main])):
        if not arenas:
            continue
        # The parent is smaps Anonymous of the same mappings; pagemap's count may differ by a
        # page or two taken between the reads, so the parent wins and top/free are capped by it.
        total = parents.get(parent)
        if total is None:
            total = sum(a.resident_bytes or 0 for a in arenas)
        top = min(total, sum(a.top_resident_bytes or 0 for a in arenas))
        free = min(total - top, sum(a.free_resident_bytes or 0 for a in arenas))
        out += [
            Layer("in_use", "pages in use", total - top - free, "resident heap pages not in top or inside free chunks",
                  parent=parent),
            Layer("free", "free pages (kept)", free, "resident whole pages inside bin and fastbin chunks", parent=parent),
            Layer("top", "top", top, "resident pages of the top chunk" + ("s" if len(arenas) > 1 else ""),
                  parent=parent),
        ]
    return tuple(out)


def _with_findings(report: LayerReport) -> LayerReport:
    from dataclasses import replace

    return replace(report, findings=tuple(findings_for(report)))


def findings_for(report: LayerReport) -> list[Finding]:
    """Plain-words diagnoses with numbers and a next step."""
    out: list[Finding] = []
    heap = report.heap
    pid = report.identity.pid if report.identity else "PID"
    if report.kernel_reason:
        out.append(Finding(Severity.WARNING, f"Kernel figures unknown: {report.kernel_reason}."))
    if heap is not None and heap.status == "kernel-thread":
        out.append(Finding(Severity.INFO, "A kernel thread: it has no user-space memory (RSS 0), so no heap, runtime "
                                          "or arenas. What the kernel itself uses (slab caches, kernel stacks, page "
                                          "tables) is on the Kernel tab.", None))
    elif heap is not None and heap.status == "zombie":
        out.append(Finding(Severity.INFO, "A zombie: the process has exited and its memory is freed already; only its "
                                          "process-table entry is left until its parent reaps it (wait(2)).",
                           "Nothing to free here. If zombies pile up, their parent (PPid in /proc/PID/status) "
                           "does not reap its children."))
    if heap is not None and not heap.valid:
        if heap.allocator is not None:  # jemalloc, tcmalloc, mimalloc, musl: their own findings
            from memtop.heap.allocator_advice import allocator_findings

            out.extend(allocator_findings(heap.allocator, report.rss_bytes, pid))
        elif heap.status == "not-glibc":
            out.append(Finding(Severity.INFO, f"Allocator: {heap.allocator_kind}, not glibc ({heap.reason}). "
                                              "Its heap is not walked; the kernel and runtime layers still apply."))
        elif heap.status == "changing":
            age = f" The last valid walk is {heap.last_valid_age_s:.0f} s old." if heap.last_valid_age_s is not None else ""
            out.append(Finding(Severity.INFO, f"The heap is changing too fast to walk consistently ({heap.attempts} tries).{age}",
                               "Try again when the process is quieter."))
        elif heap.status == "self":
            out.append(Finding(Severity.INFO, "This is memtop itself. Its heap is not walked: the walk allocates "
                                              "while it reads, so memtop's own heap changes under it (never "
                                              "consistent) and each try grew memtop's RSS by the heap's size. "
                                              "The kernel's figures and the runtime's above are memtop's own.",
                               "To see memtop's heap, run `memtop explain PID` from another memtop."))
        elif heap.status in ("denied",):
            from memtop.procfs import denied_advice

            out.append(Finding(Severity.WARNING, f"The heap cannot be read: {heap.reason}.",
                               denied_advice(report.identity.pid if report.identity else None)))
        elif heap.status not in ("gone", "kernel-thread", "zombie"):
            out.append(Finding(Severity.WARNING, f"Heap not analysed ({heap.status}): {heap.reason}."))
    if heap is not None and heap.valid and heap.arenas:
        system = heap.system_bytes
        in_use = heap.in_use_bytes
        free = heap.free_bytes + heap.fastbin_bytes
        top = heap.top_bytes
        release = heap.trim_release_bytes or 0
        # What costs RAM is the resident part of the free memory (pagemap): after a trim, or
        # once the kernel reclaimed it, free chunks and top are address space only.
        free_res = sum(a.free_resident_bytes or 0 for a in heap.arenas)
        top_res = sum(a.top_resident_bytes or 0 for a in heap.arenas)
        if system and free_res + top_res > max(8 * MiB, in_use):
            out.append(Finding(
                Severity.WARNING if release >= MiB else Severity.INFO,
                f"glibc keeps {fmt_bytes(free_res + top_res)} of free memory resident ({fmt_bytes(free_res)} in free chunks, "
                f"{fmt_bytes(top_res)} in top) against {fmt_bytes(in_use)} in use, in a {fmt_bytes(system)} heap. "
                f"malloc_trim(0) would release {fmt_bytes(release)} of RSS now.",
                f"`memtop trim {pid}` releases it (it comes back if the program allocates again)."
                if release >= MiB else "A trim would give back little now: the resident free space is not in "
                "whole pages malloc_trim(0) releases (a thread arena's top is never trimmed)."))
        elif system and free + top > max(8 * MiB, in_use):
            out.append(Finding(
                Severity.INFO,
                f"glibc holds {fmt_bytes(free + top)} free against {fmt_bytes(in_use)} in use, but only "
                f"{fmt_bytes(free_res + top_res)} of it is resident: it costs address space, not RAM. "
                f"malloc_trim(0) would release {fmt_bytes(release)} of RSS now."))
        elif release >= 4 * MiB:
            out.append(Finding(Severity.INFO, f"malloc_trim(0) would release {fmt_bytes(release)} of RSS now.",
                               f"`memtop trim {pid}`"))
        if heap.fastbin_bytes >= 4 * MiB:
            main = heap.main_arena
            count = sum(a.fastbin_count for a in heap.arenas)
            out.append(Finding(Severity.INFO,
                               f"{fmt_bytes(heap.fastbin_bytes)} sit in {count:,} fastbin chunks never consolidated "
                               "(small frees are not merged until a large malloc, a big free or a trim).",
                               "malloc_trim(0) consolidates them first." if main else None))
        pin = heap.pin
        main = heap.main_arena
        # Only the resident part of the pinned run costs RAM (none of it after a trim).
        pinned_res = pin.pinned_resident_bytes if pin is not None and pin.pinned_resident_bytes is not None \
            else (pin.pinned_bytes if pin is not None else 0)
        if pin is not None and main is not None and pinned_res >= 4 * MiB:
            out.append(Finding(
                Severity.WARNING,
                f"A live {'tcache ' if pin.is_tcache else ''}chunk of {fmt_bytes(pin.size)} at 0x{pin.address:x} pins the "
                f"brk heap: {fmt_bytes(pin.pinned_bytes)} of free memory ({fmt_bytes(pinned_res)} resident) lies right "
                f"below it and cannot go back by shrinking brk (free() trims only the top).",
                "malloc_trim(0) still releases the whole free pages in the middle; the lasting fix is in "
                "the program (allocate long-lived objects early, or M_MMAP_THRESHOLD lower)."))
        threads = [a for a in heap.arenas if not a.is_main]
        thread_top_res = sum(a.top_resident_bytes or 0 for a in threads)
        if thread_top_res >= 16 * MiB:
            out.append(Finding(
                Severity.WARNING,
                f"Thread arenas keep {fmt_bytes(thread_top_res)} resident in their top chunks; malloc_trim(0) "
                "never releases a thread arena's top (glibc mtrim).",
                "MALLOC_ARENA_MAX=2 (fewer arenas), or a lower M_TRIM_THRESHOLD so free() shrinks those heaps."))
        if len(threads) >= 4:
            # What they cost in RAM is their resident pages (pagemap), not system_mem: a heap's
            # pages that were never touched, or were given back by malloc_trim, are mapped but
            # not resident. system_mem is said beside it, as what glibc has taken from the kernel.
            thread_system = sum(a.system_bytes for a in threads)
            thread_in_use = sum(a.in_use_bytes for a in threads)
            residents = [a.resident_bytes for a in threads]
            thread_resident = None if None in residents else sum(residents)
            held = thread_resident if thread_resident is not None else thread_system
            if held > 2 * thread_in_use and held >= 32 * MiB:
                holds = (f"{fmt_bytes(thread_resident)} resident ({fmt_bytes(thread_system)} obtained from the kernel)"
                         if thread_resident is not None else
                         f"{fmt_bytes(thread_system)} obtained from the kernel (resident unknown)")
                out.append(Finding(
                    Severity.WARNING,
                    f"{len(threads) + 1} arenas: the {len(threads)} thread arenas hold {holds} "
                    f"for {fmt_bytes(thread_in_use)} in use (arena fragmentation).",
                    "Set MALLOC_ARENA_MAX=2 (or a small multiple of the cores) in the program's environment."))
    if report.lazyfree_bytes:
        out.append(Finding(Severity.INFO,
                           f"{fmt_bytes(report.lazyfree_bytes)} of RSS is LazyFree (MADV_FREE): freed by the program, "
                           "counted in RSS until the kernel needs the memory.",
                           "Nothing to do; RSS overstates use. Go: GODEBUG=madvdontneed=1 returns it at once."))
    if report.swap_bytes:
        out.append(Finding(Severity.INFO, f"{fmt_bytes(report.swap_bytes)} of this process is in swap (not in RSS)."))
    runtime = report.runtime
    if runtime is not None and runtime.kind != "none":
        advice = runtime.advice
        if heap is not None and heap.allocator_kind != "glibc":  # glibc's arena cap means nothing to another malloc
            advice = tuple(a for a in advice if "MALLOC_ARENA_MAX" not in a)
        out.append(Finding(Severity.INFO, f"Runtime: {runtime.kind}{' ' + runtime.version if runtime.version else ''} "
                                          f"({runtime.evidence}). It manages part of the memory itself.",
                           " ".join(advice) or None))
    if report.runtime_report is not None:
        out.extend(report.runtime_report.findings)
    if not out and heap is not None and heap.valid:
        out.append(Finding(Severity.INFO, f"Nothing stands out: glibc's heap is {fmt_bytes(heap.system_bytes)} with "
                                          f"{fmt_bytes(heap.in_use_bytes)} in use."))
    return out
