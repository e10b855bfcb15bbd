"""What ``memtop record`` reads at each tick: one :class:`TickCapture`, read by
:class:`Recorder` with the readers the tabs use (the process sampler, the Kernel tab's collector,
system PSI, the memory cgroups, /proc/vmstat). memtop.output.record writes it to the file."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from memtop import __version__
from memtop.collect.kernel import KernelCollector
from memtop.collect.sampler import Sampler
from memtop.model.kernel import KernelView
from memtop.model.pressure import CgroupMemory, PressureSample
from memtop.model.process import ProcessIdentity
from memtop.model.snapshot import Snapshot
from memtop.procfs import CLOCK_TICKS, PAGE_SIZE, PROC, ProcfsError
from memtop.procfs.cgroup import MemoryHierarchy, locate_memory_hierarchy, memory_cgroup_of, read_cgroup_memory, walk_memory_cgroups
from memtop.procfs.pressure import pressure_unavailable_reason, read_system_pressure
from memtop.procfs.vmstat import read_vmstat


@dataclass(frozen=True)
class TickCapture:
    """Everything one tick records, read by :class:`Recorder` with the readers the tabs use."""

    snapshot: Snapshot
    kernel: KernelView | None
    psi: PressureSample | None
    cgroup_tree: tuple[CgroupMemory, ...] | None
    cgroup_details: Mapping[str, CgroupMemory]  # the cgroups processes are in, read in detail
    proc_cgroups: Mapping[ProcessIdentity, str | None]
    vmstat: Mapping[str, int] | None
    warnings: tuple[str, ...] = ()


class Recorder:
    """Samples the live system for ``memtop record``: the sampler (as the TUI), the Kernel tab's
    collector, system PSI, the memory cgroups, /proc/vmstat."""

    def __init__(self, root: Path = PROC, sampler: Sampler | None = None):
        self.root = Path(root)
        self.sampler = sampler or Sampler(self.root)
        self.kernel = KernelCollector(self.root)
        try:
            self.hierarchy: MemoryHierarchy | None = locate_memory_hierarchy(self.root)
            self.hierarchy_error: str | None = None
        except ProcfsError as e:
            self.hierarchy, self.hierarchy_error = None, str(e)
        self.psi_unavailable = pressure_unavailable_reason(self.root)
        self._cgroup_of: dict[ProcessIdentity, str | None] = {}

    def close(self) -> None:
        self.sampler.close()

    def capture(self) -> TickCapture:
        warnings: list[str] = []
        snapshot = self.sampler.sample()
        kernel = self.kernel.collect(snapshot, None)
        # The recorded view holds what one tick read; the slab chart and the fd growers are
        # derived again at replay from the recorded ticks around the one shown.
        kernel = replace(kernel, slab_history=MappingProxyType({}), growers=())
        psi = read_system_pressure(self.root, now=snapshot.system.monotonic)
        tree = details = None
        identities = {v.sample.identity for v in snapshot.processes}
        for identity in [i for i in self._cgroup_of if i not in identities]:
            del self._cgroup_of[identity]
        if self.hierarchy is not None:
            tree = tuple(walk_memory_cgroups(self.hierarchy))
            for view in snapshot.processes:
                identity = view.sample.identity
                if identity not in self._cgroup_of:
                    try:
                        self._cgroup_of[identity] = memory_cgroup_of(view.pid, self.hierarchy, self.root)
                    except ProcfsError:
                        self._cgroup_of[identity] = None
            details = {}
            for path in sorted({p for p in self._cgroup_of.values() if p is not None}):
                try:
                    details[path] = read_cgroup_memory(self.hierarchy, path, detail=True)
                except ProcfsError as e:  # removed since: the tree says the rest
                    warnings.append(f"cgroup {path}: {e}")
        try:
            vmstat = read_vmstat(self.root)
        except ProcfsError as e:
            vmstat = None
            warnings.append(str(e))
        return TickCapture(snapshot, kernel, psi, tree, MappingProxyType(details or {}),
                           MappingProxyType(dict(self._cgroup_of)), vmstat, tuple(warnings))

    def meta(self, interval_s: float, max_bytes: int) -> dict:
        """What the recording says about the machine and the recorder (the writer adds what
        describes the file format)."""
        return {
            "memtop_version": __version__,
            "hostname": self.sampler._hostname,
            "kernel": self.sampler._kernel,
            "interval_s": interval_s,
            "start_time": time.time(),
            "max_bytes": max_bytes,
            "page_size": PAGE_SIZE,
            "clock_ticks": CLOCK_TICKS,
            "cgroup_version": self.hierarchy.version if self.hierarchy else None,
            "cgroup_mount": (self.hierarchy.mount_point or str(self.hierarchy.directory)) if self.hierarchy else None,
            "cgroup_error": self.hierarchy_error,
            "psi_unavailable_reason": self.psi_unavailable,
            "recorder_pid": os.getpid(),
        }
