"""One sample of what ``memtop export`` serves: system memory, PSI, vmstat, slabs, sockets,
tmpfs mounts, memory cgroups and the top processes by RSS, already bounded (top N, top K).

The exporter's sampling thread builds one :class:`ExportSample` per interval; scrapes only read
the latest one (never /proc), so a scrape costs the same whatever the machine runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from memtop.model.kernel import SlabCache, Sockstat
from memtop.model.pressure import CgroupMemory, PressureSample
from memtop.model.process import ProcessIdentity, ProcessSample
from memtop.model.tmpfs import Mount

_EMPTY: Mapping = MappingProxyType({})

# The sources one sample reads; each gets memtop_exporter_source_ok{source} (1 read, 0 not).
SOURCES = ("meminfo", "pressure", "vmstat", "slabinfo", "sockstat", "tmpfs", "cgroup", "processes", "heap")


@dataclass(frozen=True, slots=True)
class HeapFigures:
    """The glibc heap of one process from a validated read-only walk (memtop.heap.analyze).

    ``in_use + free + top == system`` (mallinfo's uordblks / fordblks split; tcache counts as in
    use, fastbins as free), summed over the process's arenas.
    """

    system_bytes: int
    in_use_bytes: int
    free_bytes: int  # bins + fastbins: free, but kept by glibc
    top_bytes: int
    arenas: int
    walk_seconds: float
    walked_at: float  # wall clock (time.time) of the walk


@dataclass(frozen=True, slots=True)
class ExportSample:
    """What one exporter tick read. ``None`` (or an empty tuple) where a source could not be read;
    the reason is in ``errors[source]``."""

    tick: int
    wall_time: float
    uptime_s: float | None
    duration_s: float  # wall time the tick took
    cpu_s: float  # CPU time (user+sys of the sampling thread) the tick took
    cpu_total_s: float = 0.0  # CPU time of every tick so far
    meminfo: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # bytes (kB x 1024); HugePages_* are counts
    pressure: PressureSample | None = None
    vmstat: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # raw /proc/vmstat values, kernel units
    slabs: tuple[SlabCache, ...] | None = None  # the largest caches, at most slab_top
    slab_total_bytes: int | None = None  # over every cache, not only the ones listed
    slab_cache_count: int | None = None
    sockstat: Sockstat | None = None
    mounts: tuple[Mount, ...] = ()  # memory-backed mounts, one per filesystem, largest first
    cgroup_version: int | None = None
    cgroups: tuple[CgroupMemory, ...] = ()  # the root and the largest cgroups, at most cgroup_top
    processes: tuple[ProcessSample, ...] = ()  # the top N by RSS, largest first
    process_count: int = 0  # every process seen this tick
    heaps: Mapping[ProcessIdentity, HeapFigures] = field(default_factory=lambda: _EMPTY)
    errors: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # source -> why it could not be read
