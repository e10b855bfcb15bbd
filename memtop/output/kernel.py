"""The ``kernel`` section of ``memtop snapshot --json`` and the per-process ``fd_growth_per_min``.

A one-shot snapshot has one sample, so it cannot know growth: ``fd_growth_per_min`` is null with
the reason in ``fd_growth_reason`` (the TUI computes it from the fd count it reads every tick).
Waiting a few seconds to sample twice would make every snapshot that much slower, for a rate
that is noise over so short a window; a reader that keeps history (the TUI) gets a real one.
Likewise slab growth is not in the snapshot.
"""

from __future__ import annotations

from memtop.format import counted
from memtop.model.kernel import (
    FD_MIN_SPAN_S,
    FD_WINDOW_S,
    FdBreakdown,
    KernelView,
    NetNamespace,
    SlabRow,
    history_fd_growth,
)
from memtop.model.process import ProcessView


def slab_json(row: SlabRow) -> dict:
    c = row.cache
    return {
        "name": c.name,
        "active_objs": c.active_objs,
        "num_objs": c.num_objs,
        "objsize_bytes": c.objsize,
        "objperslab": c.objperslab,
        "pagesperslab": c.pagesperslab,
        "active_slabs": c.active_slabs,
        "num_slabs": c.num_slabs,
        "total_bytes": c.total_bytes,
        "active_bytes": c.active_bytes,
        "active_fraction": c.active_fraction,
        "reclaimable": row.reclaimable,
    }


def namespace_json(ns: NetNamespace) -> dict:
    protocols = {}
    if ns.sockstat is not None:
        for p in ns.sockstat.protocols:
            obj = dict(p.counts)
            if "mem" in p.counts:
                obj["mem_pages"] = obj.pop("mem")
            obj["mem_bytes"] = p.mem_bytes
            protocols[p.name] = obj
    return {
        "net_ns_inode": ns.inode,
        "own": ns.own,
        "pids": list(ns.pids),
        "example": ns.example,
        "sockets_used": ns.sockstat.sockets_used if ns.sockstat else None,
        "mem_bytes": ns.sockstat.mem_bytes if ns.sockstat else None,
        "protocols": protocols if ns.sockstat else None,
        "unknown_reason": ns.reason,
    }


def breakdown_json(b: FdBreakdown) -> dict:
    return {
        "pid": b.pid,
        "total": b.total,
        "sockets": b.sockets,
        "pipes": b.pipes,
        "files": b.files,
        "anon_inodes": b.anon_inodes,
        "other": b.other,
        "deleted_files": b.deleted_files,
        "anon_kinds": dict(b.anon_kinds),
        "socket_states": dict(b.socket_states) if b.socket_states is not None else None,
        "socket_states_reason": b.socket_states_reason,
    }


def kernel_json(view: KernelView) -> dict:
    """The ``kernel`` object from one KernelView (pure: the deterministic test feeds fixed data)."""
    reasons = {}
    if view.slab_reason:
        reasons["slabs"] = view.slab_reason
    if view.file_nr_reason:
        reasons["file_nr"] = view.file_nr_reason
    if view.namespaces_unreadable:
        reasons["sockstat"] = (f"the network namespace of {counted(view.namespaces_unreadable, 'process', 'processes')} could not be read "
                               "(another user's process needs root; some the kernel refuses even to root): "
                               "namespaces only they are in are missing")
    slab_total = sum(r.cache.total_bytes for r in view.slabs) if view.slabs is not None else None
    doc = {
        "slabs": [slab_json(r) for r in sorted(view.slabs, key=lambda r: (-r.cache.total_bytes, r.cache.name))]
        if view.slabs is not None else None,
        "slab_version": view.slab_version,
        "slab_total_bytes": slab_total,
        "meminfo_categories": {c.key: c.bytes for c in view.categories},
        "sockstat": [namespace_json(ns) for ns in view.namespaces],
        "file_nr": {"allocated": view.file_nr.allocated, "unused": view.file_nr.unused, "max": view.file_nr.maximum}
        if view.file_nr else None,
        "fd_leaks": [
            {"pid": g.view.pid, "fd_growth_per_min": round(g.growth.per_min, 2), "text": g.finding.text}
            for g in view.growers if g.finding is not None
        ],
        "unknown_reasons": reasons,
    }
    if view.target_pid is not None:
        doc["fd_breakdown"] = breakdown_json(view.fd_breakdown) if view.fd_breakdown else None
        if view.fd_breakdown_reason:
            reasons["fd_breakdown"] = view.fd_breakdown_reason
    return doc


def kernel_section(sample) -> dict:
    """The snapshot's ``kernel`` section (the Collector's kernel part; with --pid, also the fd
    breakdown of that process)."""
    result = sample.result("kernel")
    if result is None or result.value is None:
        return {"error": result.error if result is not None else "not read"}
    return kernel_json(result.value)


def process_fd_growth(sample, view: ProcessView, pid: int | None = None) -> dict:
    """Per process: ``fd_growth_per_min`` (null with the reason when unknown)."""
    history = sample.processes.history(view)
    growth = history_fd_growth(history)
    if growth is not None:
        return {"fd_growth_per_min": round(growth.per_min, 2), "fd_growth_window_s": round(growth.span_s, 1),
                "fd_growth_reason": None}
    if view.sample.fd_count is None:
        reason = f"fd count unknown: {view.sample.fd_reason}"
    else:
        reason = (f"needs fd counts over at least {FD_MIN_SPAN_S:.0f} s (window {FD_WINDOW_S:.0f} s); "
                  f"this snapshot has {counted(len(history), 'sample')}: watch it in the TUI's Kernel tab")
    return {"fd_growth_per_min": None, "fd_growth_window_s": None, "fd_growth_reason": reason}
