"""OOM foresight: who the kernel would kill, how soon a cgroup reaches its limit, and the kills
that happened, with their victims.

**Kill order** follows mm/oom_kill.c. ``oom_badness()`` gives each task
``rss + swap entries + page-table pages + oom_score_adj * totalpages / 1000`` (in pages), where
``totalpages`` is RAM + swap for a system OOM and the cgroup's limit (plus the swap it may use,
mem_cgroup_get_max) for a cgroup OOM. A task is never chosen when its oom_score_adj is -1000
(OOM_SCORE_ADJ_MIN), when it is a kernel thread or the global init, when it has no mm (a zombie),
when it was already reaped (MMF_OOM_SKIP) or is in vfork: badness is LONG_MIN. ``select_bad_process``
keeps the task with the most points, replacing the chosen one when ``points >= chosen`` (it skips
only ``points < chosen``): among equal points the task *visited last* wins. A system OOM visits
processes in fork order (for_each_process walks init_task.tasks, new tasks added at the tail), so
the newest wins a tie; a cgroup OOM visits the cgroup tree in pre-order and each cgroup's tasks in
the order they joined it (mem_cgroup_scan_tasks), which /proc does not show: memtop orders ties by
start time, newest first, and marks them ``tied``. /proc/PID/oom_score is the kernel's own
``(1000 + badness * 1000 / totalpages) * 2 / 3`` for the system scope (0 when unkillable); it is
coarse (one unit per ~0.15% of RAM), so memtop ranks by the points themselves and shows the
kernel's score beside them.

**Time to the limit** is a least-squares line through memory.current (or, system-wide, the fall of
MemAvailable) over the last ``window_s`` seconds; the fit's R² and the number of points are kept
with it. No estimate when the line is flat or falling, or has too few points. Reaching the limit
is not an OOM by itself: the kernel first reclaims what it can (see
memtop.model.containers.Reclaim); the estimate says when reclaim starts to be forced.

**Kills observed**: a cgroup's oom_kill counter (v2 memory.events, which counts up the hierarchy
unless cgroup2 is mounted with memory_localevents; v1 memory.oom_control, which counts in the
victim's own cgroup only: memcg_memory_event() stops at the first cgroup on v1) or /proc/vmstat
oom_kill went up between two ticks. Whether a cgroup's limit caused it is read from the counters
of the cgroup whose limit applies (v2 memory.events ``oom``, v1 memory.failcnt: the page counter
that refused the charge is the limiting cgroup's, often a parent such as a pod's), or from the
kernel log's ``constraint=``. The victim is the
process the kernel log names ("Killed process PID (comm)", read from /dev/kmsg as root), else the
process that vanished from that cgroup between the two ticks (the most likely one by badness when
several did), with what it held at the last tick. :class:`OomWatch` keeps events for ``keep_s``
(10 minutes by default, like atop's visible history) so that a kill between two glances is seen.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

from memtop.format import counted

OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000
_EMPTY: Mapping = MappingProxyType({})


# --- kill order ------------------------------------------------------------------------------------


def badness_pages(rss_pages: int, swap_pages: int, pgtables_pages: int, adj: int, totalpages: int) -> int | None:
    """oom_badness() for a killable task: its points (pages); None for OOM_SCORE_ADJ_MIN."""
    if adj <= OOM_SCORE_ADJ_MIN:
        return None
    return rss_pages + swap_pages + pgtables_pages + adj * (totalpages // 1000)


def oom_score_from_badness(points: int | None, totalpages: int) -> int:
    """/proc/PID/oom_score as fs/proc/base.c proc_oom_score() computes it from oom_badness().

    C division truncates toward zero; Python's // floors, so the signs are handled apart.
    """
    if points is None or totalpages <= 0:
        return 0
    scaled = points * 1000
    quotient = abs(scaled) // totalpages
    quotient = quotient if scaled >= 0 else -quotient
    return (1000 + quotient) * 2 // 3


@dataclass(frozen=True, slots=True)
class OomCandidate:
    """One process as the OOM killer would weigh it (bytes; None where unknown).

    ``rss``, ``swap``, ``pgtables`` come from /proc/PID/status (VmRSS, VmSwap, VmPTE): the counters
    oom_badness() reads (get_mm_rss, MM_SWAPENTS, mm_pgtables_bytes). ``oom_score`` is the
    kernel's own /proc/PID/oom_score, read at the same tick.
    """

    pid: int
    start_ticks: int
    name: str
    cgroup: str | None
    oom_score: int | None
    oom_score_adj: int | None
    rss: int | None
    swap: int | None
    pgtables: int | None
    unkillable: str | None = None  # why the kernel would never choose it (kernel thread, init, zombie)


@dataclass(frozen=True, slots=True)
class Ranked:
    candidate: OomCandidate
    points: int  # badness in pages for this scope's totalpages
    score: int  # the oom_score these points give for the system scope's totalpages
    tied: bool  # same points as a neighbour: the order between them is the kernel's visit order


@dataclass(frozen=True, slots=True)
class KillOrder:
    """The order in which the OOM killer would choose, first first, for one scope."""

    scope: str  # "system" or a cgroup path
    totalpages: int
    ranked: tuple[Ranked, ...]
    excluded: tuple[tuple[OomCandidate, str], ...]  # never chosen, and why

    @property
    def first(self) -> Ranked | None:
        return self.ranked[0] if self.ranked else None


def kill_order(candidates: Iterable[OomCandidate], totalpages: int, scope: str, page_size: int,
               system_totalpages: int | None = None) -> KillOrder:
    """Rank ``candidates`` by oom_badness() for ``totalpages`` (see the module doc on ties)."""
    ranked: list[tuple[int, int, OomCandidate]] = []
    excluded: list[tuple[OomCandidate, str]] = []
    for c in candidates:
        if c.unkillable:
            excluded.append((c, c.unkillable))
            continue
        if c.oom_score_adj is None or c.rss is None:
            excluded.append((c, "oom_score_adj or VmRSS unknown"))
            continue
        if c.oom_score_adj <= OOM_SCORE_ADJ_MIN:
            excluded.append((c, "oom_score_adj is -1000 (OOM_SCORE_ADJ_MIN): never killed"))
            continue
        points = badness_pages(c.rss // page_size, (c.swap or 0) // page_size, (c.pgtables or 0) // page_size,
                               c.oom_score_adj, totalpages)
        ranked.append((points, c.start_ticks, c))
    ranked.sort(key=lambda r: (-r[0], -r[1], -r[2].pid))
    system_total = system_totalpages or totalpages
    out = []
    for i, (points, _start, c) in enumerate(ranked):
        tied = (i > 0 and ranked[i - 1][0] == points) or (i + 1 < len(ranked) and ranked[i + 1][0] == points)
        system_points = points if system_total == totalpages else badness_pages(
            c.rss // page_size, (c.swap or 0) // page_size, (c.pgtables or 0) // page_size, c.oom_score_adj,
            system_total)
        out.append(Ranked(c, points, oom_score_from_badness(system_points, system_total), tied))
    return KillOrder(scope, totalpages, tuple(out), tuple(excluded))


def memcg_totalpages(limit: int, page_size: int, *, swap_limit: int | None, swap_total: int, swappiness: int | None) -> int:
    """mem_cgroup_get_max(): the limit in pages, plus the swap the cgroup may use when swappiness > 0."""
    pages = limit // page_size
    if swappiness:
        swap_pages = swap_total // page_size
        pages += swap_pages if swap_limit is None else min(swap_limit // page_size, swap_pages)
    return max(1, pages)


# --- time to the limit ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinearFit:
    slope: float  # units per second
    intercept: float  # at t = 0
    r2: float | None  # None when every y is the same (no variance to explain)
    points: int
    span_s: float


def least_squares(points: Sequence[tuple[float, float]]) -> LinearFit | None:
    """Ordinary least squares y = a + b t; None with fewer than two distinct times."""
    n = len(points)
    if n < 2:
        return None
    t0 = points[0][0]
    ts = [t - t0 for t, _ in points]
    ys = [float(y) for _, y in points]
    mean_t = sum(ts) / n
    mean_y = sum(ys) / n
    stt = sum((t - mean_t) ** 2 for t in ts)
    if stt <= 0:
        return None
    sty = sum((t - mean_t) * (y - mean_y) for t, y in zip(ts, ys))
    slope = sty / stt
    intercept = mean_y - slope * mean_t - slope * t0
    syy = sum((y - mean_y) ** 2 for y in ys)
    if syy <= 0:
        r2 = None
    else:
        residual = sum((y - (mean_y + slope * (t - mean_t))) ** 2 for t, y in zip(ts, ys))
        r2 = max(0.0, 1.0 - residual / syy)
    return LinearFit(slope, intercept, r2, n, ts[-1] - ts[0])


TREND_WINDOW_S = 60.0
EVENTS_KEPT_S = 600.0  # the kills listed: the last 10 minutes
TREND_MIN_POINTS = 4
# Below this much growth over the window the line is called flat: a few pages of page-table or
# slab churn are not a trend toward anything.
FLAT_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class TimeToLimit:
    """When the trend reaches the limit (seconds from the last point), or why there is no answer."""

    seconds: float | None
    slope_bytes_per_s: float | None
    r2: float | None
    window_s: float
    points: int
    headroom: int | None  # bytes from the last value to the limit
    limit: int | None
    limit_name: str
    reason: str | None = None  # why seconds is None


def time_to_limit(points: Sequence[tuple[float, int]], limit: int | None, *, limit_name: str,
                  window_s: float = TREND_WINDOW_S, min_points: int = TREND_MIN_POINTS,
                  flat_bytes: int = FLAT_BYTES) -> TimeToLimit:
    """Extrapolate ``points`` (monotonic time, bytes used) of the last ``window_s`` to ``limit``."""
    usable = [(t, v) for t, v in points if v is not None]
    if usable:
        last_t = usable[-1][0]
        usable = [(t, v) for t, v in usable if last_t - t <= window_s]
    headroom = None if limit is None or not usable else limit - usable[-1][1]

    def none(reason: str, fit: LinearFit | None = None) -> TimeToLimit:
        return TimeToLimit(None, fit.slope if fit else None, fit.r2 if fit else None, window_s, len(usable),
                           headroom, limit, limit_name, reason)

    if limit is None:
        return none(f"no limit ({limit_name} is max)")
    if len(usable) < min_points:
        return none(f"{counted(len(usable), 'point')} in the last {window_s:g} s; {min_points} needed")
    fit = least_squares(usable)
    if fit is None:
        return none("the points share one time")
    if headroom is not None and headroom <= 0:
        return TimeToLimit(0.0, fit.slope, fit.r2, window_s, fit.points, headroom, limit, limit_name)
    if fit.slope <= 0:
        return none("flat or falling", fit)
    if fit.slope * max(fit.span_s, 1e-9) < flat_bytes:
        return none(f"flat: under {flat_bytes >> 20} MiB of growth over {fit.span_s:.0f} s", fit)
    return TimeToLimit(headroom / fit.slope, fit.slope, fit.r2, window_s, fit.points, headroom, limit, limit_name)


def time_to_exhaustion(available: Sequence[tuple[float, int]], *, window_s: float = TREND_WINDOW_S,
                       min_points: int = TREND_MIN_POINTS) -> TimeToLimit:
    """System-wide: when MemAvailable, at its current rate of fall, reaches zero. MemAvailable at
    zero is not an OOM yet (the kernel still reclaims what its estimate left out), it is the
    point where it must."""
    usage = [(t, -v) for t, v in available if v is not None]
    result = time_to_limit(usage, 0, limit_name="MemAvailable", window_s=window_s, min_points=min_points)
    slope = -result.slope_bytes_per_s if result.slope_bytes_per_s is not None else None
    # headroom: 0 - (-MemAvailable), MemAvailable itself (what is left to fall)
    reason = result.reason.replace("flat or falling", "flat or rising") if result.reason else None
    return replace(result, slope_bytes_per_s=slope, limit=None, reason=reason)


# --- kills observed --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KernelOomReport:
    """The kernel's own account of one OOM kill (dump_header / __oom_kill_process in mm/oom_kill.c).

    ``tasks`` holds the "Tasks state" table printed before the kill when vm.oom_dump_tasks is on:
    (pid, uid, tgid, total_vm, rss, pgtables_bytes, swapents, oom_score_adj, name), pages except
    pgtables_bytes.
    """

    seq: int  # /dev/kmsg sequence number of the "Killed process" record
    usec: int  # its timestamp, µs since boot
    pid: int
    comm: str
    constraint: str | None  # CONSTRAINT_NONE (system), CONSTRAINT_MEMCG (a cgroup limit), ...
    oom_memcg: str | None  # the cgroup whose limit was hit (CONSTRAINT_MEMCG)
    task_memcg: str | None  # the victim's cgroup
    uid: int | None
    total_vm: int | None  # bytes
    anon_rss: int | None
    file_rss: int | None
    shmem_rss: int | None
    pgtables: int | None
    oom_score_adj: int | None
    text: str  # the "Killed process" line as the kernel wrote it
    tasks: tuple[tuple[int, int, int, int, int, int, int, int, str], ...] = ()  # typed: recordings decode it

    @property
    def rss(self) -> int | None:
        if None in (self.anon_rss, self.file_rss, self.shmem_rss):
            return None
        return self.anon_rss + self.file_rss + self.shmem_rss

    @property
    def scope(self) -> str:
        if self.constraint == "CONSTRAINT_MEMCG":
            return "cgroup"
        if self.constraint is None:
            return "unknown"
        return "system"


@dataclass(frozen=True, slots=True)
class ProcessBrief:
    """What memtop last knew of a process: enough to say what a victim held."""

    pid: int
    start_ticks: int
    name: str
    cgroup: str | None  # memory cgroup path
    rss: int | None
    pss: int | None
    swap: int | None
    state: str
    oom_score: int | None = None
    oom_score_adj: int | None = None
    pgtables: int | None = None


@dataclass(frozen=True, slots=True)
class CgroupCounters:
    """A memory cgroup's OOM-related figures at one tick."""

    path: str
    version: int
    oom_kill: int | None  # v2 memory.events oom_kill, v1 memory.oom_control oom_kill
    oom: int | None = None  # v2 memory.events oom: times the limit was hit and reclaim failed
    max_events: int | None = None  # v2 memory.events max
    failcnt: int | None = None  # v1 memory.failcnt: charges refused at the limit
    current: int | None = None
    limit: int | None = None  # the effective hard limit
    oom_totalpages: int | None = None  # mem_cgroup_get_max() in pages, for the kill order


