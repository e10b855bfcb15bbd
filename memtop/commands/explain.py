"""``memtop explain PID [--json]``: the layered diagnosis of one process, in plain words."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from memtop.commands import CliError, pid_arg
from memtop.format import fmt_bytes, fmt_duration
from memtop.model.heap import LayerReport
from memtop.text import json_dumps, printable

NAME = "explain"
HELP = "why is this process's memory where it is: kernel, allocator and runtime layers, in plain words"



def add_arguments(parser) -> None:
    parser.add_argument("pid", type=pid_arg, metavar="PID", help="the process to explain")
    parser.add_argument("--json", action="store_true", help="print JSON (schema in README)")
    parser.add_argument("--symbols", default="auto", choices=("auto", "debug", "heuristic"),
                        help="how to find glibc's main_arena: libc6-dbg symbols, heuristics, or auto (default)")


def run(args) -> int:
    from memtop.heap.layers import explain, report_json  # imported here: `memtop --help` stays fast

    root = Path(args.proc)
    if not os.path.isdir(root / str(args.pid)):
        raise CliError(f"no process with PID {args.pid}")
    from memtop.output.arenas import add_to_explain_json, explain_arenas

    report = explain(args.pid, root, symbols=args.symbols)
    if report.heap is not None and report.heap.status == "gone" and report.rss_bytes is None:
        raise CliError(f"process {args.pid} exited while being read")
    arenas = explain_arenas(args.pid, root, report.heap)  # the Arenas issue: cap, env, saving, census
    if args.json:
        sys.stdout.write(json_dumps(add_to_explain_json(report_json(report), arenas), indent=1) + "\n")
    else:
        sys.stdout.write(render_text(report, arenas))
    return 0


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
        if heap.version_tested is False:
            lines.append(f"  note: glibc {heap.glibc_version}'s layout is from the glibc source; memtop was tested on 2.36")
        lines.append(_row("heap (system bytes)", heap.system_bytes, f"{len(heap.arenas)} arena(s)"))
        lines.append(_row("in use", heap.in_use_bytes, f"incl. {fmt_bytes(heap.tcache_bytes)} in tcache", indent=4))
        lines.append(_row("free, kept by glibc", heap.free_bytes + heap.fastbin_bytes,
                          f"{fmt_bytes(heap.fastbin_bytes)} of it in fastbins", indent=4))
        lines.append(_row("top", heap.top_bytes, indent=4))
        lines.append(_row("mmapped chunks", heap.mmapped_bytes, f"{heap.mmapped_count} chunk(s), from mp_"))
        lines.append(_row("malloc_trim(0) would release", heap.trim_release_bytes, "of RSS, now"))
        if heap.pin is not None:
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
    else:
        version = f" {heap.glibc_version}" if heap.glibc_version else ""
        lines.append(f"Allocator: {heap.allocator_kind}{version}: {heap.status}: {printable(heap.reason)}")
        last = heap.last_valid
        if last is not None:
            lines.append(f"  last valid walk ({fmt_duration(heap.last_valid_age_s)} ago): heap {fmt_bytes(last.system_bytes)}, "
                         f"in use {fmt_bytes(last.in_use_bytes)}, trim would release {fmt_bytes(last.trim_release_bytes)}")
    lines.append("")
    runtime = report.runtime
    lines.append(f"Runtime: {runtime.kind if runtime else '?'}" + (f" ({printable(runtime.evidence)})" if runtime and runtime.kind != "none" else ""))
    if report.runtime_report is not None:  # the runtime's or the application's own figures
        from memtop.output.runtime import runtime_lines

        if report.runtime_report.is_application:
            lines.append(f"Application: {report.runtime_report.kind}")
        lines.extend(runtime_lines(report.runtime_report, report.runtime_split))
    lines.append("")
    if arenas is not None:
        from memtop.output.arenas import analysis_lines

        lines.append("Arenas (threads, cap, environment, MALLOC_ARENA_MAX=2 prediction, smaps census)")
        lines.extend("  " + printable(line) for line in analysis_lines(arenas))
        lines.append("")
    from memtop.output.arenas import merge_findings

    lines.append("Findings")
    for f in merge_findings(report.findings, arenas):
        lines.append(f"  [{f.severity.value}] {printable(f.text)}")
        if f.next_step:
            lines.append(f"      next: {printable(f.next_step)}")
    return "\n".join(lines) + "\n"
