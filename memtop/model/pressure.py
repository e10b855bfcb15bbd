"""Pressure: PSI lines, memory cgroups, and the findings derived from them.

PSI (Documentation/accounting/psi.rst): ``some`` is the share of wall time in which at least
one task was stalled on the resource, ``full`` the share in which all non-idle tasks were;
avg10/avg60/avg300 are percentages, ``total`` is cumulative stall time in microseconds.

A memory cgroup is described with cgroup v2 names (Documentation/admin-guide/cgroup-v2.rst);
a v1 memory controller (Documentation/admin-guide/cgroup-v1/memory.rst) fills the same record
where v1 has an equivalent and keeps its own names where it has not (failcnt, memsw, soft
limit). Limits use ``None`` for "max" (unlimited); a figure that could not be read is ``None``
with its reason in ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from memtop.format import counted
from memtop.model.findings import Finding, Severity

PSI_RESOURCES = ("memory", "io", "cpu")
NEAR_LIMIT_FRACTION = 0.90

_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PsiLine:
    """One ``some`` or ``full`` line: averages in percent, total stall time in µs."""

    avg10: float
    avg60: float
    avg300: float
    total_us: int


@dataclass(frozen=True, slots=True)
class PsiResource:
    """One pressure file (/proc/pressure/<resource> or a cgroup's <resource>.pressure)."""

    some: PsiLine
    full: PsiLine | None  # /proc/pressure/cpu had no full line before Linux 5.13


@dataclass(frozen=True, slots=True)
class PressureSample:
    """System PSI at one moment (monotonic seconds). Missing resources are in ``unknown``."""

    time: float
    resources: Mapping[str, PsiResource] = field(default_factory=lambda: _EMPTY)
    unknown: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class StallRate:
    """Stall milliseconds per second between two samples, derived from ``total``."""

    some_ms_per_s: float
    full_ms_per_s: float | None


def stall_rate(before: PsiResource, after: PsiResource, seconds: float) -> StallRate | None:
    """How many ms per second tasks stalled between two reads (total is µs, so Δ/1000/Δt)."""
    if seconds <= 0:
        return None
    some = max(0, after.some.total_us - before.some.total_us) / 1000.0 / seconds
    full = None
    if before.full is not None and after.full is not None:
        full = max(0, after.full.total_us - before.full.total_us) / 1000.0 / seconds
    return StallRate(some, full)


@dataclass(frozen=True, slots=True)
class TriggerSpec:
    """A PSI trigger as written to a pressure file: ``<some|full> <threshold µs> <window µs>``."""

    kind: str
    threshold_us: int
    window_us: int

    def text(self) -> str:
        return f"{self.kind} {self.threshold_us} {self.window_us}"

    def describe(self) -> str:
        return f"{self.kind} {self.threshold_us / 1000:g} ms per {self.window_us / 1e6:g} s window"


# --- cgroups -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CgroupMemory:
    """The memory figures of one cgroup at one moment.

    ``path`` is the cgroup's path inside its hierarchy (``/`` is the root), as /proc/PID/cgroup
    writes it. ``events`` holds memory.events (v2: low, high, max, oom, oom_kill, ...) or, on v1,
    failcnt, memsw_failcnt, oom_kill and under_oom.
    """

    version: int  # 1 or 2
    path: str
    current: int | None
    max: int | None  # None: unlimited ("max"), unless "max" is in unknown
    high: int | None = None
    low: int | None = None
    min: int | None = None
    swap_current: int | None = None
    swap_max: int | None = None
    events: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    stat: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # the breakdown, v2 names, bytes
    raw_stat: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # memory.stat as the kernel wrote it
    pressure: PsiResource | None = None
    # v1 only: memory.soft_limit_in_bytes, memory.memsw.{usage,limit}_in_bytes, memory.max_usage_in_bytes
    soft_limit: int | None = None
    memsw_usage: int | None = None
    memsw_limit: int | None = None
    max_usage: int | None = None
    unknown: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1] or "/"

    @property
    def depth(self) -> int:
        return 0 if self.path in ("", "/") else self.path.strip("/").count("/") + 1

    @property
    def usage_fraction(self) -> float | None:
        if self.current is None or self.max is None or self.max == 0:
            return None
        return self.current / self.max

    @property
    def headroom(self) -> int | None:
        """Bytes left before the hard limit (memory.max / limit_in_bytes); None if unlimited."""
        if self.current is None or self.max is None:
            return None
        return self.max - self.current