@dataclass(frozen=True, slots=True)
class OomTick:
    """Everything the OomWatch needs from one tick (built by memtop.procfs.oom.read_oom_tick)."""

    time: float  # monotonic
    wall_time: float
    vmstat_oom_kill: int | None
    mem_available: int | None
    system_totalpages: int | None  # MemTotal + SwapTotal in pages
    page_size: int
    cgroups: Mapping[str, CgroupCounters] = field(default_factory=lambda: _EMPTY)
    processes: Mapping[int, ProcessBrief] = field(default_factory=lambda: _EMPTY)
    kernel_reports: tuple[KernelOomReport, ...] = ()
    unknown: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class OomVictim:
    pid: int
    name: str
    source: str  # "kernel log", "vanished between ticks", "likely: ..."
    last: ProcessBrief | None  # what memtop saw at the last ticks it was alive (the larger of two: _most)
    kernel: KernelOomReport | None = None


@dataclass(frozen=True, slots=True)
class OomEvent:
    """One or more OOM kills seen between two ticks in one scope."""

    time: float  # monotonic time of the tick that saw it
    wall_time: float
    since: float  # monotonic time of the tick before: the kill happened in between
    scope: str  # "cgroup" (its limit), "system", or "unknown"
    scope_basis: str  # what says so
    cgroup: str | None  # the cgroup whose counter moved (deepest seen), None for system-only
    kills: int
    counters: Mapping[str, int]  # the deltas seen: "oom_kill", "oom", "failcnt", "vmstat oom_kill"
    victims: tuple[OomVictim, ...] = ()
    # The cgroup and its watched ancestors whose limit counters moved: path -> {"oom"|"failcnt"|"max_events": n}
    limit_hit: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: _EMPTY)
    limit: int | None = None
    current_before: int | None = None
    victim_reason: str | None = None  # why no (or fewer) victims than kills were named


