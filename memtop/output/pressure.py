"""``memtop snapshot --json`` sections: ``pressure`` (system PSI, the memory cgroup tree,
findings) and the per-process ``cgroup`` object.

Unknown values are ``null`` with the reason beside them; an unlimited limit is ``null`` with
``max_unlimited: true`` (the kernel writes ``max``, or a huge number on v1).
"""

from __future__ import annotations

from memtop.model.pressure import CgroupMemory, PsiLine, PsiResource, cgroup_findings, system_findings
from memtop.model.process import ProcessView
from memtop.procfs import NoSuchProcess, ProcfsError
from memtop.procfs.cgroup import MemoryHierarchy, locate_memory_hierarchy, memory_cgroup_of, read_cgroup_memory, walk_memory_cgroups
from memtop.procfs.pressure import pressure_unavailable_reason, read_system_pressure

# One snapshot builds many process objects that share a few cgroups: remember, per context,
# the hierarchy and each cgroup read (only the latest context is kept).
_cache: dict = {"context": None, "hierarchy": None, "cgroups": {}}


def _psi_line_json(line: PsiLine | None) -> dict | None:
    if line is None:
        return None
    return {"avg10": line.avg10, "avg60": line.avg60, "avg300": line.avg300, "total_us": line.total_us}


def psi_json(resource: PsiResource | None) -> dict | None:
    if resource is None:
        return None
    return {"some": _psi_line_json(resource.some), "full": _psi_line_json(resource.full)}


def cgroup_json(cg: CgroupMemory, *, detail: bool = True) -> dict:
    out = {
        "version": cg.version,
        "path": cg.path,
        "current_bytes": cg.current,
        "max_bytes": cg.max,
        "max_unlimited": cg.max is None and "max" not in cg.unknown,
        "events": dict(cg.events),
    }
    if detail:
        out.update({
            "high_bytes": cg.high,
            "low_bytes": cg.low,
            "min_bytes": cg.min,
            "swap_current_bytes": cg.swap_current,
            "swap_max_bytes": cg.swap_max,
            "stat_bytes": dict(cg.stat),
            "pressure": psi_json(cg.pressure),
        })
        if cg.version == 1:
            out.update({
                "soft_limit_bytes": cg.soft_limit,
                "memsw_usage_bytes": cg.memsw_usage,
                "memsw_limit_bytes": cg.memsw_limit,
                "max_usage_bytes": cg.max_usage,
            })
    # The tree lists only reasons for the figures it shows (v1's missing files are the same
    # for every cgroup and are listed once in the per-process object).
    shown = None if detail else ("current", "max", "events", "failcnt", "oom_control")
    out["unknown_reasons"] = {k: v for k, v in cg.unknown.items() if shown is None or k in shown}
    return out


def _hierarchy(context) -> MemoryHierarchy | str:
    if _cache["context"] is not context:
        _cache.update(context=context, hierarchy=None, cgroups={})
        try:
            _cache["hierarchy"] = locate_memory_hierarchy(context.root)
        except ProcfsError as e:
            _cache["hierarchy"] = str(e)
    return _cache["hierarchy"]


def pressure_section(context) -> dict:
    """System PSI, where the memory controller is, every memory cgroup, and findings."""
    sample = read_system_pressure(context.root)
    doc: dict = {
        "unavailable_reason": pressure_unavailable_reason(context.root),
        **{name: psi_json(sample.resources.get(name)) for name in ("memory", "io", "cpu")},
        "unknown_reasons": dict(sample.unknown),
    }
    hierarchy = _hierarchy(context)
    findings = system_findings(sample)
    if isinstance(hierarchy, str):
        doc["cgroups"] = {"version": None, "mount": None, "unknown_reason": hierarchy, "tree": []}
    else:
        tree = walk_memory_cgroups(hierarchy)
        doc["cgroups"] = {
            "version": hierarchy.version,
            "mount": hierarchy.mount_point or str(hierarchy.directory),
            "unknown_reason": None,
            "tree": [cgroup_json(cg, detail=False) for cg in tree],
        }
        for cg in tree:
            # One sample: "since start" is unknowable, so only the near-limit finding applies.
            findings.extend(cgroup_findings(cg, {}))
    doc["findings"] = [f.as_json() for f in findings]
    return doc


def process_cgroup(context, view: ProcessView) -> dict:
    """Per process: ``cgroup`` with path, current_bytes, max_bytes, events (and the rest)."""
    hierarchy = _hierarchy(context)
    empty = {"version": None, "path": None, "current_bytes": None, "max_bytes": None, "events": None}
    if isinstance(hierarchy, str):
        return {"cgroup": {**empty, "unknown_reason": hierarchy}}
    try:
        path = memory_cgroup_of(view.pid, hierarchy, context.root)
    except NoSuchProcess:
        return {"cgroup": {**empty, "unknown_reason": "process exited"}}
    except ProcfsError as e:
        return {"cgroup": {**empty, "unknown_reason": str(e)}}
    cgroups = _cache["cgroups"]
    if path not in cgroups:
        try:
            cgroups[path] = cgroup_json(read_cgroup_memory(hierarchy, path, detail=True))
        except NoSuchProcess:
            cgroups[path] = {**empty, "path": path, "unknown_reason": "the cgroup was removed while being read"}
        except ProcfsError as e:
            cgroups[path] = {**empty, "path": path, "unknown_reason": str(e)}
    return {"cgroup": cgroups[path]}