def events_since(baseline: Mapping[str, int] | None, events: Mapping[str, int]) -> dict[str, int]:
    """Counter increases since ``baseline`` (the first read after memtop started).

    An empty baseline is a cgroup created since: all its events are new. A counter missing
    from a non-empty baseline was not read then (the tree walk reads fewer files than the
    detail view): unknown, not new. ``under_oom`` (v1) is a state, not a counter. A counter
    that went down means the cgroup was removed and created again under the same name.
    """
    if baseline is None:
        return {}
    out = {}
    for key, value in events.items():
        if key == "under_oom" or (baseline and key not in baseline):
            continue
        before = baseline.get(key, 0)
        delta = value - before if value >= before else value
        if delta:
            out[key] = delta
    return out


# full avg10 from which a stall is a warning: 1% is 100 ms of every 10 s in which no task of the
# machine (or cgroup) could run for want of memory. Below it a stall is noted (info): PSI counts
# every reclaim a task waited on, and an idle machine shows 0.01% after a burst of page-ins.
STALL_WARN_PERCENT = 1.0


def stall_severity(full_avg10: float) -> Severity:
    return Severity.WARNING if full_avg10 >= STALL_WARN_PERCENT else Severity.INFO


def cgroup_findings(cgroup: CgroupMemory, since_start: Mapping[str, int],
                    start: str = "memtop started") -> list[Finding]:
    """Near the limit, stalls in this cgroup, OOM kills since ``start`` (in replay: the file's
    first tick)."""
    out: list[Finding] = []
    fraction = cgroup.usage_fraction
    if fraction is not None and fraction >= NEAR_LIMIT_FRACTION:
        out.append(Finding(
            Severity.CRITICAL if fraction >= 0.98 else Severity.WARNING,
            f"cgroup {cgroup.path} uses {fraction * 100:.0f}% of its limit "
            f"({cgroup.current / 2**20:.1f} of {cgroup.max / 2**20:.1f} MiB): the kernel reclaims inside it and "
            f"calls the OOM killer when reclaim cannot keep up, long before the host runs out",
            "raise the limit (memory.max / memory.limit_in_bytes) or find what grows in it",
        ))
    if cgroup.pressure is not None and cgroup.pressure.full is not None and cgroup.pressure.full.avg10 > 0:
        full = cgroup.pressure.full.avg10
        out.append(Finding(
            stall_severity(full),
            f"every task of cgroup {cgroup.path} stalled on memory {full:.2f}% "
            "of the last 10 s (memory.pressure full avg10)"
            + ("" if full >= STALL_WARN_PERCENT else f"; brief: a warning from {STALL_WARN_PERCENT:g}%"),
            "the cgroup is reclaiming or thrashing: look at its memory.stat file/anon split",
        ))
    kills = since_start.get("oom_kill", 0)
    if kills:
        out.append(Finding(
            Severity.CRITICAL,
            f"the OOM killer killed {counted(kills, 'process', 'processes')} in cgroup {cgroup.path} since {start}",
            "dmesg shows which; the cgroup's limit, not the host's memory, was the cause",
        ))
    return out


def system_findings(sample: PressureSample | None) -> list[Finding]:
    """Reclaim stalls system-wide: memory full avg10 > 0 means all runnable tasks waited; a
    warning from STALL_WARN_PERCENT, below it a note."""
    if sample is None:
        return []
    memory = sample.resources.get("memory")
    if memory is None or memory.full is None or memory.full.avg10 <= 0:
        return []
    full = memory.full.avg10
    brief = full < STALL_WARN_PERCENT
    return [Finding(
        stall_severity(full),
        f"all non-idle tasks were stalled on memory {full:.2f}% of the last 10 s (/proc/pressure/memory full avg10)"
        + (f": brief, a warning from {STALL_WARN_PERCENT:g}%" if brief else ": reclaim or refaults are costing real time"),
        "nothing to do unless it grows; the stall log below says who grew when a stall passed the trigger" if brief
        else "look for a cgroup near its limit in the cgroup tree, or a process growing in the stall log",
    )]


GROWTH_WINDOW_S = 60.0  # how far back a stall looks for who grew