def _within(path: str | None, root: str) -> bool:
    if path is None:
        return False
    if root in ("", "/"):
        return True
    return path == root or path.startswith(root.rstrip("/") + "/")


def _counter_delta(before: int | None, after: int | None) -> int:
    if before is None or after is None:
        return 0
    return after - before if after >= before else after


class OomWatch:
    """Takes consecutive :class:`OomTick` and yields :class:`OomEvent` (see the module doc).

    Keeps the events of the last ``keep_s`` seconds (at most ``max_events``), the recent
    memory.current of each cgroup and MemAvailable for the trends, and the last tick's processes.
    Not thread-safe: the collector's thread calls :meth:`update`.
    """

    def __init__(self, *, keep_s: float = EVENTS_KEPT_S, max_events: int = 200, window_s: float = TREND_WINDOW_S,
                 max_points: int = 600, pending_ticks: int = 2, pending_s: float = 10.0):
        self.keep_s = keep_s
        self.max_events = max_events
        self.window_s = window_s
        self.max_points = max_points
        # An event lacking victims is completed for at least pending_ticks ticks and pending_s
        # seconds: an OOM-killed process can take seconds to leave /proc on a loaded machine
        # (seen on an emulated VM, where it was still listed 0.5 s after its cgroup's counter moved).
        self.pending_ticks = pending_ticks
        self.pending_s = pending_s
        self._events: deque[OomEvent] = deque()
        self._pending: list[tuple[int, float, OomEvent]] = []  # (ticks left, until, event lacking victims)
        self._unmatched_reports: list[tuple[int, KernelOomReport]] = []
        self._previous: OomTick | None = None
        self._older: OomTick | None = None  # the tick before the previous one
        self._currents: dict[str, deque] = {}
        self._available: deque = deque()
        self._limits: dict[str, int | None] = {}
        self._by_path: dict = {}
        self._by_path_tick: OomTick | None = None
        self.started_wall: float | None = None  # the wall time of the first tick: kills are seen from then

    # -- trends --
    def _record_trends(self, tick: OomTick) -> None:
        horizon = tick.time - self.window_s * 2
        for path, counters in tick.cgroups.items():
            points = self._currents.setdefault(path, deque())
            if counters.current is not None:
                points.append((tick.time, counters.current))
            while points and (points[0][0] < horizon or len(points) > self.max_points):
                points.popleft()
            self._limits[path] = counters.limit
        for path in [p for p in self._currents if p not in tick.cgroups]:
            del self._currents[path]
            self._limits.pop(path, None)
        if tick.mem_available is not None:
            self._available.append((tick.time, tick.mem_available))
        while self._available and (self._available[0][0] < horizon or len(self._available) > self.max_points):
            self._available.popleft()

    def time_to_limit(self, path: str) -> TimeToLimit | None:
        points = self._currents.get(path)
        if points is None:
            return None
        return time_to_limit(list(points), self._limits.get(path), limit_name="the memory limit", window_s=self.window_s)

    def time_to_exhaustion(self) -> TimeToLimit:
        return time_to_exhaustion(list(self._available), window_s=self.window_s)

    @property
    def events(self) -> tuple[OomEvent, ...]:
        return tuple(self._events)

    @property
    def awaiting_victims(self) -> int:
        """How many events still wait for their victims (a reading soon would name them)."""
        return len(self._pending)

    @property
    def last_tick(self) -> OomTick | None:
        return self._previous

    # -- kill order from the last tick --
    def _candidates_by_path(self) -> dict[str | None, list[OomCandidate]]:
        tick = self._previous
        if self._by_path_tick is not tick:
            by_path: dict[str | None, list[OomCandidate]] = {}
            for brief in tick.processes.values():
                by_path.setdefault(brief.cgroup, []).append(_candidate(brief))
            self._by_path, self._by_path_tick = by_path, tick
        return self._by_path

    def kill_order(self, scope: str = "system") -> KillOrder | None:
        """The kill order at the last tick, system-wide or within the watched cgroup ``scope``."""
        tick = self._previous
        if tick is None or tick.system_totalpages is None:
            return None
        by_path = self._candidates_by_path()
        if scope == "system":
            return kill_order([c for group in by_path.values() for c in group], tick.system_totalpages, "system",
                              tick.page_size)
        counters = tick.cgroups.get(scope)
        if counters is None or counters.oom_totalpages is None:
            return None
        inside = [c for path, group in by_path.items() if _within(path, scope) for c in group]
        return kill_order(inside, counters.oom_totalpages, scope, tick.page_size, tick.system_totalpages)

    # -- events --
    def update(self, tick: OomTick) -> list[OomEvent]:
        """Compare ``tick`` with the previous one; return the events first seen now (events already
        returned may be completed later, in :attr:`events`, when their victim shows up)."""
        if self.started_wall is None:
            self.started_wall = tick.wall_time
        self._record_trends(tick)
        older, previous, self._older, self._previous = self._older, self._previous, self._previous, tick
        ages = {id(r): age for age, r in self._unmatched_reports}
        reports = [r for _, r in self._unmatched_reports] + list(tick.kernel_reports)
        self._unmatched_reports = []
        new: list[OomEvent] = []
        if previous is not None:
            gone = {pid: _most(brief, older.processes.get(pid) if older is not None else None)
                    for pid, brief in previous.processes.items() if _vanished(brief, tick.processes)}
            used_pids: set[int] = set()
            reports = self._complete_pending(tick, gone, reports, used_pids)
            explained = 0
            for path in _deepest_moved(previous, tick):
                before, after = previous.cgroups[path], tick.cgroups[path]
                kills = _counter_delta(before.oom_kill, after.oom_kill)
                counters = {"oom_kill": kills}
                limit_hit = {}
                for q in sorted(tick.cgroups):
                    if q not in previous.cgroups or not _within(path, q):
                        continue
                    moved = {key: d for key in ("oom", "failcnt", "max_events")
                             if (d := _counter_delta(getattr(previous.cgroups[q], key), getattr(tick.cgroups[q], key)))}
                    if moved:
                        limit_hit[q] = MappingProxyType(moved)
                    if q == path:
                        counters.update(moved)
                event = OomEvent(tick.time, tick.wall_time, previous.time, "unknown", "", path, kills,
                                 MappingProxyType(counters), limit=before.limit, current_before=before.current,
                                 limit_hit=MappingProxyType(limit_hit))
                event, reports = _name_victims(event, gone, reports, used_pids, lambda b, p=path: _within(b.cgroup, p),
                                               seen=previous.processes)
                new.append(event)
                explained += kills
            system_kills = _counter_delta(previous.vmstat_oom_kill, tick.vmstat_oom_kill)
            if system_kills:
                new = [replace(e, counters=MappingProxyType({**e.counters, "vmstat oom_kill": system_kills}))
                       for e in new]
            if system_kills > explained:
                kills = system_kills - explained
                event = OomEvent(tick.time, tick.wall_time, previous.time, "system",
                                 "/proc/vmstat oom_kill moved with no watched cgroup's counter", None, kills,
                                 MappingProxyType({"vmstat oom_kill": system_kills}))
                # A kill in a watched cgroup moves that cgroup's counter (any OOM, system or not):
                # this one was elsewhere.
                watched = [c for c in tick.cgroups.values() if c.oom_kill is not None]
                event, reports = _name_victims(event, gone, reports, used_pids,
                                               lambda b: not any(_counts_for(c, b.cgroup) for c in watched),
                                               seen=previous.processes)
                new.append(event)
        # A report no counter explained yet (it can be read a tick before the counter moves) is
        # tried again at the next tick, then dropped.
        self._unmatched_reports = [(ages.get(id(r), 0) + 1, r) for r in reports if ages.get(id(r), 0) < 1]
        for event in new:
            self._events.append(event)
            if len(event.victims) < event.kills:
                self._pending.append((self.pending_ticks, event.time + self.pending_s, event))
        self._expire(tick.time)
        return new

    def _complete_pending(self, tick: OomTick, gone: dict[int, ProcessBrief], reports: list[KernelOomReport],
                          used_pids: set[int]) -> list[KernelOomReport]:
        """Victims of earlier events that vanished (or whose kernel line arrived) only now."""
        still = []
        for ticks_left, until, event in self._pending:
            root = event.cgroup or "/"
            updated, reports = _name_victims(event, gone, reports, used_pids, lambda b, p=root: _within(b.cgroup, p),
                                             late=True)
            if updated is not event:
                self._replace(event, updated)
            if len(updated.victims) < updated.kills and (ticks_left > 1 or tick.time < until):
                still.append((ticks_left - 1, until, updated))
        self._pending = still
        return reports

    def _replace(self, old: OomEvent, new: OomEvent) -> None:
        for i, event in enumerate(self._events):
            if event is old:
                self._events[i] = new
                return

    def _expire(self, now: float) -> None:
        while self._events and (now - self._events[0].time > self.keep_s or len(self._events) > self.max_events):
            old = self._events.popleft()
            self._pending = [p for p in self._pending if p[2] is not old]


