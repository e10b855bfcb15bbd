"""What ``memtop record`` stores at each tick: the Collector's sample, as one :class:`TickCapture`.

The Recorder is a consumer of the Collector like the TUI: it wants the parts a recording holds
(kernel, PSI, cgroups, each process's cgroup, vmstat, the page cache's top files, tmpfs, the
containers with their OOM watch; and, for ``--pid``, that process's Layers and Arenas reports)
and turns each sample into what memtop.output.record writes. The parts run in the recorder's own
thread, during the tick, so a tick is complete when it is written. A part read at its own
cadence (tmpfs, containers, the heap reports) is stored only at the ticks it was read; replay
shows the latest one with its age.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from memtop import __version__
from memtop.collect.collector import Collector
from memtop.collect.parts import default_parts
from memtop.collect.sampler import Sampler
from memtop.model.arenas import ArenaAnalysis
from memtop.model.containers import ContainersView
from memtop.model.heap import LayerReport
from memtop.model.kernel import KernelView
from memtop.model.pagecache import FilesView
from memtop.model.pressure import CgroupMemory, PressureSample
from memtop.model.process import ProcessIdentity
from memtop.model.sample import Sample
from memtop.model.snapshot import Snapshot
from memtop.model.tmpfs import TmpfsReport
from memtop.procfs import CLOCK_TICKS, PAGE_SIZE, PROC

RECORDED_FILES = 100  # the page cache's most cached files kept per tick (as `memtop snapshot`)
PARTS = ("kernel", "psi", "cgroups", "process_cgroups", "vmstat")  # every tick
# Read every TAKEN_EVERY ticks only (each costs a pass over every process's files), stored then.
TAKEN_PARTS = ("system_files", "tmpfs", "containers")
TAKEN_EVERY = 15  # 30 s at the default 2 s tick
TARGET_PARTS = ("layers", "arenas")  # `--pid`: at their own cadence (a walk every 5-10 s)


@dataclass(frozen=True)
class TickCapture:
    """Everything one tick records."""

    snapshot: Snapshot
    kernel: KernelView | None
    psi: PressureSample | None
    cgroup_tree: tuple[CgroupMemory, ...] | None
    cgroup_details: Mapping[str, CgroupMemory]  # the cgroups processes are in, read in detail
    proc_cgroups: Mapping[ProcessIdentity, str | None]
    vmstat: Mapping[str, int] | None
    warnings: tuple[str, ...] = ()
    # Stored only at the ticks they were read (None otherwise): see memtop.collect.recording.codec
    # TAKEN_SECTIONS.
    files: FilesView | None = None
    tmpfs: TmpfsReport | None = None
    layers: LayerReport | None = None
    arenas: ArenaAnalysis | None = None
    containers: ContainersView | None = None


def capture_of(sample: Sample) -> TickCapture:
    """The TickCapture of one Collector sample."""
    snapshot = sample.processes
    warnings: list[str] = []

    def fresh(name: str):
        """The part's value when it was read at this tick (its error is said once)."""
        result = sample.result(name)
        if result is None or result.tick != snapshot.tick or result.running:
            return None
        if result.error:
            warnings.append(f"{name}: {result.error}")
        return result.value

    kernel = sample.get("kernel")
    if kernel is not None:
        # The recorded view holds what one tick read; the slab chart and the fd growers are
        # derived again at replay from the recorded ticks around the one shown.
        kernel = replace(kernel, slab_history=MappingProxyType({}), growers=())
    psi = sample.get("psi")
    cgroups = sample.get("cgroups")
    process_cgroups = sample.get("process_cgroups")
    proc_cgroups: dict[ProcessIdentity, str | None] = {}
    if process_cgroups is not None:
        paths = process_cgroups.paths
        proc_cgroups = {v.sample.identity: paths.get(v.pid) for v in snapshot.processes}
    vmstat = sample.get("vmstat")
    files = fresh("system_files")
    if files is not None and len(files.files) > RECORDED_FILES:
        files = replace(files, files=files.files[:RECORDED_FILES])
    return TickCapture(
        snapshot, kernel, psi.latest if psi is not None else None,
        cgroups.tree if cgroups is not None and cgroups.version is not None else None,
        process_cgroups.details if process_cgroups is not None else MappingProxyType({}),
        MappingProxyType(proc_cgroups), vmstat.counters if vmstat is not None else None, tuple(warnings),
        files=files, tmpfs=fresh("tmpfs"), layers=fresh("layers"), arenas=fresh("arenas"),
        containers=fresh("containers"))


class Recorder:
    """Samples the live system for ``memtop record`` through a Collector (``pid``: also record
    that process's Layers and Arenas reports, at their own cadence)."""

    def __init__(self, root: Path = PROC, sampler: Sampler | None = None, *, pid: int | None = None):
        self.root = Path(root)
        self.collector = Collector(self.root, parts=default_parts(self.root), sampler=sampler or Sampler(self.root),
                                   workers=0)
        self.target: ProcessIdentity | None = None
        if pid is not None:
            from memtop.procfs.process import read_stat

            self.target = ProcessIdentity(pid, read_stat(pid, self.root).start_ticks)
            self.collector.set_target(self.target)
            self.collector.sampler.visible = frozenset({pid})
        self._ticks = 0

    @property
    def sampler(self) -> Sampler:
        return self.collector.sampler

    def close(self) -> None:
        self.collector.close()

    def capture(self) -> TickCapture:
        taken = TAKEN_PARTS if self._ticks % TAKEN_EVERY == 0 else ()
        self.collector.want("record", PARTS + taken + (TARGET_PARTS if self.target is not None else ()))
        self._ticks += 1
        return capture_of(self.collector.tick())

    def meta(self, interval_s: float, max_bytes: int) -> dict:
        """What the recording says about the machine and the recorder (the writer adds what
        describes the file format)."""
        from memtop.procfs.cgroup import locate_memory_hierarchy
        from memtop.procfs import ProcfsError
        from memtop.procfs.pressure import pressure_unavailable_reason

        self.collector.interval_s = interval_s
        try:
            hierarchy, error = locate_memory_hierarchy(self.root), None
        except ProcfsError as e:
            hierarchy, error = None, str(e)
        return {
            "memtop_version": __version__,
            "hostname": self.sampler._hostname,
            "kernel": self.sampler._kernel,
            "interval_s": interval_s,
            "start_time": time.time(),
            "max_bytes": max_bytes,
            "page_size": PAGE_SIZE,
            "clock_ticks": CLOCK_TICKS,
            "cgroup_version": hierarchy.version if hierarchy else None,
            "cgroup_mount": (hierarchy.mount_point or str(hierarchy.directory)) if hierarchy else None,
            "cgroup_error": error,
            "psi_unavailable_reason": pressure_unavailable_reason(self.root),
            "recorder_pid": os.getpid(),
            "target": [self.target.pid, self.target.start_ticks] if self.target is not None else None,
        }
