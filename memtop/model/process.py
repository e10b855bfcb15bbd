"""One process as read from /proc, and the view derived from its history."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import NamedTuple

# /proc/PID/stat field 9 (flags): PF_KTHREAD, include/linux/sched.h
PF_KTHREAD = 0x00200000


class ProcessIdentity(NamedTuple):
    """A process is its PID plus its start time (clock ticks since boot, stat field 22).

    Two processes with the same PID and different start times are different processes: every
    action compares the whole identity before it acts. (A NamedTuple: it is a key of the
    sampler's caches, hashed thousands of times a tick.)
    """

    pid: int
    start_ticks: int


@dataclass(frozen=True, slots=True)
class StatFields:
    """The fields of /proc/PID/stat that memtop uses (man 5 proc_pid_stat)."""

    pid: int
    comm: str
    state: str
    ppid: int
    flags: int
    minflt: int
    majflt: int
    utime_ticks: int
    stime_ticks: int
    num_threads: int
    start_ticks: int
    vsize: int
    rss_pages: int

    @property
    def is_kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)

    @property
    def is_zombie(self) -> bool:
        return self.state in ("Z", "X")


@dataclass(frozen=True, slots=True)
class StatusFields:
    """The fields of /proc/PID/status that memtop uses; None where the line is absent."""

    uid: int | None
    rss: int | None
    rss_anon: int | None
    rss_file: int | None
    rss_shmem: int | None
    swap: int | None
    threads: int | None


@dataclass(frozen=True, slots=True)
class Rollup:
    """/proc/PID/smaps_rollup (or smaps summed), bytes; None where the kernel has no such line."""

    rss: int | None
    pss: int | None
    pss_anon: int | None
    pss_file: int | None
    pss_shmem: int | None
    shared_clean: int | None
    shared_dirty: int | None
    private_clean: int | None
    private_dirty: int | None
    anonymous: int | None
    lazyfree: int | None
    anon_huge_pages: int | None
    swap: int | None
    swap_pss: int | None
    source: str = "smaps_rollup"

    @property
    def uss(self) -> int | None:
        """Unique set size: pages only this process maps (Private_Clean + Private_Dirty)."""
        if self.private_clean is None or self.private_dirty is None:
            return None
        return self.private_clean + self.private_dirty


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One process at one tick. Unknown values are None, with the reason beside them."""

    identity: ProcessIdentity
    ppid: int
    comm: str
    cmdline: str
    user: str | None
    state: str
    kernel_thread: bool
    rss_bytes: int | None
    anon_bytes: int | None
    file_bytes: int | None
    shmem_bytes: int | None
    swap_bytes: int | None
    threads: int
    minflt: int
    majflt: int
    fd_count: int | None
    fd_reason: str | None
    rollup: Rollup | None
    rollup_reason: str | None
    rollup_time: float | None  # monotonic time the rollup was read; older than the tick when staggered

    @property
    def pid(self) -> int:
        return self.identity.pid

    @property
    def name(self) -> str:
        return self.cmdline or f"[{self.comm}]"


Point = tuple[float, "int | None", "int | None"]  # (monotonic time, RSS bytes, fd count)


# The RSS trend (the ΔRSS/min column, the detail line): over the last minute, from at least 10 s
# of readings; a trend only when a line fits (R² ≥ 0.8: a step reaches 0.75 at most).
TREND_WINDOW_S = 60.0
TREND_MIN_SPAN_S = 10.0
TREND_MIN_R2 = 0.8


@dataclass(frozen=True, slots=True)
class RssTrend:
    """VmRSS over a window: the readings' range and their least-squares line."""

    span_s: float  # from the first reading used to the last
    points: int
    first_bytes: int
    last_bytes: int
    low_bytes: int
    high_bytes: int
    slope_per_min: float  # the least-squares slope, bytes per minute
    r2: float | None  # how well the line fits; None when RSS did not move

    @property
    def kind(self) -> str:
        """``flat`` (RSS did not move), ``trend`` (a line fits: a steady rate), ``steps`` (it
        moved in one or more steps, or up and down: no steady rate)."""
        if self.high_bytes == self.low_bytes:
            return "flat"
        return "trend" if self.r2 is not None and self.r2 >= TREND_MIN_R2 else "steps"

    @property
    def change_per_min(self) -> float:
        """The steady rate, bytes per minute; 0.0 when there is none (flat, or steps)."""
        return self.slope_per_min if self.kind == "trend" else 0.0


@dataclass(frozen=True, slots=True, eq=False)
class History:
    """A process's (time, RSS, fd count) at each tick, oldest first, stored by change.

    Copying 150 points per process per tick cost a quarter of the sampler's time with 1,000
    processes (and ~20 MiB of small tuples); most processes are idle, their figures constant.
    So ``times`` is the sampler's window of tick times, one tuple per tick shared by every
    process; ``tick0`` is the tick number of ``times[0]``; the process has a point at every
    tick from ``since`` (or ``tick0``, whichever is later) to the last; ``runs`` holds
    ``(tick, rss, fds)`` at the ticks where RSS or the fd count changed (the first one at or
    before the first point), so an idle process's history is one run, reused from tick to tick.
    """

    times: tuple[float, ...] = ()
    tick0: int = 0
    since: int = 0
    runs: tuple[tuple[int, int | None, int | None], ...] = ()

    @classmethod
    def from_points(cls, points) -> "History":
        """From (time, rss, fds) points, oldest first (tests, captured data)."""
        points = tuple(points)
        runs = []
        for i, (_t, rss, fds) in enumerate(points):
            if not runs or runs[-1][1:] != (rss, fds):
                runs.append((i, rss, fds))
        return cls(tuple(p[0] for p in points), 0, 0, tuple(runs))

    def __eq__(self, other) -> bool:
        """Equal when they stand for the same points, however they are stored."""
        if not isinstance(other, History):
            return NotImplemented
        return (self.point_times(), self.column(1), self.column(2)) == (
            other.point_times(), other.column(1), other.column(2))

    def __hash__(self) -> int:
        return hash((self.point_times(), self.column(1), self.column(2)))

    @property
    def start(self) -> int:
        """Index in ``times`` of the first point."""
        return max(0, self.since - self.tick0) if self.times else 0

    def __len__(self) -> int:
        return len(self.times) - self.start

    def point_times(self) -> tuple[float, ...]:
        return self.times[self.start:]

    def column(self, index: int, last: int | None = None) -> tuple:
        """RSS (1) or fd count (2) at each point (only the ``last`` ones if given)."""
        start, end = self.tick0 + self.start, self.tick0 + len(self.times)
        if last is not None:
            start = max(start, end - last)
        out: list = []
        runs = self.runs
        for i, run in enumerate(runs):
            stop = runs[i + 1][0] if i + 1 < len(runs) else end
            lo = max(run[0], start)
            if stop > lo:
                out.extend((run[index],) * (stop - lo))
        return tuple(out)

    def value_at(self, tick: int, index: int):
        """RSS (1) or fd count (2) at an absolute tick (the run covering it)."""
        value = None
        for run in self.runs:
            if run[0] > tick:
                break
            value = run[index]
        return value

    def rss_trend(self, window_s: float = TREND_WINDOW_S) -> "RssTrend | None":
        """VmRSS over the last ``window_s``: its least-squares line, and whether it is a trend.

        None with less than TREND_MIN_SPAN_S of known RSS (or fewer than 3 readings): too little
        to tell a rate. A single step (300 MiB once, 25 s ago) is not a trend: the fit of a line
        to a step reaches R² = 0.75 at best (a step at the middle of the window), a steady
        growth fits with R² near 1; TREND_MIN_R2 = 0.8 tells them apart (as the fd LEAK? finding).
        """
        runs, times, start = self.runs, self.times, self.start
        if len(times) - start < 2 or not runs or runs[-1][1] is None:
            return None
        now = times[-1]
        i = max(start, bisect.bisect_left(times, now - window_s))
        if len(runs) == 1:  # the same RSS all along (the idle case): flat, given enough of it
            span = now - times[i]
            if span < TREND_MIN_SPAN_S or len(times) - i < 3:
                return None
            rss = runs[0][1]
            return RssTrend(span, len(times) - i, rss, rss, rss, rss, 0.0, None)
        values = self.column(1, last=len(times) - i)
        points = [(t, r) for t, r in zip(times[i:], values) if r is not None]
        if len(points) < 3 or points[-1][0] - points[0][0] < TREND_MIN_SPAN_S:
            return None
        n = len(points)
        t0 = points[0][0]
        mean_t = sum(t - t0 for t, _ in points) / n
        mean_r = sum(r for _, r in points) / n
        stt = sum((t - t0 - mean_t) ** 2 for t, _ in points)
        srr = sum((r - mean_r) ** 2 for _, r in points)
        str_ = sum((t - t0 - mean_t) * (r - mean_r) for t, r in points)
        rss = [r for _, r in points]
        slope = str_ / stt if stt else 0.0
        r2 = (str_ * str_) / (stt * srr) if stt and srr else None
        return RssTrend(points[-1][0] - t0, n, rss[0], rss[-1], min(rss), max(rss), slope * 60.0, r2)

    def rss_change_per_min(self, window_s: float = TREND_WINDOW_S) -> float | None:
        """RSS change per minute: the steady trend of the last ``window_s`` (least squares), 0.0
        when RSS did not move or moved without a steady rate (a step), None when unknown."""
        trend = self.rss_trend(window_s)
        return None if trend is None else trend.change_per_min


@dataclass(frozen=True, slots=True)
class ProcessView:
    """A sample plus what only two or more samples can tell: rates, growth, history.

    The history is the process's (RSS, fd count) at every tick from tick ``since`` on, stored
    by change in ``runs`` (see History); the ticks' times are the snapshot's, so a view holds
    nothing that changes from tick to tick by itself: an idle process's view is the same object
    tick after tick (the sampler reuses it). Its history: ``snapshot.history(view)``.
    """

    sample: ProcessSample
    minflt_per_s: float | None
    majflt_per_s: float | None
    rss_change_per_min: float | None
    since: int = 0
    runs: tuple[tuple[int, int | None, int | None], ...] = ()
    # The smaps_rollup figures were read after the process last changed (its stat line), or
    # this tick: True also when there is no rollup to be current about (kernel thread, zombie).
    rollup_current: bool = True

    @property
    def pid(self) -> int:
        return self.sample.identity.pid


def runs_of(points) -> tuple[int, tuple[tuple[int, int | None, int | None], ...]]:
    """``(since, runs)`` of a view from its (tick, rss, fds) points, oldest first."""
    runs: list = []
    for tick, rss, fds in points:
        if not runs or runs[-1][1:] != (rss, fds):
            runs.append((tick, rss, fds))
    return (runs[0][0] if runs else 0), tuple(runs)


# The sampler builds a History and a ProcessView for each process that changed (1,000 processes:
# up to 2,000 objects every 2 s). A frozen dataclass's __init__ sets each field through
# object.__setattr__; setting the slots through their descriptors builds the same objects in
# half the time. Positional, in field order; for the sampler and Snapshot.history.
_new = object.__new__
_h_times, _h_tick0, _h_since, _h_runs = (getattr(History, n).__set__ for n in History.__slots__)
(_v_sample, _v_minflt, _v_majflt, _v_change, _v_since, _v_runs, _v_current) = (
    getattr(ProcessView, n).__set__ for n in ProcessView.__slots__)


def new_history(times, tick0, since, runs) -> History:
    obj = _new(History)
    _h_times(obj, times)
    _h_tick0(obj, tick0)
    _h_since(obj, since)
    _h_runs(obj, runs)
    return obj


def new_view(sample, minflt_per_s, majflt_per_s, rss_change_per_min, since, runs, rollup_current) -> ProcessView:
    obj = _new(ProcessView)
    _v_sample(obj, sample)
    _v_minflt(obj, minflt_per_s)
    _v_majflt(obj, majflt_per_s)
    _v_change(obj, rss_change_per_min)
    _v_since(obj, since)
    _v_runs(obj, runs)
    _v_current(obj, rollup_current)
    return obj