def _candidate(brief: ProcessBrief) -> OomCandidate:
    unkillable = None
    if brief.pid == 1:
        unkillable = "the global init (PID 1) is never killed"
    elif brief.state in ("Z", "X"):
        unkillable = "a zombie has no memory to free"
    return OomCandidate(brief.pid, brief.start_ticks, brief.name, brief.cgroup, brief.oom_score, brief.oom_score_adj,
                        brief.rss, brief.swap, brief.pgtables, unkillable)


def _counts_for(counters: CgroupCounters, memory_path: str | None) -> bool:
    """Whether a kill of a process in ``memory_path`` moves ``counters``' oom_kill: v1 counts in
    the victim's own cgroup only, v2 in it and every ancestor."""
    if counters.version == 1:
        return memory_path == counters.path
    return _within(memory_path, counters.path)


def _most(last: ProcessBrief, before: ProcessBrief | None) -> ProcessBrief:
    """What a process that left held: the larger of its last two readings. A victim the kernel
    is killing shrinks before it goes (the OOM reaper frees its anonymous memory first), and a
    tick may read it then."""
    if before is None or before.start_ticks != last.start_ticks or (before.rss or 0) <= (last.rss or 0):
        return last
    return before


def _vanished(brief: ProcessBrief, now: Mapping[int, ProcessBrief]) -> bool:
    if brief.state in ("Z", "X"):
        return False  # already dead at the previous tick: not a victim of this interval
    current = now.get(brief.pid)
    return current is None or current.start_ticks != brief.start_ticks or current.state in ("Z", "X")


