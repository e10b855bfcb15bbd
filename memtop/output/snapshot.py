"""``memtop snapshot --json``: one Sample of everything, as a JSON document.

The Collector (memtop/collect/collector.py) reads the sample; this module only formats it. Each
domain's section is formatted by its own output module from its part's result (SECTIONS), and
per-process fields likewise (PROCESS_FIELDS). Unknown values are ``null``, never 0, and a part
that failed says why in its section's ``error``.
"""

from __future__ import annotations

import time

from memtop import __version__
from memtop.model.process import ProcessView
from memtop.model.sample import Sample
from memtop.model.snapshot import Snapshot
from memtop.output.arenas import snapshot_process_fields
from memtop.output.containers import containers_section, process_container
from memtop.output.kernel import kernel_section, process_fd_growth
from memtop.output.pagecache import pagecache_section, vmstat_section
from memtop.output.pressure import pressure_section, process_cgroup
from memtop.output.tmpfs import snapshot_section as tmpfs_section

# The parts a snapshot reads (the Collector's names), and the sections made of them.
PARTS = ("kernel", "psi", "cgroups", "process_cgroups", "vmstat", "system_files", "tmpfs", "containers")
SECTIONS = (
    ("pagecache", pagecache_section),
    ("vmstat", vmstat_section),
    ("tmpfs", tmpfs_section),
    ("pressure", pressure_section),
    ("kernel", kernel_section),
    ("containers", containers_section),
)
PROCESS_FIELDS = (process_cgroup, process_container, process_fd_growth, snapshot_process_fields)


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


def snapshot_json(sample: Sample, pid: int | None = None) -> dict:
    """The document of ``memtop snapshot --json`` (``pid``: only that process, with its arenas)."""
    snapshot = sample.processes
    views = snapshot.processes if pid is None else tuple(v for v in snapshot.processes if v.pid == pid)
    processes = []
    for view in sorted(views, key=lambda v: v.pid):
        obj = process_json(view)
        for fields in PROCESS_FIELDS:
            obj.update(fields(sample, view, pid))
        processes.append(obj)
    doc = {
        "memtop_version": __version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(snapshot.system.wall_time)),
        "system": system_json(snapshot),
        "processes": processes,
    }
    for name, section in SECTIONS:
        doc[name] = section(sample)
    return doc
