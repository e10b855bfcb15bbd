"""Collection for ``memtop export``: one :class:`ExportSample` per exporter tick.

It takes the road of ``memtop snapshot`` and the TUI: a :class:`~memtop.collect.collector.Collector`
with the process :class:`~memtop.collect.sampler.Sampler` and the parts psi, vmstat and cgroups
(the TUI's own), plus three light parts of its own: the largest slab caches, /proc/net/sockstat
and the memory-backed mounts (the Kernel and tmpfs tabs' parts read far more). Every list it keeps is
bounded (top N processes, top K slab caches, mounts, cgroups), so the label cardinality of the
exporter is bounded whatever the machine runs.

Cost per tick: stat (+ status when it changed) and the fd count of every process, as the TUI;
smaps_rollup (a page-table walk) only for the top N processes (and once for each new process,
the sampler's first look); a readlink of /proc/PID/ns/mnt per process for the tmpfs mounts of
other mount namespaces; one stat-sized read per cgroup (the walk is bounded to 2,000 cgroups).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from memtop.collect.collector import Collector, Job, Part, PartUnavailable
from memtop.collect.parts import CgroupsPart, PsiPart, VmstatPart
from memtop.collect.sampler import Sampler
from memtop.collect.tmpfs import discover_mounts
from memtop.model.export import ExportSample, HeapFigures
from memtop.model.process import ProcessIdentity, ProcessSample
from memtop.procfs import PROC, NoSuchProcess, ProcfsError
from memtop.procfs import kernel as kfs
from memtop.procfs import process as procfs

DEFAULT_TOP = 20  # processes
SLAB_TOP = 20  # slab caches
MOUNT_TOP = 32  # memory-backed mounts
CGROUP_TOP = 50  # memory cgroups (the root is always one of them)
# The cgroup walk reads at most 2,000 cgroups per tick (walk_memory_cgroups' own bound).
HEAP_TOP = 5  # heaps walked (the largest of the top N), when --heap is on
HEAP_PERIOD_S = 60.0  # a heap is walked again at most this often
# The sampler re-reads smaps_rollup of the rows it is told are visible (here: the top N) every
# tick (idle_on_screen=1: also when idle; a scrape's PSS is at most one interval old) and
# staggers the rest; the exporter shows only the top N, so "the rest" never comes due.
_NEVER = 1 << 40


class _Source(Part):
    """One of the exporter's light sources, read through the Collector: a reader's expected error
    becomes the part's error (the reason as the reader gives it)."""

    def collect(self, job: Job):
        try:
            return self.read(job)
        except ProcfsError as e:
            raise PartUnavailable(getattr(e, "reason", None) or str(e)) from e

    def read(self, job: Job):
        raise NotImplementedError


class SlabTopPart(_Source):
    """The largest slab caches, their total and how many there are (/proc/slabinfo)."""

    name = "slab_top"

    def __init__(self, top: int):
        self.top = top

    def read(self, job: Job):
        info = kfs.read_slabinfo(job.root)
        slabs = tuple(sorted(info.caches, key=lambda c: (-c.total_bytes, c.name))[: self.top])
        return slabs, info.total_bytes, len(info.caches)


class SockstatPart(_Source):
    """/proc/net/sockstat of memtop's own network namespace (the host's when run on the host)."""

    name = "sockstat"

    def read(self, job: Job):
        return kfs.read_sockstat(f"{job.root}/net")


class MemoryMountsPart(_Source):
    """The memory-backed mounts (tmpfs, ramfs...) of every mount namespace, one row per
    filesystem, largest first, at most ``top``; with the discovery's warnings."""

    name = "memory_mounts"

    def __init__(self, top: int):
        self.top = top

    def read(self, job: Job):
        pids = [v.pid for v in job.snapshot.processes if not v.sample.kernel_thread]
        discovery = discover_mounts(job.root, pids)
        # One row per filesystem (a tmpfs seen in several namespaces is one), largest first.
        unique = [m for m in discovery.mounts if m.duplicate_of is None]
        unique.sort(key=lambda m: (-(m.used_bytes or 0), m.mountpoint))
        if discovery.warnings and not discovery.mounts:
            raise PartUnavailable("; ".join(discovery.warnings))
        return tuple(unique[: self.top])


# What the exporter asks the Collector for each tick (PSI, vmstat and the cgroup walk are the
# TUI's parts; slabs, sockstat and mounts are lighter than the Kernel and tmpfs tabs' parts).
EXPORT_PARTS = ("psi", "vmstat", "cgroups", "slab_top", "sockstat", "memory_mounts")