def _deepest_moved(previous: OomTick, tick: OomTick) -> list[str]:
    """The cgroups whose oom_kill went up and none of whose watched descendants' did (on v2 the
    counters count up the hierarchy: a kill in a pod's container moves the pod's counter too)."""
    moved = [p for p, after in tick.cgroups.items()
             if p in previous.cgroups and _counter_delta(previous.cgroups[p].oom_kill, after.oom_kill) > 0]
    return sorted(p for p in moved if not any(q != p and _within(q, p) for q in moved))


def _name_victims(event: OomEvent, gone: dict[int, ProcessBrief], reports: list[KernelOomReport],
                  used_pids: set[int], inside, late: bool = False,
                  seen: Mapping[int, ProcessBrief] = _EMPTY) -> tuple[OomEvent, list[KernelOomReport]]:
    """``seen``: the previous tick's processes. A victim the kernel log names may still be listed
    at this tick (an OOM-killed process frees its memory before it leaves /proc: slow on a busy
    machine); what it held is then its brief of the previous tick, not unknown."""
    victims = list(event.victims)
    named = {v.pid for v in victims}
    remaining = []
    scope, basis = event.scope, event.scope_basis
    for report in reports:
        brief = gone.get(report.pid) or seen.get(report.pid)
        fits = (report.pid not in used_pids and len(victims) < event.kills and report.pid not in named and
                (_within(report.task_memcg, event.cgroup or "/") if report.task_memcg is not None
                 else brief is not None and inside(brief)))
        if not fits:
            remaining.append(report)
            continue
        last = brief if brief is not None else next((v.last for v in victims if v.pid == report.pid), None)
        victims.append(OomVictim(report.pid, report.comm, "kernel log", last, report))
        named.add(report.pid)
        used_pids.add(report.pid)
        scope = report.scope
        basis = f"the kernel log: {report.constraint}" + (f", oom_memcg={report.oom_memcg}" if report.oom_memcg else "")
    if scope == "unknown" and event.cgroup is not None:
        hit = next(((q, moved) for q, moved in sorted(event.limit_hit.items(), key=lambda kv: -len(kv[0]))
                    if moved.get("oom") or moved.get("failcnt")), None)
        if hit is not None:
            q, moved = hit
            which = "memory.events oom" if moved.get("oom") else "memory.failcnt"
            scope, basis = "cgroup", f"{which} of {q} went up: that cgroup's limit was hit"
        else:
            basis = ("no watched cgroup's limit counters moved: a system OOM, or the limit of a cgroup memtop "
                     "does not watch")
    reason = event.victim_reason
    if len(victims) < event.kills:
        left = [b for pid, b in gone.items() if pid not in used_pids and pid not in named and inside(b)]
        left.sort(key=_likely_order)
        need = event.kills - len(victims)
        if left and len(left) <= need:
            for brief in left:
                victims.append(OomVictim(brief.pid, brief.name, "vanished between ticks", brief))
                used_pids.add(brief.pid)
        elif left:
            for brief in left[:need]:
                victims.append(OomVictim(brief.pid, brief.name, f"likely: the largest by OOM badness of the "
                                         f"{len(left)} processes that left between ticks", brief))
                used_pids.add(brief.pid)
        if len(victims) < event.kills:
            reason = ("no process of this cgroup vanished between the ticks (yet): the victim may still be exiting, "
                      "or was not sampled") if not late else reason
        else:
            reason = None
    else:
        reason = None
    if victims == list(event.victims) and scope == event.scope and basis == event.scope_basis and reason == event.victim_reason:
        return event, remaining
    return replace(event, victims=tuple(victims), scope=scope, scope_basis=basis, victim_reason=reason), remaining


