"""``memtop snapshot --json``: one sample of everything, as a JSON document.

Domains add top-level sections by listing a provider in ``SECTION_PROVIDERS``: a dotted path to
``function(context: SnapshotContext) -> dict | list``. Per-process fields are added the same way
through ``PROCESS_FIELD_PROVIDERS``: ``function(context, view) -> dict`` merged into the process
object. Unknown values are ``null``, never 0.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path

from memtop import __version__
from memtop.collect.sampler import Sampler
from memtop.model.process import ProcessView
from memtop.model.snapshot import Snapshot
from memtop.procfs import PROC

SECTION_PROVIDERS: list[tuple[str, str]] = [
    ("pagecache", "memtop.output.pagecache:pagecache_section"),
    ("vmstat", "memtop.output.pagecache:vmstat_section"),
    ("tmpfs", "memtop.output.tmpfs:snapshot_section"),
    ("pressure", "memtop.output.pressure:pressure_section"),
    ("kernel", "memtop.output.kernel:kernel_section"),
]
PROCESS_FIELD_PROVIDERS: list[str] = [
    "memtop.output.pressure:process_cgroup",
    "memtop.output.kernel:process_fd_growth",
    "memtop.output.arenas:snapshot_process_fields",
]


@dataclass(frozen=True)
class SnapshotContext:
    root: Path
    snapshot: Snapshot
    pid: int | None  # --pid: the one process asked about, if any


def _load(dotted: str):
    module_name, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def process_json(view: ProcessView) -> dict:
    s = view.sample
    r = s.rollup
    return {
        "pid": s.pid,
        "ppid": s.ppid,
        "start_ticks": s.identity.start_ticks,
        "user": s.user,
        "comm": s.comm,
        "cmdline": s.cmdline,
        "state": s.state,
        "kernel_thread": s.kernel_thread,
        "rss_bytes": s.rss_bytes,
        "pss_bytes": r.pss if r else None,
        "uss_bytes": r.uss if r else None,
        "private_dirty_bytes": r.private_dirty if r else None,
        "swap_bytes": s.swap_bytes,
        "swap_pss_bytes": r.swap_pss if r else None,
        "lazyfree_bytes": r.lazyfree if r else None,
        "anon_bytes": s.anon_bytes,
        "file_bytes": s.file_bytes,
        "shmem_bytes": s.shmem_bytes,
        "anon_huge_pages_bytes": r.anon_huge_pages if r else None,
        "threads": s.threads,
        "fd_count": s.fd_count,
        "minor_faults": s.minflt,
        "major_faults": s.majflt,
        "unknown_reasons": {
            k: v for k, v in (("smaps_rollup", None if r else s.rollup_reason), ("fd", s.fd_reason)) if v
        },
    }


def system_json(snapshot: Snapshot) -> dict:
    sysm = snapshot.system
    return {
        "hostname": sysm.hostname,
        "kernel": sysm.kernel,
        "uptime_s": sysm.uptime_s,
        "meminfo": dict(sysm.meminfo),
    }


def build_snapshot(root: Path = PROC, pid: int | None = None) -> dict:
    """Sample once (smaps_rollup for every process) and build the JSON document."""
    sampler = Sampler(root)
    if pid is not None:
        sampler.visible = frozenset({pid})
    snapshot = sampler.sample(all_rollups=pid is None)
    views = snapshot.processes
    if pid is not None:
        views = tuple(v for v in views if v.pid == pid)
    context = SnapshotContext(root=Path(root), snapshot=snapshot, pid=pid)
    processes = []
    field_providers = [_load(p) for p in PROCESS_FIELD_PROVIDERS]
    for view in sorted(views, key=lambda v: v.pid):
        obj = process_json(view)
        for provider in field_providers:
            obj.update(provider(context, view))
        processes.append(obj)
    doc = {
        "memtop_version": __version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(snapshot.system.wall_time)),
        "system": system_json(snapshot),
        "processes": processes,
    }
    for name, dotted in SECTION_PROVIDERS:
        doc[name] = _load(dotted)(context)
    return doc
