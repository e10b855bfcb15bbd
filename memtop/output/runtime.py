"""The runtime's own figures (memtop.model.runtime) as text lines and as JSON.

Every string that came from the process (a GC's name, a version, a path, a setting) passes
through :func:`memtop.text.printable` for text and :func:`memtop.text.json_safe` for JSON.
"""

from __future__ import annotations

from memtop.format import fmt_bytes
from memtop.model.heap import Layer
from memtop.model.runtime import Figure, RuntimeReport
from memtop.text import json_safe, printable

TITLES = {"jvm": "JVM", "cpython": "CPython", "go": "Go", "node": "Node.js (V8)", "postgres": "PostgreSQL",
          "mariadb": "MariaDB/MySQL", "redis": "Redis"}


def fmt_figure(f: Figure) -> str:
    v = f.value
    if v is None:
        return "not set" if (f.reason or "").startswith("not set") else "?"
    if f.unit == "bytes" and isinstance(v, (int, float)):
        return fmt_bytes(v)
    if f.unit == "seconds" and isinstance(v, (int, float)):
        return f"{v:,.2f} s"
    if f.unit == "count" and isinstance(v, (int, float)):
        return f"{v:,}"
    if f.unit == "ratio" and isinstance(v, (int, float)):
        return f"{v:.2f}"
    return printable(str(v), 60)


def runtime_lines(report: RuntimeReport, split: tuple[Layer, ...] = (), *, sources: bool = True) -> list[str]:
    """The runtime section of ``memtop explain``, without its heading, two spaces indented."""
    title = TITLES.get(report.kind, report.kind)
    version = f" {printable(report.version, 60)}" if report.version else ""
    lines = []
    head = f"  {title}{version}: {report.status}"
    if report.source:
        head += f", from {printable(report.source, 200)}"
    head += f" (read in {report.read_seconds:.2f} s)"
    lines.append(head)
    if report.reason:
        lines.append(f"  ? {printable(report.reason, 400)}")
    for f in report.figures:
        value = fmt_figure(f)
        # An unknown's reason in the note; "not set" is the value itself (shown as such), and its
        # note is where that was read.
        unknown = f.value is None and f.reason and value != "not set"
        note = printable(f.reason, 200) if unknown else (printable(f.source, 200) if sources else "")
        lines.append(f"    {printable(f.label, 40):<40} {value:>12}  {note}".rstrip())
    if report.regions:
        lines.append("    regions (address range, size, resident):")
        groups: dict[str, list] = {}
        for r in report.regions:
            groups.setdefault(r.key, []).append(r)
        for regions in groups.values():
            if len(regions) <= 4:
                for r in regions:
                    lines.append(f"      {printable(r.label, 30):<30} 0x{r.start:x}-0x{r.end:x} {fmt_bytes(r.size):>10} "
                                 f"{fmt_bytes(r.rss_bytes):>10}")
                continue
            rss = [r.rss_bytes for r in regions]
            lines.append(f"      {printable(regions[0].label, 30):<30} {len(regions)} regions in "
                         f"0x{min(r.start for r in regions):x}-0x{max(r.end for r in regions):x} "
                         f"{fmt_bytes(sum(r.size for r in regions)):>10} "
                         f"{fmt_bytes(None if None in rss else sum(rss)):>10}")
    if split:
        lines.append("    in the Layers' runtime row (smaps Anonymous):")
        for layer in split:
            lines.append(f"      {printable(layer.label, 30):<30} {fmt_bytes(layer.bytes):>10}")
    for u in report.unknowns:
        lines.append(f"    unknown: {printable(u.what, 80)}: {printable(u.why, 300)}")
    return lines


def runtime_json(report: RuntimeReport, split: tuple[Layer, ...] = ()) -> dict:
    """``runtime.report`` (or ``runtime.application``) of ``memtop explain --json``."""
    return json_safe({
        "kind": report.kind,
        "version": report.version,
        "status": report.status,
        "reason": report.reason,
        "source": report.source,
        "read_seconds": round(report.read_seconds, 3),
        "figures": {f.key: f.as_json() for f in report.figures},
        "regions": [{"key": r.key, "label": r.label, "start": r.start, "size": r.size, "rss_bytes": r.rss_bytes,
                     "source": r.source} for r in report.regions],
        "layers": {layer.key: layer.bytes for layer in split},
        "unknowns": [{"what": u.what, "why": u.why} for u in report.unknowns],
        "findings": [f.as_json() for f in report.findings],
    })