def _likely_order(brief: ProcessBrief):
    rss = brief.rss or 0
    adj = brief.oom_score_adj or 0
    return (-(brief.oom_score if brief.oom_score is not None else 0), -(rss + (brief.swap or 0)), -adj, brief.pid)


def rank_kernel_tasks(report: KernelOomReport, totalpages: int, page_size: int) -> list[tuple[int, int]]:
    """(points, pid) of the "Tasks state" table, largest first, by oom_badness() on the kernel's
    own figures at the moment of the kill (rss and swapents in pages, page tables in bytes)."""
    out = []
    for pid, _uid, _tgid, _total_vm, rss, pgtables_bytes, swapents, adj, _name in report.tasks:
        points = badness_pages(rss, swapents, pgtables_bytes // page_size, adj, totalpages)
        if points is not None:
            out.append((points, pid))
    out.sort(key=lambda r: -r[0])
    return out


# --- one immutable view for the consumers ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OomSample:
    """What the OomWatch knows at one tick, frozen for the UI, snapshot, record and export."""

    time: float
    events: tuple[OomEvent, ...]
    system_time: TimeToLimit
    cgroup_times: Mapping[str, TimeToLimit]
    system_order: KillOrder | None
    cgroup_orders: Mapping[str, KillOrder]
    unknown: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    since_wall: float | None = None  # the watch's first reading: kills before it are not seen
    awaiting_victims: int = 0  # events still waiting for their victim to leave /proc (pending)
    wall: float | None = None  # the tick's wall-clock time (None: not known, e.g. from a recording)


def oom_sample(watch: OomWatch, *, order_limit: int | None = 20) -> OomSample:
    """Freeze ``watch`` after its last update: events, time to the limit per watched cgroup with a
    limit and system-wide, and the kill orders (the first ``order_limit`` of each)."""
    tick = watch.last_tick
    times = {}
    orders = {}
    for path, counters in (tick.cgroups.items() if tick is not None else ()):
        if counters.limit is None:
            continue
        eta = watch.time_to_limit(path)
        if eta is not None:
            times[path] = eta
        order = watch.kill_order(path)
        if order is not None:
            orders[path] = _cut(order, order_limit)
    system = watch.kill_order("system")
    return OomSample(tick.time if tick is not None else 0.0, watch.events, watch.time_to_exhaustion(),
                     MappingProxyType(times), _cut(system, order_limit) if system is not None else None,
                     MappingProxyType(orders), tick.unknown if tick is not None else _EMPTY, watch.started_wall,
                     watch.awaiting_victims, tick.wall_time if tick is not None else None)


def _cut(order: KillOrder, limit: int | None) -> KillOrder:
    return order if limit is None else replace(order, ranked=order.ranked[:limit])


def _time_json(t: TimeToLimit) -> dict:
    return {"seconds": t.seconds, "slope_bytes_per_s": t.slope_bytes_per_s, "r2": t.r2, "window_s": t.window_s,
            "points": t.points, "headroom": t.headroom, "limit": t.limit, "limit_name": t.limit_name,
            "reason": t.reason}


def _order_json(order: KillOrder) -> dict:
    return {"scope": order.scope, "totalpages": order.totalpages,
            "ranked": [{"pid": r.candidate.pid, "name": r.candidate.name, "points": r.points, "score": r.score,
                        "kernel_oom_score": r.candidate.oom_score, "oom_score_adj": r.candidate.oom_score_adj,
                        "rss": r.candidate.rss, "swap": r.candidate.swap, "pgtables": r.candidate.pgtables,
                        "tied": r.tied} for r in order.ranked],
            "excluded": [{"pid": c.pid, "name": c.name, "why": why} for c, why in order.excluded]}


def oom_json(sample: OomSample) -> dict:
    """An OomSample as plain data (strings raw: pass the result through memtop.text.json_safe)."""
    def victim(v: OomVictim) -> dict:
        last = v.last
        kernel = v.kernel
        return {"pid": v.pid, "name": v.name, "source": v.source,
                "last": None if last is None else {"rss": last.rss, "pss": last.pss, "swap": last.swap,
                                                   "oom_score": last.oom_score, "oom_score_adj": last.oom_score_adj,
                                                   "cgroup": last.cgroup, "name": last.name},
                "kernel": None if kernel is None else {
                    "text": kernel.text, "constraint": kernel.constraint, "oom_memcg": kernel.oom_memcg,
                    "task_memcg": kernel.task_memcg, "anon_rss": kernel.anon_rss, "file_rss": kernel.file_rss,
                    "shmem_rss": kernel.shmem_rss, "pgtables": kernel.pgtables, "total_vm": kernel.total_vm,
                    "oom_score_adj": kernel.oom_score_adj, "usec": kernel.usec}}

    return {
        "events": [{"wall_time": e.wall_time, "time": e.time, "since": e.since, "scope": e.scope,
                    "scope_basis": e.scope_basis, "cgroup": e.cgroup, "kills": e.kills, "counters": dict(e.counters),
                    "limit_hit": {k: dict(v) for k, v in e.limit_hit.items()}, "limit": e.limit,
                    "current_before": e.current_before, "victims": [victim(v) for v in e.victims],
                    "victim_reason": e.victim_reason} for e in sample.events],
        "system_time_to_exhaustion": _time_json(sample.system_time),
        "cgroup_time_to_limit": {path: _time_json(t) for path, t in sample.cgroup_times.items()},
        "system_kill_order": _order_json(sample.system_order) if sample.system_order is not None else None,
        "cgroup_kill_order": {path: _order_json(o) for path, o in sample.cgroup_orders.items()},
        "unknown": dict(sample.unknown),
        "since_wall": sample.since_wall,
    }