class ExportSampler:
    """Reads one :class:`ExportSample` per call of :meth:`sample`. One thread calls it.

    The figures come from a :class:`~memtop.collect.collector.Collector` whose parts run in the
    calling thread during the tick (the road every consumer takes); this class picks the bounded
    top N of each list (the exporter's label cardinality) and the heap walks of --heap.
    """

    def __init__(self, root: Path = PROC, *, top: int = DEFAULT_TOP, slab_top: int = SLAB_TOP,
                 mount_top: int = MOUNT_TOP, cgroup_top: int = CGROUP_TOP, heap: bool = False,
                 heap_top: int = HEAP_TOP, heap_period_s: float = HEAP_PERIOD_S,
                 clock=time.monotonic, wall_clock=time.time):
        self.root = Path(root)
        self.top = top
        self.cgroup_top = cgroup_top
        self.heap = heap
        self.heap_top = min(heap_top, top)
        self.heap_period_s = heap_period_s
        self._clock = clock
        self._wall_clock = wall_clock
        self.sampler = Sampler(self.root, stagger=_NEVER, idle_on_screen=1, history_len=2, clock=clock,
                               wall_clock=wall_clock)
        parts = [PsiPart(self.root), VmstatPart(self.root), CgroupsPart(self.root), SlabTopPart(slab_top),
                 SockstatPart(), MemoryMountsPart(mount_top)]
        self.collector = Collector(self.root, parts=parts, sampler=self.sampler, workers=0)
        self.collector.want("export", EXPORT_PARTS)
        self._heap_walker = HeapWalker(self.root, heap_period_s, clock, wall_clock) if heap else None
        self.tick = 0
        self.cpu_total_s = 0.0

    def close(self) -> None:
        if self._heap_walker is not None:
            self._heap_walker.close()
        self.collector.close()
        self.sampler.close()

    def sample(self) -> ExportSample:
        """One sample. No source stops the others: a source that fails in any way (an error the
        readers expect, or any other exception) is left out of this sample with the reason in
        ``errors[source]``, and the rest is read."""
        started = time.monotonic()
        cpu0 = time.thread_time()
        errors: dict[str, str] = {}

        snapshot = collected = None
        try:
            collected = self.collector.tick()
            snapshot = collected.processes
        except Exception as e:  # noqa: BLE001 - one source must not stop the others
            errors["processes"] = _reason(e)
            errors["meminfo"] = "not read: the process sampler failed"
        top: tuple[ProcessSample, ...] = ()
        if snapshot is not None:
            if snapshot.warnings:
                errors["processes"] = "; ".join(snapshot.warnings)
            if not snapshot.system.meminfo:
                errors["meminfo"] = next((w for w in snapshot.warnings if "meminfo" in w), "meminfo unreadable")
            top = self._source("processes", errors, lambda: self._top_processes(snapshot), ())
            # Next tick, the sampler reads these rollups itself (they are "on screen").
            self.sampler.visible = frozenset(s.pid for s in top)

        def part(name: str, source: str):
            """The value of part ``name`` at this tick, or None with its error in errors[source]."""
            result = collected.result(name) if collected is not None else None
            if result is None:
                errors[source] = "not read: the process sampler failed" if collected is None else "not read"
                return None
            if result.error is not None:
                errors[source] = result.error
            return result.value

        psi = part("psi", "pressure")
        pressure = psi.latest if psi is not None else None
        if pressure is not None and pressure.unknown:
            errors["pressure"] = "; ".join(f"{k}: {v}" for k, v in pressure.unknown.items())
        if pressure is not None and not pressure.resources:
            pressure = None
        vmstat_view = part("vmstat", "vmstat")
        vmstat = dict(vmstat_view.counters or {}) if vmstat_view is not None else {}
        slabs, slab_total, slab_count = part("slab_top", "slabinfo") or (None, None, None)
        sockstat = part("sockstat", "sockstat")
        mounts = part("memory_mounts", "tmpfs") or ()
        cgroup_version, cgroups = self._cgroups(part("cgroups", "cgroup"), errors)
        heaps = self._source("heap", errors, lambda: self._heaps(top, errors), MappingProxyType({}))
        cpu_s = time.thread_time() - cpu0
        self.cpu_total_s += cpu_s

        sample = ExportSample(
            tick=self.tick,
            wall_time=snapshot.system.wall_time if snapshot is not None else self._wall_clock(),
            uptime_s=snapshot.system.uptime_s if snapshot is not None else None,
            duration_s=time.monotonic() - started,
            cpu_s=cpu_s,
            cpu_total_s=self.cpu_total_s,
            meminfo=snapshot.system.meminfo if snapshot is not None else MappingProxyType({}),
            pressure=pressure,
            vmstat=MappingProxyType(vmstat),
            slabs=slabs,
            slab_total_bytes=slab_total,
            slab_cache_count=slab_count,
            sockstat=sockstat,
            mounts=mounts,
            cgroup_version=cgroup_version,
            cgroups=cgroups,
            processes=top,
            process_count=len(snapshot.processes) if snapshot is not None else 0,
            heaps=heaps,
            errors=MappingProxyType(errors),
        )
        self.tick += 1
        return sample

    @staticmethod
    def _source(name: str, errors: dict[str, str], read, default):
        """``read()``, or ``default`` with the reason in ``errors[name]`` when it fails."""
        try:
            return read()
        except ProcfsError as e:
            errors[name] = getattr(e, "reason", None) or str(e)
        except Exception as e:  # noqa: BLE001 - a reader's bug or a kernel file never seen: this source only
            errors[name] = _reason(e)
        return default

    def _cgroups(self, view, errors: dict[str, str]):
        """The root cgroup and the largest others, at most ``cgroup_top`` (label cardinality)."""
        if view is None:
            return None, ()
        if view.error is not None:
            errors["cgroup"] = view.error
            return None, ()
        tree = view.tree
        root_cg = [cg for cg in tree if cg.path in ("", "/")]
        rest = sorted((cg for cg in tree if cg.path not in ("", "/")), key=lambda cg: (-(cg.current or 0), cg.path))
        return view.version, tuple(root_cg + rest[: max(0, self.cgroup_top - len(root_cg))])

    def _heaps(self, top, errors: dict[str, str]):
        if self._heap_walker is None:
            return MappingProxyType({})
        # The walks run in their own thread (one can take seconds): this tick hands over the
        # processes to walk and takes the figures of the walks finished so far.
        self._heap_walker.want(top[: self.heap_top])
        heaps, failures = self._heap_walker.results()
        if failures and not heaps:
            # Only when no heap at all could be read: one process in the middle of a burst of
            # malloc (no consistent walk) or one the kernel refuses is not a broken source.
            errors["heap"] = "; ".join(failures)
        return heaps

    def _top_processes(self, snapshot) -> tuple[ProcessSample, ...]:
        """The top N user processes by RSS, each with a smaps_rollup read this tick."""
        candidates = [v.sample for v in snapshot.processes if not v.sample.kernel_thread and v.sample.rss_bytes]
        candidates.sort(key=lambda s: (-s.rss_bytes, s.pid))
        now = snapshot.system.monotonic
        out = []
        for s in candidates[: self.top]:
            if s.rollup_time is not None and s.rollup_time < now:
                # New in the top N: its rollup is from an earlier tick; read it now.
                try:
                    rollup = procfs.read_rollup(s.pid, self.root)
                    s = replace(s, rollup=rollup, rollup_time=now,
                                rollup_reason=None if rollup is not None else "no smaps_rollup data (exiting?)")
                except NoSuchProcess:
                    continue
                except ProcfsError as e:
                    s = replace(s, rollup=None, rollup_time=now, rollup_reason=getattr(e, "reason", None) or str(e))
            out.append(s)
        return tuple(out)


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class HeapWalker:
    """Walks (read-only, memtop.heap.analyze) the glibc heaps of the processes it is given, in its
    own thread, each at most every ``period_s``; keeps the last valid figures of each.

    The sampling thread calls :meth:`want` and :meth:`results`; both swap whole immutable
    values, never mutate shared ones.
    """

    def __init__(self, root: Path, period_s: float, clock=time.monotonic, wall_clock=time.time):
        self.root = root
        self.period_s = period_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._wanted: tuple[ProcessSample, ...] = ()
        self._results: Mapping[ProcessIdentity, HeapFigures] = MappingProxyType({})
        self._failures: tuple[str, ...] = ()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def want(self, samples: tuple[ProcessSample, ...]) -> None:
        self._wanted = tuple(samples)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="memtop-export-heap", daemon=True)
            self._thread.start()
        self._wake.set()

    def results(self) -> tuple[Mapping[ProcessIdentity, HeapFigures], tuple[str, ...]]:
        return self._results, self._failures

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        from memtop.heap import Cancelled, analyze  # only with --heap: the heap package is not small

        tried: dict[ProcessIdentity, float] = {}  # monotonic time of the last walk of each
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            wanted = self._wanted
            identities = {s.identity for s in wanted}
            tried = {i: t for i, t in tried.items() if i in identities}
            results = {i: h for i, h in self._results.items() if i in identities}
            failures = []
            for s in wanted:
                if self._stop.is_set():
                    return
                last = tried.get(s.identity)
                if last is not None and self._clock() - last < self.period_s:
                    continue
                tried[s.identity] = self._clock()
                try:
                    report = analyze(s.pid, self.root, retries=2, cancel=self._stop.is_set)
                except Cancelled:
                    return
                except Exception as e:  # noqa: BLE001 - one heap must not stop the walks of the others
                    failures.append(f"{s.pid} {s.comm}: {_reason(e)}")
                    continue
                if report.valid and report.identity == s.identity:
                    results[s.identity] = HeapFigures(
                        system_bytes=report.system_bytes,
                        in_use_bytes=report.in_use_bytes,
                        free_bytes=report.free_bytes + report.fastbin_bytes,
                        top_bytes=report.top_bytes,
                        arenas=len(report.arenas),
                        walk_seconds=report.walk_seconds,
                        walked_at=self._wall_clock(),
                    )
                elif report.status not in ("not-glibc", "kernel-thread", "zombie"):
                    failures.append(f"{s.pid} {s.comm}: {report.reason}")
                self._results = MappingProxyType(dict(results))  # each walk shows at the next tick
            self._results = MappingProxyType(results)
            self._failures = tuple(failures)
