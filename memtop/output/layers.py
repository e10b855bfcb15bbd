"""The layered report of one process as JSON: ``memtop explain --json`` (keys in the README).
Unknown is null."""

from __future__ import annotations

from memtop.model.heap import Layer, LayerReport
from memtop.output.runtime import runtime_json


def _split_totals(split: tuple[Layer, ...]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for layer in split:
        totals[layer.key] = totals.get(layer.key, 0) + (layer.bytes or 0)
    return totals


def _runtime_report_json(report: LayerReport) -> dict:
    """The runtime's own figures under ``runtime.report`` (an application's under
    ``runtime.application``), every string from the system made JSON-safe."""
    rr = report.runtime_report
    key = "application" if rr is not None and rr.is_application else "report"
    out = {"report": None, "application": None}
    if rr is not None:
        out[key] = runtime_json(rr, report.runtime_split)
    return out


def report_json(report: LayerReport) -> dict:
    """The JSON of ``memtop explain --json`` (keys documented in the README). Unknown is null."""
    heap = report.heap
    valid = bool(heap and heap.valid)
    arenas = []
    if heap is not None:
        for a in heap.arenas:
            arenas.append({
                "address": a.address, "is_main": a.is_main, "system_bytes": a.system_bytes,
                "in_use_bytes": a.in_use_bytes, "free_bytes": a.free_bytes, "fastbin_bytes": a.fastbin_bytes,
                "tcache_bytes": a.tcache_bytes, "top_bytes": a.top_bytes, "resident_bytes": a.resident_bytes,
                "trim_release_bytes": a.trim_release_bytes, "attached_threads": a.attached_threads,
                "heaps": [{"start": s, "size": n} for s, n in a.heaps],
            })
    pin = heap.pin if heap is not None else None
    runtime = report.runtime
    doc = {
        "pid": report.identity.pid if report.identity else None,
        "start_ticks": report.identity.start_ticks if report.identity else None,
        "comm": report.comm,
        "cmdline": report.cmdline,
        "kernel": {
            "rss_bytes": report.rss_bytes, "pss_bytes": report.pss_bytes,
            "private_dirty_bytes": report.private_dirty_bytes, "lazyfree_bytes": report.lazyfree_bytes,
            "swap_bytes": report.swap_bytes, "file_bytes": report.file_bytes, "anon_bytes": report.anon_bytes,
            "shmem_bytes": report.shmem_bytes,
            "anon_split": {layer.key: layer.bytes for layer in report.anon_split},
            "reason": report.kernel_reason,
        },
        "allocator": {
            # The kinds; a static binary's malloc is unknown (which libc it linked is not told).
            "kind": (heap.allocator_kind if heap.allocator_kind != "static" else "unknown") if heap else "unknown",
            "static": (heap.static or heap.allocator_kind == "static") if heap else None,
            "glibc_version": heap.glibc_version if heap else None,
            "glibc_version_basis": heap.version_basis if heap else None,
            "valid": valid,
            "status": heap.status if heap else None,
            "reason": heap.reason if heap else None,
            "symbols": heap.symbols if heap else None,
            "version_tested": heap.version_tested if heap else None,
            "arenas": arenas if valid else [],
            "system_bytes": heap.system_bytes if valid else None,
            "in_use_bytes": heap.in_use_bytes if valid else None,
            "mmapped_count": heap.mmapped_count if valid else None,
            "mmapped_bytes": heap.mmapped_bytes if valid else None,
            "trim_release_bytes": heap.trim_release_bytes if valid else None,
            "pin": {"address": pin.address, "size": pin.size, "pinned_bytes": pin.pinned_bytes,
                    "distance_below_top": pin.distance_below_top} if valid and pin else None,
            "heap_split": _split_totals(report.heap_split) if valid else None,
            "heap_split_by_layer": {parent: {layer.key: layer.bytes for layer in report.heap_split if layer.parent == parent}
                                    for parent in dict.fromkeys(layer.parent for layer in report.heap_split)}
            if valid else None,
            "chunks_walked": heap.chunks_walked if valid else None,
            "walk_seconds": round(heap.walk_seconds, 3) if heap else None,
            "last_valid_age_s": heap.last_valid_age_s if heap else None,
        },
        "runtime": {
            "kind": runtime.kind if runtime else None,
            "version": runtime.version if runtime else None,
            "evidence": runtime.evidence if runtime else None,
            "regions": [{"start": r.start, "size": r.size, "rss_bytes": r.rss_bytes, "label": r.label}
                        for r in runtime.regions] if runtime else [],
            "advice": list(runtime.advice) if runtime else [],
            **_runtime_report_json(report),
        },
        "findings": [f.as_json() for f in report.findings],
    }
    if heap is not None and heap.allocator is not None:  # jemalloc, tcmalloc, mimalloc, musl
        from memtop.heap.allocators import allocator_json

        doc["allocator"].update(allocator_json(heap.allocator))
        doc["allocator"]["heap_split"] = _split_totals(report.heap_split) if report.heap_split else None
    return doc
