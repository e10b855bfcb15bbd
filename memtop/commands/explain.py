"""``memtop explain PID [--json]``: the layered diagnosis of one process, in plain words."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from memtop.commands import CliError, pid_arg
from memtop.format import counted, fmt_bytes, fmt_duration
from memtop.text import json_dumps, printable

if TYPE_CHECKING:  # memtop.model.heap: 11 ms to import, and only the explain command needs it
    from memtop.model.heap import LayerReport

NAME = "explain"
HELP = "why is this process's memory where it is: kernel, allocator and runtime layers, in plain words"



def add_arguments(parser) -> None:
    parser.add_argument("pid", type=pid_arg, metavar="PID", help="the process to explain")
    parser.add_argument("--json", action="store_true", help="print JSON (schema in README)")
    parser.add_argument("--symbols", default="auto", choices=("auto", "debug", "heuristic"),
                        help="how to find glibc's main_arena: libc6-dbg symbols, heuristics, or auto (default)")
    parser.add_argument("--allocator-stats", action="store_true",
                        help="also ask jemalloc, tcmalloc or mimalloc itself (mallctl, MallocExtension, "
                             "mi_process_info) through gdb: stops the process briefly; asks first")
    parser.add_argument("--yes", "-y", action="store_true", help="with --allocator-stats: do not ask for confirmation")


def run(args) -> int:
    from memtop.collect.layers import explain  # imported here: `memtop --help` stays fast
    from memtop.output.layers import report_json

    root = Path(args.proc)
    if not os.path.isdir(root / str(args.pid)):
        raise CliError(f"no process with PID {args.pid}")
    from memtop.output.arenas import add_to_explain_json, explain_arenas

    report = explain(args.pid, root, symbols=args.symbols)
    if report.heap is not None and report.heap.status == "gone" and report.rss_bytes is None:
        raise CliError(f"process {args.pid} exited while being read")
    arenas = explain_arenas(args.pid, root, report.heap)  # the Arenas issue: cap, env, saving, census
    own = _own_stats(args, report, root) if getattr(args, "allocator_stats", False) else None
    if args.json:
        doc = add_to_explain_json(report_json(report), arenas)
        if own is not None:
            from memtop.output.allocator import own_stats_json

            doc["allocator"]["own_stats"] = own_stats_json(own) if not isinstance(own, str) else {"error": own}
        sys.stdout.write(json_dumps(doc, indent=1) + "\n")
    else:
        sys.stdout.write(render_text(report, arenas))
        if own is not None:
            from memtop.output.allocator import own_stats_lines

            other = report.heap.allocator if report.heap is not None else None
            text = own_stats_lines(own, other) if not isinstance(own, str) else [f"allocator stats: {printable(own)}"]
            sys.stdout.write("\n".join(text) + "\n")
    return 0


def _own_stats(args, report, root):
    """The allocator's own stats call through gdb (asks first): OwnStats, or a one-line reason."""
    from memtop.actions import unavailable_reason
    from memtop.heap import gdb
    from memtop.heap.allocator_calls import fetch_stats

    reason = unavailable_reason("trim", read_only=getattr(args, "read_only", False), target_uid=None)
    if reason:
        raise CliError(reason)
    if report.identity is None:
        raise CliError(f"process {args.pid} exited while being read")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("not a terminal: add --yes to call into the process without a confirmation")
        sys.stderr.write(f"Stop PID {args.pid} briefly and call its allocator's stats function through gdb? [y/N] ")
        sys.stderr.flush()
        try:
            answer = input()
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            return "not asked (declined)"
    import time

    from memtop.actions import audit

    started = time.monotonic()
    try:
        own = fetch_stats(report.identity, root=root)
        result = {"status": "ok", "stopped_ms": None if own.stopped_s is None else round(own.stopped_s * 1000, 1),
                  "values": dict(own.values)}
    except gdb.GdbError as e:
        own = str(e)
        result = {"status": "refused" if isinstance(e, gdb.Refused) else "failed", "message": own,
                  "stopped_ms": None if e.stopped_s is None else round(e.stopped_s * 1000, 1)}
    # It stops the process: logged like every action.
    warning = audit.log_action("allocator-stats", {"pid": report.identity.pid, "start_ticks": report.identity.start_ticks,
                                                   "comm": report.comm}, prediction=None, result=result,
                               duration_s=time.monotonic() - started)
    if warning:
        print(f"memtop: {printable(warning)}", file=sys.stderr)
    return own


