"""The arena analysis as JSON and as text: for `memtop snapshot --json --pid PID` and
`memtop explain`. Unknown values are null, never 0.
"""

from __future__ import annotations

from memtop.format import counted, exact_bytes, fmt_bytes, fmt_percent
from memtop.model.arenas import AnonCensus, AnonRegion, ArenaAnalysis, MallocInfo, RegionClass
from memtop.render.arenas import (  # noqa: F401 - re-exported
    bucket_histogram,
    cap_text,
    census_lines,
    no_arenas_reason,
    threads_text,
    utilization,
)

def arena_json(index: int, arena) -> dict:
    return {
        "index": index,
        "address": arena.address,
        "is_main": arena.is_main,
        "heaps": [{"start": start, "size": size} for start, size in arena.heaps],
        "system_bytes": arena.system_bytes,
        "in_use_bytes": arena.in_use_bytes,
        "free_bytes": arena.free_bytes,
        "fastbin_bytes": arena.fastbin_bytes,
        "tcache_bytes": arena.tcache_bytes,
        "top_bytes": arena.top_bytes,
        "utilization": utilization(arena),
        "resident_bytes": arena.resident_bytes,
        "attached_threads": arena.attached_threads,
        "trim_release_bytes": arena.trim_release_bytes,
        "free_size_histogram": [{"size": size, "count": count, "total_bytes": total}
                                for size, count, total in arena.free_size_histogram],
    }


def _region_class(rc: RegionClass) -> dict:
    return {"count": rc.count, "mapped_bytes": rc.mapped_bytes, "reserved_bytes": rc.reserved_bytes,
            "rss_bytes": rc.rss_bytes, "private_dirty_bytes": rc.private_dirty_bytes, "swap_bytes": rc.swap_bytes}


def _region(r: AnonRegion | None) -> dict | None:
    if r is None:
        return None
    return {"start": r.start, "mapped_bytes": r.mapped_bytes, "reserved_bytes": r.reserved_bytes,
            "rss_bytes": r.rss_bytes, "private_dirty_bytes": r.private_dirty_bytes, "swap_bytes": r.swap_bytes,
            "mappings": r.mappings}


def census_json(c: AnonCensus | None) -> dict | None:
    if c is None:
        return None
    return {
        "allocator": c.allocator,
        "allocator_evidence": c.allocator_evidence,
        "mappings": c.mappings,
        "brk_heap": _region(c.brk_heap),
        "arena_heaps": {
            "count": len(c.arena_heaps),
            "mapped_bytes": c.arena_heap_mapped_bytes,
            "rss_bytes": c.arena_heap_rss_bytes,
            "regions": [_region(r) for r in c.arena_heaps],
        },
        "thread_stacks": _region_class(c.thread_stacks),
        "other_anonymous": _region_class(c.other_anon),
        "reserved_only": _region_class(c.reserved_only),
        "size_groups": [{"size_bytes": g.size_bytes, "count": g.count, "rss_bytes": g.rss_bytes} for g in c.size_groups],
        "can_tell": list(c.can_tell),
        "cannot_tell": list(c.cannot_tell),
    }


