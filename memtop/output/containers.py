"""The containers section of ``memtop snapshot --json`` and each process's container.

From the containers part's result (memtop/collect/parts.py ContainersPart): every container's
memory as the kernel charges it (memtop.model.containers.container_json), its findings, and the
OOM watch (memtop.model.oom.oom_json: kill orders; a single sample has no trend and no kill).
"""

from __future__ import annotations

from memtop.model.containers import container_findings, container_json
from memtop.model.oom import oom_json
from memtop.model.process import ProcessView


def containers_section(sample) -> dict:
    result = sample.result("containers")
    if result is None or result.value is None:
        return {"error": result.error if result is not None else "not read", "containers": None, "oom": None}
    view = result.value
    oom = view.oom
    containers = []
    for entry in view.containers.containers:
        eta = oom.cgroup_times.get(entry.memory_path) if oom is not None else None
        containers.append({**container_json(entry),
                           "findings": [f.as_json() for f in container_findings(entry, eta)]})
    return {"cgroup_version": view.containers.version, "containers": containers,
            "oom": oom_json(oom) if oom is not None else None, "unknown": dict(view.containers.unknown)}


def process_container(sample, view: ProcessView, pid: int | None = None) -> dict:
    """Per process: ``container`` (kind, name, its cgroup), or null when unknown."""
    result = sample.result("containers")
    if result is None or result.value is None:
        return {"container": None}
    found = result.value.containers.by_pid.get(view.pid)
    if found is None:
        return {"container": None}
    return {"container": {"kind": found.kind, "name": found.name, "label": found.label, "cgroup": found.cgroup,
                          "runtime": found.runtime, "id": found.id, "pod_uid": found.pod_uid,
                          "pod_name": found.pod_name, "namespace": found.namespace}}