def _row(label: str, value: int | None, note: str = "", indent: int = 2) -> str:
    return f"{' ' * indent}{label:<{34 - indent}} {fmt_bytes(value):>10}  {note}".rstrip()


def render_text(report: LayerReport, arenas=None) -> str:
    from memtop.model.heap import split_unknown_reason

    heap = report.heap
    ident = report.identity
    command = printable(" ".join(report.cmdline.split()) or f"[{report.comm}]", 110)
    lines = [f"PID {ident.pid if ident else '?'}  {command}", ""]
    lines.append("Kernel (/proc/PID/status, smaps_rollup)")
    if report.kernel_reason:
        lines.append(f"  ? {printable(report.kernel_reason)}")
    lines.append(_row("RSS", report.rss_bytes, f"PSS {fmt_bytes(report.pss_bytes)}, private dirty {fmt_bytes(report.private_dirty_bytes)}"))
    lines.append(_row("file-backed", report.file_bytes, indent=4))
    lines.append(_row("anonymous", report.anon_bytes, indent=4))
    unknown = split_unknown_reason(report)
    for layer in report.anon_split:
        lines.append(_row(printable(layer.label), layer.bytes, f"({printable(layer.note)})" if layer.note else "", indent=6))
        # The resident pages of that place, split (they add up to the row above).
        for part in report.heap_split:
            if part.parent == layer.key:
                lines.append(_row(printable(part.label), part.bytes, indent=8))
        if layer.key == "brk" and unknown:
            lines.append(_row("in use / free / top", None, f"({printable(unknown)})", indent=8))
    lines.append(_row("shmem", report.shmem_bytes, indent=4))
    lines.append(_row("LazyFree (in RSS, reclaimable)", report.lazyfree_bytes))
    lines.append(_row("Swap (not in RSS)", report.swap_bytes))
    lines.append("")
    if heap is None:
        lines.append("Allocator: unknown")
    elif heap.valid:
        lines.append(f"Allocator: glibc {heap.glibc_version}, heap walked read-only in {heap.walk_seconds:.2f} s "
                     f"({heap.chunks_walked:,} chunks, symbols: {heap.symbols})")
        if heap.static:
            lines.append(f"  static executable: main_arena from its own symbol table ({heap.version_basis or 'glibc'})")
        if heap.version_tested is False:
            lines.append(f"  note: glibc {heap.glibc_version}'s layout is from the glibc source; memtop was tested on 2.36")
        lines.append(_row("heap (system bytes)", heap.system_bytes, counted(len(heap.arenas), "arena")))
        lines.append(_row("in use", heap.in_use_bytes, f"incl. {fmt_bytes(heap.tcache_bytes)} in tcache", indent=4))
        lines.append(_row("free, kept by glibc", heap.free_bytes + heap.fastbin_bytes,
                          f"{fmt_bytes(heap.fastbin_bytes)} of it in fastbins", indent=4))
        lines.append(_row("top", heap.top_bytes, indent=4))
        lines.append(_row("mmapped chunks", heap.mmapped_bytes, (f"{counted(heap.mmapped_count, 'chunk')}, from mp_" if heap.mmapped_count is not None else "from mp_")))
        lines.append(_row("malloc_trim(0) would release", heap.trim_release_bytes, "of RSS, now"))
        if heap.pin is not None and heap.pin.pinned_bytes > 0:  # a pin with nothing free below it holds nothing
            pin = heap.pin
            lines.append(f"  pin: {'tcache ' if pin.is_tcache else ''}chunk of {fmt_bytes(pin.size)} at 0x{pin.address:x}, "
                         f"{fmt_bytes(pin.distance_below_top)} below the heap's end, {fmt_bytes(pin.pinned_bytes)} free right below it"
                         + (f" ({fmt_bytes(pin.pinned_resident_bytes)} resident)" if pin.pinned_resident_bytes is not None else ""))
        lines.append("")
        lines.append(f"  {'arena':<19} {'system':>9} {'in use':>9} {'free':>9} {'fastbin':>9} {'top':>9} {'resident':>9} {'trim':>9}")
        for a in heap.arenas:
            name = f"{'main ' if a.is_main else ''}0x{a.address:x}"
            lines.append(f"  {name:<19} {fmt_bytes(a.system_bytes):>9} {fmt_bytes(a.in_use_bytes):>9} "
                         f"{fmt_bytes(a.free_bytes):>9} {fmt_bytes(a.fastbin_bytes):>9} {fmt_bytes(a.top_bytes):>9} "
                         f"{fmt_bytes(a.resident_bytes):>9} {fmt_bytes(a.trim_release_bytes):>9}")
    elif heap.allocator is not None:  # jemalloc, tcmalloc, mimalloc, musl: their own readers
        from memtop.output.allocator import allocator_lines

        lines.extend(allocator_lines(heap.allocator))
    elif heap.status in ("kernel-thread", "zombie"):
        lines.append(f"Allocator: none ({printable(heap.reason)})")
    else:
        version = f" {heap.glibc_version}" if heap.glibc_version else ""
        lines.append(f"Allocator: {heap.allocator_kind}{version}: {heap.status}: {printable(heap.reason)}")
        last = heap.last_valid
        if last is not None:
            lines.append(f"  last valid walk ({fmt_duration(heap.last_valid_age_s)} ago): heap {fmt_bytes(last.system_bytes)}, "
                         f"in use {fmt_bytes(last.in_use_bytes)}, trim would release {fmt_bytes(last.trim_release_bytes)}")
    lines.append("")
    runtime = report.runtime
    if runtime is None and heap is not None and heap.status in ("kernel-thread", "zombie"):
        lines.append(f"Runtime: none ({'a kernel thread' if heap.status == 'kernel-thread' else 'a zombie'})")
    else:
        lines.append(f"Runtime: {runtime.kind if runtime else '?'}"
                     + (f" ({printable(runtime.evidence)})" if runtime and runtime.kind != "none" else ""))
    if report.runtime_report is not None:  # the runtime's or the application's own figures
        from memtop.output.runtime import runtime_lines

        if report.runtime_report.is_application:
            lines.append(f"Application: {report.runtime_report.kind}")
        lines.extend(runtime_lines(report.runtime_report, report.runtime_split))
    lines.append("")
    if arenas is not None and (heap is None or heap.allocator_kind in ("glibc", "static", "unknown")):
        # glibc's arenas, cap and MALLOC_ARENA_MAX: nothing of it applies to another allocator.
        from memtop.output.arenas import analysis_lines

        lines.append("Arenas (threads, cap, environment, MALLOC_ARENA_MAX=2 prediction, smaps census)")
        lines.extend("  " + printable(line) for line in analysis_lines(arenas))
        lines.append("")
    from memtop.output.arenas import merge_findings

    lines.append("Findings")
    findings = merge_findings(report.findings, arenas)
    if not findings:
        lines.append("  none: nothing stands out in the figures above")
    for f in findings:
        lines.append(f"  [{f.severity.value}] {printable(f.text)}")
        if f.next_step:
            lines.append(f"      next: {printable(f.next_step)}")
    return "\n".join(lines) + "\n"