def analysis_json(a: ArenaAnalysis) -> dict:
    """The ``arenas`` object of a process in `memtop snapshot --json --pid` and `memtop explain --json`."""
    heap = a.heap
    valid = heap is not None and heap.valid
    arenas = heap.arenas if valid else ()
    env = a.env
    return {
        "threads": a.threads,
        "arena_count": len(arenas) if valid else None,
        "cap": {"limit": a.cap.limit, "cpus": a.cap.cpus, "basis": a.cap.basis},
        "environment": {
            "readable": env.readable,
            "reason": env.reason,
            "MALLOC_ARENA_MAX": env.get("MALLOC_ARENA_MAX"),
            "GLIBC_TUNABLES": env.glibc_tunables,
            "malloc_variables": dict(env.malloc_vars),
            "malloc_tunables": dict(env.tunables),
        },
        "walk": {
            "valid": valid,
            "status": heap.status if heap is not None else None,
            "reason": a.heap_reason,
            "glibc_version": heap.glibc_version if heap is not None else None,
        },
        "arenas": [arena_json(i, arena) for i, arena in enumerate(arenas)],
        "tuning": None if a.tuning is None else {
            "mmap_threshold_bytes": a.tuning.mmap_threshold,
            "trim_threshold_bytes": a.tuning.trim_threshold,
            "top_pad_bytes": a.tuning.top_pad,
            "dynamic_threshold": a.tuning.dynamic_threshold,
            "threshold_moved": a.tuning.threshold_moved,
            "mmapped_chunks": a.tuning.n_mmaps,
            "notes": list(a.tuning.notes),
        },
        "prediction": None if a.prediction is None else {
            "arena_max": 2,
            "saving_bytes": a.prediction.saving_bytes,
            "thread_arenas": a.prediction.thread_arenas,
            "thread_resident_bytes": a.prediction.thread_resident_bytes,
            "thread_live_bytes": a.prediction.thread_live_bytes,
            "kept_slack_bytes": a.prediction.kept_slack_bytes,
            "saving_if_threads_take_turns_bytes": a.prediction.saving_high_bytes,
            "saving_if_threads_peak_together_bytes": a.prediction.saving_low_bytes,
            "overlap_assumed": a.prediction.overlap,
            "overlap_basis": a.prediction.overlap_basis,
            "arenas_holding_80pct_of_live": a.prediction.concentration_arenas,
            "basis": a.prediction.basis,
        },
        "setting_line": a.setting_line,
        "census": census_json(a.census),
        "census_reason": a.census_reason,
        "findings": [f.as_json() for f in a.findings],
    }


def malloc_info_json(info: MallocInfo) -> dict:
    return {
        "arenas": [{"nr": m.nr, "system_bytes": m.system_current, "rest_bytes": m.rest_bytes, "rest_count": m.rest_count,
                    "fast_bytes": m.fast_bytes, "fast_count": m.fast_count, "subheaps": m.aspace_subheaps}
                   for m in info.arenas],
        "mmap_count": info.mmap_count,
        "mmap_bytes": info.mmap_bytes,
        "system_bytes": info.system_current,
    }


def analysis_lines(a: ArenaAnalysis) -> list[str]:
    """The arenas section of `memtop explain` as text."""
    lines = []
    heap = a.heap
    none = no_arenas_reason(a)
    if none is not None:  # a kernel thread, a zombie: no cap, environment or census to speak of
        return [none]
    cap = cap_text(a)
    if heap is not None and heap.valid:
        lines.append(f"{threads_text(a.threads)}, {counted(len(heap.arenas), 'arena')}, {cap}")
        lines.append(f"  {'#':>3} {'ARENA':<14} {'HEAPS':>5} {'SYSTEM':>9} {'IN USE':>9} {'FREE':>9} {'FAST':>8} "
                     f"{'TCACHE':>8} {'TOP':>9} {'UTIL':>5} {'RESIDENT':>9} {'THR':>3}")
        for i, ar in enumerate(heap.arenas):
            name = "main" if ar.is_main else f"{ar.address:#x}"
            lines.append(f"  {i:>3} {name:<14} {len(ar.heaps):>5} {fmt_bytes(ar.system_bytes):>9} {fmt_bytes(ar.in_use_bytes):>9} "
                         f"{fmt_bytes(ar.free_bytes):>9} {fmt_bytes(ar.fastbin_bytes):>8} {fmt_bytes(ar.tcache_bytes):>8} "
                         f"{fmt_bytes(ar.top_bytes):>9} {fmt_percent(utilization(ar)):>5} {fmt_bytes(ar.resident_bytes):>9} "
                         f"{ar.attached_threads:>3}")
    else:
        lines.append(f"{threads_text(a.threads)}; arenas unknown: {a.heap_reason}; {cap}")
    env = a.env
    if env.readable:
        settings = [f"{k}={v}" for k, v in env.malloc_vars] + ([f"GLIBC_TUNABLES={env.glibc_tunables}"] if env.glibc_tunables else [])
        lines.append("environment: " + (", ".join(settings) if settings else "no MALLOC_* or GLIBC_TUNABLES set"))
    else:
        lines.append(f"environment: unknown ({env.reason})")
    if a.tuning is not None:
        t = a.tuning
        lines.append(f"tuning: mmap_threshold {exact_bytes(t.mmap_threshold)} ({'moved' if t.threshold_moved else 'dynamic, not moved' if t.dynamic_threshold else 'fixed'}), "
                     f"trim_threshold {exact_bytes(t.trim_threshold)}, top_pad {exact_bytes(t.top_pad)}")
    if a.prediction is not None and a.prediction.thread_arenas > 1:
        lines.append(f"MALLOC_ARENA_MAX=2 would save about {fmt_bytes(a.prediction.saving_bytes)} of RSS "
                     f"({a.prediction.basis})")
    if a.setting_line:
        lines.append(f"set: {a.setting_line}")
    if a.census is not None:
        lines.extend("census: " + line if i == 0 else "        " + line for i, line in enumerate(census_lines(a.census)))
    elif a.census_reason:
        lines.append(f"census: unknown ({a.census_reason})")
    return lines


