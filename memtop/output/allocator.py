"""A non-glibc allocator's report as text (``memtop explain``) and JSON (``explain --json``
``allocator`` object). Every string that comes from the system (library paths, environment
values, reasons quoting them) goes through memtop.text: printable() for text, json_safe() for JSON.
"""

from __future__ import annotations

from memtop.format import fmt_bytes
from memtop.heap.allocators import allocator_json  # noqa: F401  (the JSON lives with the readers)
from memtop.model.allocator import COMMON_FIGURES, AllocatorReport
from memtop.text import json_safe, printable

LABELS = {
    "allocated_bytes": "allocated (in use by the program)",
    "active_bytes": "active (pages holding allocations)",
    "mapped_bytes": "mapped (address space held)",
    "resident_bytes": "resident (pagemap)",
    "free_kept_bytes": "free, kept by the allocator",
    "retained_bytes": "retained (no RAM)",
    "release_bytes": "its own release would return",
}


def _row(label: str, value, note: str = "", indent: int = 2) -> str:
    return f"{' ' * indent}{label:<{38 - indent}} {fmt_bytes(value):>10}  {note}".rstrip()


def allocator_lines(report: AllocatorReport) -> list[str]:
    """The allocator section of ``memtop explain`` for jemalloc, tcmalloc, mimalloc or musl."""
    what = f"{report.kind}{' ' + report.version if report.version else ''}"
    where = "linked into the executable" if report.static else printable(report.library or "?", 100)
    if not report.valid:
        return [f"Allocator: {what} ({where}): {report.status}: {printable(report.reason)}"]
    lines = [f"Allocator: {what} ({where}), read in {report.read_seconds:.2f} s: {printable(report.method)}"]
    for figure in COMMON_FIGURES:
        value = getattr(report, figure)
        note = ""
        if figure == "release_bytes" and report.release_call:
            note = f"{report.release_call}, of RSS, now"
        if value is None:
            note = f"({printable(report.unknown_reason(figure) or 'unknown')})"
        lines.append(_row(LABELS[figure], value, note))
    details = [(k, v) for k, v in report.details if v is not None]
    if details:
        parts = [f"{k.removesuffix('_bytes').replace('_', ' ')} {fmt_bytes(v) if k.endswith('_bytes') else f'{v:,}'}"
                 for k, v in details]
        lines.append("  " + ", ".join(parts))
    if report.arenas and len(report.arenas) > 0 and report.kind == "jemalloc":
        lines.append(f"  {'arena':>5} {'allocated':>10} {'active':>10} {'dirty':>10} {'muzzy':>10} {'retained':>10} "
                     f"{'dirty res':>10}")
        for a in report.arenas:
            lines.append(f"  {a.index:>5} {fmt_bytes(a.allocated_bytes):>10} {fmt_bytes(a.active_bytes):>10} "
                         f"{fmt_bytes(a.dirty_bytes):>10} {fmt_bytes(a.muzzy_bytes):>10} {fmt_bytes(a.retained_bytes):>10} "
                         f"{fmt_bytes(a.dirty_resident_bytes):>10}")
    for s in report.settings:
        lines.append(f"  setting {printable(s.name)} = {printable(s.value, 80) if s.value is not None else '?'}  "
                     f"({printable(s.source)})")
    for note in report.notes:
        lines.append(f"  note: {printable(note)}")
    return lines


def own_stats_lines(stats, report: AllocatorReport | None) -> list[str]:
    """The allocator's own statistics call beside memtop's read-only figures."""
    lines = [f"{stats.kind}'s own report: {printable(stats.call)}, the process stopped for "
             f"{'?' if stats.stopped_s is None else f'{stats.stopped_s * 1000:.0f} ms'}"]
    mine = OWN_TO_MINE.get(stats.kind, {})
    for name, value in stats.values:
        shown = fmt_bytes(value) if isinstance(value, int) and not isinstance(value, bool) and _is_bytes(name) else str(value)
        ours = ""
        if report is not None and report.valid and name in mine:
            ours_value = _ours(report, mine[name])
            ours = f"   memtop read-only: {fmt_bytes(ours_value)}"
        lines.append(f"  {printable(name):<44} {shown:>12}{ours}")
    return lines


def _is_bytes(name: str) -> bool:
    return not name.endswith(("_ms", "msecs", "narenas", "faults")) and "background" not in name


def _ours(report: AllocatorReport, key: str):
    if key.startswith("detail:"):
        return report.detail(key[7:])
    return getattr(report, key)


# The allocator's own names -> memtop's figure for the same thing.
OWN_TO_MINE = {
    "jemalloc": {"stats.allocated": "allocated_bytes", "stats.active": "active_bytes",
                 "stats.retained": "retained_bytes", "stats.arenas.4096.pdirty_bytes": "detail:dirty_bytes",
                 "stats.arenas.4096.pmuzzy_bytes": "detail:muzzy_bytes"},
    "tcmalloc": {"generic.current_allocated_bytes": "allocated_bytes", "generic.heap_size": "mapped_bytes",
                 "tcmalloc.pageheap_free_bytes": "free_kept_bytes", "tcmalloc.pageheap_unmapped_bytes": "retained_bytes",
                 "tcmalloc.central_cache_free_bytes": "detail:central_cache_free_bytes",
                 "tcmalloc.transfer_cache_free_bytes": "detail:transfer_cache_free_bytes",
                 "tcmalloc.thread_cache_free_bytes": "detail:thread_cache_free_bytes"},
    "mimalloc": {"current_commit": "detail:stats_committed_bytes"},
}


def own_stats_json(stats) -> dict:
    return json_safe({"kind": stats.kind, "call": stats.call,
                      "stopped_ms": None if stats.stopped_s is None else round(stats.stopped_s * 1000, 1),
                      "values": dict(stats.values), "notes": list(stats.notes)})