@dataclass(frozen=True, slots=True)
class Grower:
    """A process whose RSS grew just before a stall: by how much over the span actually seen.

    The growth is what the samples show (``growth_bytes`` over ``span_s`` seconds), never a rate
    projected to a minute: one 260 MiB step in 16 s is "+260 MiB in 16 s", not "+949 MiB/min".
    """

    pid: int
    name: str
    rss: int | None
    growth_bytes: int
    span_s: float
    own: bool = False  # memtop itself: the stall log says so


@dataclass(frozen=True, slots=True)
class StallEvent:
    """A PSI trigger fired: when, what PSI said then, and who was growing."""

    wall_time: float
    trigger: TriggerSpec
    memory: PsiResource | None
    growers: tuple[Grower, ...] = ()


@dataclass(frozen=True, slots=True)
class PsiHistory:
    """System PSI readings, oldest first (the charts), and why there is none when there is none."""

    samples: tuple[PressureSample, ...]
    unavailable_reason: str | None = None
    live: bool = True  # False: a captured tree, or a recording (readings do not follow time)

    @property
    def latest(self) -> PressureSample | None:
        return self.samples[-1] if self.samples else None


@dataclass(frozen=True, slots=True)
class CgroupsView:
    """One walk of the memory cgroups: the tree against its limits, the selected process's
    cgroup in detail, and each cgroup's events when memtop first saw it (the baseline)."""

    version: int | None  # 1 or 2; None: no memory controller found (``error`` says why)
    mount: str | None
    tree: tuple[CgroupMemory, ...] = ()
    target_pid: int | None = None
    selected: CgroupMemory | None = None
    selected_reason: str | None = None
    error: str | None = None
    baselines: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class ProcessCgroups:
    """Each process's memory cgroup (PID -> path in the hierarchy), and the cgroups they are in,
    read in detail; ``reasons``: PID -> why its cgroup is unknown."""

    paths: Mapping[int, str]
    details: Mapping[str, CgroupMemory]
    reasons: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    error: str | None = None  # no memory hierarchy found


def observed_growth(history, window_s: float = GROWTH_WINDOW_S) -> tuple[int, float] | None:
    """(RSS bytes grown, seconds) from the oldest known point of a process's History within
    ``window_s`` to the last."""
    points = [(t, r) for t, r in zip(history.point_times(), history.column(1)) if r is not None]
    if len(points) < 2:
        return None
    last_t, last_rss = points[-1]
    first_t, first_rss = next((t, r) for t, r in points if last_t - t <= window_s)
    if last_t - first_t <= 0:
        return None
    return last_rss - first_rss, last_t - first_t


def top_growers(processes, history, count: int = 3, window_s: float = GROWTH_WINDOW_S,
                own_pid: int | None = None) -> tuple[Grower, ...]:
    """The processes whose RSS grew most over the last ``window_s`` of their histories
    (``history``: a view's History, as Snapshot.history gives).

    Only growth (> 0) counts; processes younger than the window are measured over what was seen.
    ``own_pid``: memtop's own PID, whose Grower is marked ``own``: a stall log that names
    memtop as the grower must say so.
    """
    scored = []
    for view in processes:
        growth = observed_growth(history(view), window_s)
        if growth is not None and growth[0] > 0:
            scored.append(Grower(view.pid, view.sample.name, view.sample.rss_bytes, growth[0], growth[1],
                                 own=view.pid == own_pid))
    scored.sort(key=lambda g: (-g.growth_bytes, g.pid))
    return tuple(scored[:count])


def stall_series(samples, resource: str, min_gap_s: float = 0.9) -> list[tuple[float, float, float | None]]:
    """(time, some ms/s, full ms/s) between PressureSamples for one resource.

    Readings closer than ``min_gap_s`` to the previous one used (an extra read when a trigger
    fired) are skipped: the kernel folds per-CPU stall time into ``total`` only when tasks
    change state, so a rate over a few milliseconds is noise.
    """
    out = []
    prev = None
    for sample in samples:
        current = sample.resources.get(resource)
        if current is None:
            continue
        if prev is not None:
            if sample.time - prev.time < min_gap_s:
                continue
            rate = stall_rate(prev.resources[resource], current, sample.time - prev.time)
            if rate is not None:
                out.append((sample.time, rate.some_ms_per_s, rate.full_ms_per_s))
        prev = sample
    return out
