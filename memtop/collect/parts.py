"""The parts the Collector schedules: one per domain, each owning its history.

Every part reads through the domain's own readers and collectors (procfs/, heap/, the other
modules of collect/); the views it returns are the model's frozen records. See
memtop/collect/collector.py for how they are scheduled, and :func:`default_parts` for the set
every consumer builds its Collector from.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Generic, Hashable, Mapping, TypeVar

from memtop.collect.collector import Collector, Job, Part, PartUnavailable
from memtop.format import counted
from memtop.model.pressure import CgroupsView, ProcessCgroups, PsiHistory
from memtop.model.process import ProcessIdentity
from memtop.model.sample import PartResult
from memtop.procfs import AccessDenied, NoSuchProcess, ProcfsError

# A part imports what it reads with when it first runs, not here: the first screen (Processes)
# needs none of the heap walk, page cache, kernel or tmpfs modules (start-up, issue 20 item 3).
if TYPE_CHECKING:
    from memtop.collect.pagecache import HeldFilesCache
    from memtop.heap import LastValidWalks
    from memtop.model.pagecache import FilesView, TreeView, VmstatView
    from memtop.model.tmpfs import ScanResult, TmpfsScans

PSI_HISTORY = 300  # PSI readings kept for the charts: 10 minutes at 2 s
VMSTAT_HISTORY = 150
TREE_LIVE_MAX = 1000  # a directory scan this short is measured again every tick (cachestat only)
HEAP_REFRESH_S = 5.0  # a heap walk this long after the last one, while someone looks
ARENAS_REFRESH_S = 10.0

T = TypeVar("T")


class Shared(Generic[T]):
    """One object for several parts, made when the first of them runs (parts may run at once on
    two workers: made once, under a lock)."""

    def __init__(self, make: Callable[[], T]):
        self._make = make
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._make()
            return self._value


def _last_valid_walks():
    from memtop.heap import LastValidWalks

    return LastValidWalks()


def _held_files(root: Path):
    from memtop.collect.pagecache import HeldFilesCache

    return HeldFilesCache(root)


class KernelPart(Part):
    """Slab caches (with growth from the part's own history), sockets per network namespace,
    file handles, fd growth, and the selected process's fd table."""

    name = "kernel"

    def __init__(self, root: Path, *, namespaces: bool = True, **collector_options):
        self.root = root
        self.collector_options = collector_options
        self.namespaces = namespaces
        self._collector = Shared(self._new_collector)

    def _new_collector(self):
        from memtop.collect.kernel import KernelCollector

        return KernelCollector(self.root, **self.collector_options)

    @property
    def collector(self):
        return self._collector.get()

    def key(self, target, params):
        return target.pid if target is not None else None

    def collect(self, job: Job):
        pid = job.target.pid if job.target is not None else None
        return self.collector.collect(job.snapshot, pid, namespaces=self.namespaces)


class PsiPart(Part):
    """System PSI (/proc/pressure/*) every tick, with the history the charts draw."""

    name = "psi"
    at_start = True

    def __init__(self, root: Path):
        self.root = Path(root)
        self._history: deque = deque(maxlen=PSI_HISTORY)
        self._lock = threading.Lock()

    def collect(self, job: Job) -> PsiHistory:
        from memtop.procfs.pressure import is_live_proc, pressure_unavailable_reason, read_system_pressure

        reason = pressure_unavailable_reason(self.root)
        sample = read_system_pressure(self.root)
        live = is_live_proc(self.root)
        with self._lock:
            last = self._history[-1] if self._history else None
            # A captured tree reads the same every time: one reading, not a flat line.
            if last is None or live or dict(last.resources) != dict(sample.resources):
                self._history.append(sample)
            return PsiHistory(tuple(self._history), reason, live)


class CgroupsPart(Part):
    """Every memory cgroup against its limit, the selected process's cgroup in detail, and the
    events counted when memtop first looked (the baseline of "events since memtop started")."""

    name = "cgroups"
    at_start = True  # the baseline: one walk at start, whoever looks

    def __init__(self, root: Path):
        self.root = Path(root)
        self._hierarchy = None
        self._baselines: dict[str, Mapping[str, int]] = {}
        self._baseline_done = False

    def key(self, target, params):
        return target.pid if target is not None else None

    def collect(self, job: Job) -> CgroupsView:
        from memtop.procfs.cgroup import locate_memory_hierarchy, memory_cgroup_of, read_cgroup_memory, walk_memory_cgroups

        target_pid = job.target.pid if job.target is not None else None
        try:
            hierarchy = self._hierarchy or locate_memory_hierarchy(self.root)
        except ProcfsError as e:
            return CgroupsView(None, None, target_pid=target_pid, error=str(e))
        self._hierarchy = hierarchy
        tree = tuple(walk_memory_cgroups(hierarchy))
        selected = reason = None
        if target_pid is not None:
            try:
                selected = read_cgroup_memory(hierarchy, memory_cgroup_of(target_pid, hierarchy, self.root), detail=True)
            except NoSuchProcess:
                reason = f"PID {target_pid} exited (or its cgroup was removed)"
            except ProcfsError as e:
                reason = str(e)
        if not self._baseline_done:
            # Cgroups seen now are the "before"; later ones count from zero (created since).
            self._baselines = {cg.path: MappingProxyType(dict(cg.events)) for cg in tree}
            self._baseline_done = True
        else:
            for cg in tree:
                self._baselines.setdefault(cg.path, MappingProxyType({}))
        return CgroupsView(hierarchy.version, hierarchy.mount_point or str(hierarchy.directory), tree, target_pid,
                           selected, reason, None, MappingProxyType(dict(self._baselines)))


class VmstatPart(Part):
    """/proc/vmstat's thrashing counters as rates between ticks (refaults, major faults, bi/bo)."""

    name = "vmstat"

    def __init__(self, root: Path):
        self.root = root
        self.sampler = None
        self._lock = threading.Lock()

    def collect(self, job: Job) -> VmstatView:
        from memtop.collect.pagecache import VmstatSampler
        from memtop.model.pagecache import VmstatView

        with self._lock:
            if self.sampler is None:
                self.sampler = VmstatSampler(self.root, VMSTAT_HISTORY)
            # The tick's clock, so that rates share the processes' time base.
            self.sampler.sample(job.snapshot.system.monotonic)
            if job.one_shot and not self.sampler.history:
                time.sleep(0.5)  # a single sample has no history: two reads half a second apart
                self.sampler.sample(job.snapshot.system.monotonic + 0.5)
            counters = self.sampler.counters
            return VmstatView(tuple(self.sampler.history), MappingProxyType(dict(counters)) if counters else None)


def _listed_note(age_s: float) -> str:
    return f"; who holds what listed {age_s:.0f} s ago" if age_s >= 1 else ""


class ProcessFilesPart(Part):
    """Page cache, source (a): the files the selected process maps or holds open (read at every
    run), each with every process that holds it (from the shared listing of source (b))."""

    name = "process_files"

    def __init__(self, held: Shared[HeldFilesCache] | None = None):
        self.held = held

    def key(self, target, params):
        return target

    def collect(self, job: Job) -> FilesView:
        from memtop.collect.pagecache import process_top_files
        from memtop.model.pagecache import FilesView

        target = job.target
        if target is None:
            return FilesView((), "no process selected: select one on the Processes tab", None)
        holders, age = self.held.get().get() if self.held is not None and not job.one_shot else (None, 0.0)
        try:
            files = process_top_files(target.pid, job.root, holders=holders)
            note = f"PID {target.pid}: " + ("mapped or open" if files else "no files mapped or open") + _listed_note(age)
        except NoSuchProcess:
            files, note = [], f"PID {target.pid} has exited"
        except AccessDenied as e:
            files, note = [], f"PID {target.pid}: {e.reason}"
        return FilesView(tuple(files), note, target.pid)


class SystemFilesPart(Part):
    """Page cache, source (b): the files any process maps or holds open, most cached first. The
    files' cached bytes are measured at every run; who holds them is listed again at the
    :class:`HeldFilesCache`'s pace (the note says how old the list is)."""

    name = "system_files"

    def __init__(self, held: Shared[HeldFilesCache] | None = None):
        self.held = held

    def collect(self, job: Job) -> FilesView:
        from memtop.collect.pagecache import top_cached_files
        from memtop.model.pagecache import FilesView
        from memtop.procfs.cachestat import cachestat_supported

        listing, age = self.held.get().get() if self.held is not None and not job.one_shot else (None, 0.0)
        files, held = top_cached_files(job.root, cancel=job.cancelled, held=listing)
        processes = counted(held.processes_seen, 'process', 'processes')
        note = (f"held by {processes}" if files else f"no files open or mapped in {processes}") + _listed_note(age)
        if held.processes_denied:
            # not "by this user": the kernel refuses some even to root (PID 1's fd table here)
            note += (f"; open files of {counted(held.processes_denied, 'process', 'processes')} unreadable "
                     "(permission denied), not listed")
        method = "cachestat(2)" if cachestat_supported() else "mmap(2)+mincore(2)"
        return FilesView(tuple(files), note, None, held.processes_seen, held.processes_denied, method)


class ProcessCgroupsPart(Part):
    """Every process's memory cgroup (/proc/PID/cgroup), and each of those cgroups in detail.
    A process's cgroup is read once per process (kept while it lives: a move between cgroups is
    rare, and seen within ``refresh_ticks``)."""

    name = "process_cgroups"

    def __init__(self, root: Path, refresh_ticks: int = 30):
        self.root = Path(root)
        self.refresh_ticks = refresh_ticks
        self._hierarchy = None
        self._known: dict[ProcessIdentity, tuple[int, str]] = {}  # identity -> (tick read, path)

    def collect(self, job: Job) -> ProcessCgroups:
        from memtop.procfs.cgroup import locate_memory_hierarchy, memory_cgroup_of, read_cgroup_memory

        try:
            hierarchy = self._hierarchy or locate_memory_hierarchy(self.root)
        except ProcfsError as e:
            return ProcessCgroups(MappingProxyType({}), MappingProxyType({}), error=str(e))
        self._hierarchy = hierarchy
        tick = job.snapshot.tick
        paths: dict[int, str] = {}
        reasons: dict[int, str] = {}
        alive = set()
        for view in job.snapshot.processes:
            identity = view.sample.identity
            alive.add(identity)
            known = self._known.get(identity)
            if known is None or tick - known[0] >= self.refresh_ticks:
                try:
                    known = (tick, memory_cgroup_of(view.pid, hierarchy, self.root))
                except NoSuchProcess:
                    reasons[view.pid] = "process exited"
                    continue
                except ProcfsError as e:
                    reasons[view.pid] = str(e)
                    continue
                self._known[identity] = known
            paths[view.pid] = known[1]
        for identity in self._known.keys() - alive:
            del self._known[identity]
        details = {}
        for path in set(paths.values()):
            try:
                details[path] = read_cgroup_memory(hierarchy, path, detail=True)
            except ProcfsError:
                continue  # removed meanwhile: its processes' details are unknown
        return ProcessCgroups(MappingProxyType(paths), MappingProxyType(details), MappingProxyType(reasons))


class TreePart(Part):
    """Page cache, source (c): a directory scan asked for by the user (params root, scan),
    with progress; then a short list is measured again each tick (cachestat only, no walk)."""

    name = "tree"

    def __init__(self, root: Path, limit: int | None = None, held: Shared[HeldFilesCache] | None = None):
        from memtop.procfs.treescan import DEFAULT_LIMIT

        self.limit = limit or DEFAULT_LIMIT
        self.held = held
        self._scanned: dict[Hashable, TreeView] = {}

    def key(self, target, params):
        return (params.get("root"), params.get("scan")) if params.get("root") else None

    def interval_s(self, tick_s, last):
        view = last.value if last is not None else None
        if view is None or not view.progress.done or len(view.files) > TREE_LIVE_MAX:
            return None  # only when asked (r rescans)
        return 0.0

    def collect(self, job: Job) -> TreeView | None:
        from memtop.model.pagecache import TreeScanProgress, TreeView
        from memtop.procfs.cachestat import file_cache_stat, own_open_files
        from memtop.procfs.treescan import TreeScanError, scan_tree

        root = job.params.get("root")
        if not root:
            return None
        key = (root, job.params.get("scan"))
        done = self._scanned.get(key)
        if done is not None and done.progress.done and not done.progress.cancelled:
            own = own_open_files()
            stats = [file_cache_stat(f.path, follow_symlinks=False, own=own) for f in done.files]
            files, note = self._with_holders(stats, job)
            view = TreeView(root, files, done.progress, done.error, note)
            self._scanned = {key: view}
            return view
        cancel = threading.Event()

        def progress(p: TreeScanProgress) -> None:
            if job.cancelled():
                cancel.set()
            job.progress(p)

        try:
            found, final = scan_tree(root, limit=self.limit, cancel=cancel, progress=progress, progress_every=500)
        except TreeScanError as e:
            return TreeView(root, (), TreeScanProgress(root, 0, self.limit, True), str(e))
        files, note = self._with_holders(found, job)
        view = TreeView(root, files, final, None, note)
        self._scanned = {key: view}
        return view

    def _with_holders(self, stats, job: Job) -> tuple[tuple, str]:
        """The files of ``stats``, each with the processes that map it or hold it open (by device
        and inode, from the listing sources (a) and (b) share), and the note on that listing."""
        from memtop.model.pagecache import CachedFile

        if self.held is None or job.one_shot:
            return tuple(CachedFile(s) for s in stats), "who holds the files is not listed here"
        by_inode, held, age = self.held.get().by_inode()
        files = tuple(CachedFile(s, tuple(sorted(by_inode.get((s.device, s.inode), ())))
                                 if s.device is not None else ()) for s in stats)
        note = f"holders from {counted(held.processes_seen, 'process', 'processes')}" + _listed_note(age)
        if held.processes_denied:
            note += f"; open files of {counted(held.processes_denied, 'process', 'processes')} unreadable"
        return files, note


class TmpfsPart(Part):
    """RAM held by files: memory-backed mounts, deleted-but-open files, SysV and POSIX shared
    memory, memfds, and the reconciliation with meminfo's Shmem. A pass costs CPU per process:
    it runs at most every tick and keeps its cost under ~5 % of a core."""

    name = "tmpfs"

    def __init__(self, root: Path, *, smaps: bool = True):
        self.root = Path(root)
        self.smaps = smaps

    def collect(self, job: Job):
        from memtop.collect.tmpfs import collect_report

        return collect_report(job.root, dict(job.snapshot.system.meminfo) or None, smaps=self.smaps)


class TmpfsScanPart(Part):
    """The files of one memory-backed mount (params mount_key, path, mountpoint), asked for by
    the user; every scan made is kept, newest last, with its time."""

    name = "tmpfs_scan"

    def __init__(self, root: Path):
        self._scans: dict[str, tuple[ScanResult, float]] = {}

    def key(self, target, params):
        return (params.get("mount_key"), params.get("scan")) if params.get("mount_key") else None

    def interval_s(self, tick_s, last):
        return None  # only when asked

    def collect(self, job: Job) -> TmpfsScans | None:
        from memtop.collect.tmpfs import ScanCancelled, scan_tree
        from memtop.model.tmpfs import TmpfsScans

        key = job.params.get("mount_key")
        if key is None:
            return TmpfsScans(MappingProxyType(dict(self._scans)))
        mountpoint = job.params.get("mountpoint")

        def progress(entries: int, files: int) -> bool:
            if job.cancelled():
                return False
            job.progress((key, mountpoint, entries, files))
            return True

        try:
            result = scan_tree(job.params["path"], mount_key=key, mountpoint=mountpoint, progress=progress)
        except ScanCancelled:
            raise PartUnavailable("scan stopped (a new scan started, or nobody looks)") from None
        self._scans[key] = (result, time.time())  # wall time: the tab shows ages against file mtimes
        return TmpfsScans(MappingProxyType(dict(self._scans)))


class _SelectedHeapPart(Part):
    """A part about the selected process's heap: keyed by the process, sharing the last valid
    walk of each heap with the other such part."""

    def __init__(self, root: Path, walks: Shared[LastValidWalks] | None = None):
        self._walks = walks or Shared(_last_valid_walks)

    @property
    def walks(self) -> LastValidWalks:
        return self._walks.get()

    def key(self, target, params):
        return target


class LayersPart(_SelectedHeapPart):
    """The selected process, layer by layer: kernel figures, the allocator's heap (a read-only
    walk), runtime regions and findings. Walks again every few seconds while someone looks."""

    name = "layers"

    def interval_s(self, tick_s, last):
        return HEAP_REFRESH_S

    def collect(self, job: Job):
        from memtop.heap import Cancelled
        from memtop.collect.layers import explain

        if job.target is None:
            return None
        last_post = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last_post[0] >= 0.2:
                last_post[0] = now
                job.progress((done, total))

        try:
            return explain(job.target.pid, job.root, progress=progress, cancel=job.cancelled, walks=self.walks)
        except Cancelled:
            return None


class ArenasPart(_SelectedHeapPart):
    """The selected process's arenas: threads, the cap, the environment, the heap walk per
    arena, the tuning state and the smaps census. Walks again while someone looks."""

    name = "arenas"

    def interval_s(self, tick_s, last):
        # A big heap or thousands of mappings make a walk expensive: the Collector spaces the
        # walks to PART_DUTY times their CPU cost, 10 s at least.
        return ARENAS_REFRESH_S

    def collect(self, job: Job):
        from memtop.heap.arena_advice import analyze_arenas

        identity = job.target
        if identity is None:
            return None
        try:
            analysis = analyze_arenas(identity.pid, job.root, walks=self.walks)
        except NoSuchProcess:
            raise PartUnavailable(f"PID {identity.pid} has exited") from None
        except ProcfsError as e:
            raise PartUnavailable(getattr(e, "reason", None) or str(e)) from None
        if analysis.start_ticks != identity.start_ticks:
            raise PartUnavailable(f"PID {identity.pid} is now another process")
        return analysis


class _SharedContainers:
    """One ContainerCollector for the two container parts: one membership cache and one
    resolver of container names. Its lock: the parts may run at once on two workers."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.lock = threading.Lock()
        self._collector = None

    def collector(self):
        from memtop.procfs.containers import ContainerCollector

        if self._collector is None:
            self._collector = ContainerCollector(self.root)
        return self._collector


class ContainerNamesPart(Part):
    """Which container, pod, machine or systemd unit each process is in (the Processes tab's
    Container column): each new process's /proc/PID/cgroup, nothing else."""

    name = "container_names"

    def __init__(self, shared: _SharedContainers):
        self.shared = shared

    def collect(self, job: Job):
        with self.shared.lock:
            return self.shared.collector().membership([v.sample for v in job.snapshot.processes])


class ContainersPart(Part):
    """Every container's memory (memory.current against its limits, the split, what reclaim can
    free, the members' PSS, events) and the OOM watch: kill orders, time to each limit from the
    trend, kills seen with their victims (from the kernel log when it can be read). The watch
    learns while someone wants this part (the TUI: every tick on its tab, else when the
    :class:`OomSentinel` says; memtop record every TAKEN_EVERY ticks): its trends and events
    start then."""

    name = "containers"

    def __init__(self, shared: _SharedContainers):
        from memtop.model.oom import OomWatch

        self.shared = shared
        self.watch = OomWatch()
        self._kernel_log = None

    def collect(self, job: Job):
        from memtop.model.containers import ContainersView
        from memtop.model.oom import oom_sample
        from memtop.procfs.oom import KernelLog, read_oom_tick

        samples = [v.sample for v in job.snapshot.processes]
        meminfo = job.snapshot.system.meminfo
        with self.shared.lock:
            containers = self.shared.collector().collect(samples, meminfo=meminfo)
        if self._kernel_log is None and not job.one_shot:
            self._kernel_log = KernelLog()  # from its end: kills from now on
        # One sample (memtop snapshot): the kill orders, no trend and no kill to see.
        tick = read_oom_tick(samples, containers, root=job.root, kernel_log=self._kernel_log, meminfo=meminfo)
        self.watch.update(tick)
        return ContainersView(containers, oom_sample(self.watch))

    def close(self) -> None:
        if self._kernel_log is not None:
            self._kernel_log.close()


class OomSentinel:
    """When the OOM watch (the containers part) reads while its tab is hidden: at the first tick
    the sampler asks for (the baseline its counters are compared with; the first screen is drawn
    before it), every ``every_s`` seconds after that, and at once when /proc/vmstat's oom_kill
    (every OOM kill, a cgroup's too, counts there) moved since the last tick. So a kill before the
    Containers tab is opened is listed with its victim, for the cost of one small file a tick: a
    reading of the containers costs ~0.1 s of CPU at 1,000 processes.

    A reading asked for is forced past the Collector's spacing (PART_DUTY) and wanted until one
    made from that tick's processes or a later one has arrived: a second kill soon after a
    reading is read too, not only at the next baseline. While the watch waits for a victim still
    listed in /proc (no kernel log named it), the next reading is asked for as soon as one arrives."""

    PART = "containers"

    def __init__(self, root: Path, *, every_s: float = 300.0):
        self.root = root
        self.every_s = every_s
        self._kills: int | None = None  # /proc/vmstat oom_kill at the last tick
        self._asked_at: float | None = None  # monotonic time of the last reading asked for
        self._asked_tick: int | None = None  # the tick it was asked at, until it has been read

    def _oom_kills(self) -> int | None:
        from memtop.procfs.vmstat import read_vmstat

        try:
            return read_vmstat(self.root).get("oom_kill")
        except (ProcfsError, OSError):
            return None  # then only the time says when

    def wants(self, collector: Collector, sample) -> tuple[str, ...]:
        """After a tick: the parts the watch wants now (``(PART,)`` or nothing); a reading newly
        due is forced on ``collector``. ``sample``: the tick's, for its time, tick number and the
        part's latest result."""
        snapshot = sample.processes
        kills = self._oom_kills()
        moved = kills is not None and self._kills is not None and kills != self._kills
        self._kills = kills
        now = snapshot.system.monotonic
        result = sample.result(self.PART)
        if self._asked_tick is not None and result is not None and result.tick >= self._asked_tick:
            self._asked_tick = None  # read
        # A kill read before its victim left /proc (no kernel log to name it): read again at
        # the next ticks, while the watch waits for it (OomWatch.pending_s), not at the baseline.
        awaiting = (self._asked_tick is None and result is not None and result.value is not None
                    and result.value.oom is not None and result.value.oom.awaiting_victims > 0)
        if moved or awaiting or self._asked_at is None or now - self._asked_at >= self.every_s:
            self._asked_at, self._asked_tick = now, snapshot.tick
            collector.refresh(self.PART)
        return (self.PART,) if self._asked_tick is not None else ()


def default_parts(root: Path, **options: Any) -> list[Part]:
    """Every part, as the TUI, snapshot, record and export build their Collector."""
    walks = Shared(_last_valid_walks)
    containers = _SharedContainers(root)
    held = Shared(lambda: _held_files(root))
    return [
        KernelPart(root, **options.get("kernel", {})),
        PsiPart(root),
        CgroupsPart(root),
        VmstatPart(root),
        ProcessFilesPart(held),
        SystemFilesPart(held),
        ProcessCgroupsPart(root),
        TreePart(root, held=held),
        TmpfsPart(root),
        TmpfsScanPart(root),
        LayersPart(root, walks),
        ArenasPart(root, walks),
        ContainerNamesPart(containers),
        ContainersPart(containers),
    ]


def heap_age_s(result: PartResult | None, now: float) -> float | None:
    return None if result is None else now - result.finished