def snapshot_process_fields(sample, view, pid: int | None = None) -> dict:
    """With --pid, the selected process gets an ``arenas`` object (the Collector's arenas part:
    a heap walk and a full smaps read, too expensive for every process)."""
    if pid is None or view.pid != pid:
        return {}
    result = sample.result("arenas")
    if result is None or result.value is None or result.key != view.sample.identity:
        return {"arenas": None}  # not read, failed, or the PID was reused between the sample and the walk
    return {"arenas": analysis_json(result.value)}


# --- `memtop explain` ------------------------------------------------------------------------------

HEAP_FRAGMENTATION_MARK = "(arena fragmentation)"  # the Layers issue's coarser arena finding


def explain_arenas(pid: int, root, heap) -> ArenaAnalysis | None:
    """The arena analysis for `memtop explain`, reusing explain's own heap walk."""
    from memtop.heap.arena_advice import analyze_arenas
    from memtop.procfs import NoSuchProcess

    try:
        return analyze_arenas(pid, root, heap=heap, walk=heap is None)
    except NoSuchProcess:
        return None


def merge_findings(findings, analysis: ArenaAnalysis | None) -> list:
    """explain's findings plus the arena findings. When the arena analysis found an explosion (with
    the saving predicted), the coarser "arena fragmentation" finding says the same thing: drop it."""
    findings = list(findings)
    if analysis is None:
        return findings
    from memtop.model.findings import Severity

    if any(f.severity == Severity.WARNING for f in analysis.findings):
        findings = [f for f in findings if HEAP_FRAGMENTATION_MARK not in f.text]
    return findings + list(analysis.findings)


def add_to_explain_json(doc: dict, analysis: ArenaAnalysis | None) -> dict:
    """Add the ``arenas`` object, the per-arena fields (index, utilization, free_size_histogram)
    to ``allocator.arenas[]``, and the arena findings, to explain's JSON document."""
    doc["arenas"] = analysis_json(analysis) if analysis is not None else None
    if analysis is not None and analysis.heap is not None and analysis.heap.valid:
        extra = {a["address"]: a for a in doc["arenas"]["arenas"]}
        for entry in doc.get("allocator", {}).get("arenas", []):
            mine = extra.get(entry.get("address"))
            if mine is not None:
                for key in ("index", "utilization", "free_size_histogram"):
                    entry[key] = mine[key]
    if analysis is not None:
        kept = [f.as_json() for f in merge_findings([], analysis)]
        base = doc.get("findings", [])
        if any(f.severity.value == "warning" for f in analysis.findings):
            base = [f for f in base if HEAP_FRAGMENTATION_MARK not in f.get("text", "")]
        doc["findings"] = base + kept
    return doc
