"""``memtop snapshot --json`` sections: ``pressure`` (system PSI, the memory cgroup tree,
findings) and the per-process ``cgroup`` object.

Unknown values are ``null`` with the reason beside them; an unlimited limit is ``null`` with
``max_unlimited: true`` (the kernel writes ``max``, or a huge number on v1).
"""

from __future__ import annotations

from memtop.model.pressure import CgroupMemory, PsiLine, PsiResource, cgroup_findings, system_findings
from memtop.model.process import ProcessView


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


def pressure_section(sample) -> dict:
    """System PSI, where the memory controller is, every memory cgroup, and findings (the
    Collector's psi and cgroups parts)."""
    psi = sample.get("psi")
    latest = psi.latest if psi is not None else None
    doc: dict = {
        "unavailable_reason": psi.unavailable_reason if psi is not None else "PSI not read",
        **{name: psi_json(latest.resources.get(name) if latest else None) for name in ("memory", "io", "cpu")},
        "unknown_reasons": dict(latest.unknown) if latest else {},
    }
    findings = system_findings(latest)
    result = sample.result("cgroups")
    cgroups = result.value if result is not None else None
    if cgroups is None or cgroups.version is None:
        reason = (cgroups.error if cgroups is not None else result.error if result is not None else "not read")
        doc["cgroups"] = {"version": None, "mount": None, "unknown_reason": reason, "tree": []}
    else:
        doc["cgroups"] = {
            "version": cgroups.version,
            "mount": cgroups.mount,
            "unknown_reason": None,
            "tree": [cgroup_json(cg, detail=False) for cg in cgroups.tree],
        }
        for cg in cgroups.tree:
            # One sample: "since start" is unknowable, so only the near-limit finding applies.
            findings.extend(cgroup_findings(cg, {}))
    doc["findings"] = [f.as_json() for f in findings]
    return doc


def process_cgroup(sample, view: ProcessView, pid: int | None = None) -> dict:
    """Per process: ``cgroup`` with path, current_bytes, max_bytes, events (and the rest)."""
    empty = {"version": None, "path": None, "current_bytes": None, "max_bytes": None, "events": None}
    result = sample.result("process_cgroups")
    known = result.value if result is not None else None
    if known is None or known.error:
        reason = known.error if known is not None else result.error if result is not None else "not read"
        return {"cgroup": {**empty, "unknown_reason": reason}}
    path = known.paths.get(view.pid)
    if path is None:
        return {"cgroup": {**empty, "unknown_reason": known.reasons.get(view.pid, "process exited")}}
    cg = known.details.get(path)
    if cg is None:
        return {"cgroup": {**empty, "path": path, "unknown_reason": "the cgroup was removed while being read"}}
    return {"cgroup": cgroup_json(cg)}
