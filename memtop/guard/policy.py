"""The guard's limits and its ranking: who may be stopped, when, and who is worth it.

- :class:`Cooldown`: never the same process (PID + start time) twice within the cooldown.
- :class:`StopLimit`: never more than N processes stopped (trim attempts) in any 60 seconds.
- :class:`WalkBudget`: heap walks cost CPU in proportion to the heap (~2 s for 256 MiB of small
  chunks, README); a token bucket of CPU seconds per minute bounds their average cost. A walk may
  overdraw it (a walk cut short predicts nothing), then no walk starts until the bucket is
  positive again, so over any long span the walks cost at most the budget. One walk lasts at most
  the budget of a minute (wall time); a heap too large for that is remembered as refused.
- :class:`Ranking`: the predicted trim release of each candidate, from
  :func:`memtop.actions.trim.predict` (the read-only walk, the same refusals as ``memtop trim``),
  cached per process identity for ``cache_age`` seconds, or until the process's anonymous RSS
  moved by half the minimum release (a new spike, or memory given back) since the walk.

Candidates come from :func:`scan`: every user process whose anonymous resident memory (RssAnon,
/proc/PID/status) reaches the minimum release (malloc_trim can only give back resident heap
pages, which RssAnon counts, so a smaller process can never be worth a stop).

Everything takes its clocks as arguments, so the rules are tested without sleeping.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from memtop.guard.config import ProcessFacts, Rules
from memtop.model.process import ProcessIdentity
from memtop.procfs import PROC, NoSuchProcess, ProcfsError

STOP_WINDOW_S = 60.0


class Cooldown:
    """Per process identity: acted on at ``t`` -> not again before ``t + seconds``."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._until: dict[ProcessIdentity, float] = {}

    def start(self, identity: ProcessIdentity, now: float) -> None:
        self._until[identity] = now + self.seconds

    def remaining(self, identity: ProcessIdentity, now: float) -> float:
        return max(0.0, self._until.get(identity, now) - now)

    def forget_gone(self, live: set[ProcessIdentity], now: float) -> None:
        """Drop expired entries and processes that are gone (a PID reused is another identity)."""
        self._until = {i: t for i, t in self._until.items() if t > now and i in live}


class StopLimit:
    """At most ``per_minute`` stops in any window of 60 seconds (a sliding window)."""

    def __init__(self, per_minute: int, window_s: float = STOP_WINDOW_S):
        self.per_minute = per_minute
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()

    def allowed(self, now: float) -> bool:
        self._expire(now)
        return len(self._times) < self.per_minute

    def record(self, now: float) -> None:
        self._expire(now)
        self._times.append(now)

    def next_slot_in(self, now: float) -> float:
        """Seconds until a stop is allowed again (0 when it is now)."""
        self._expire(now)
        if len(self._times) < self.per_minute:
            return 0.0
        return max(0.0, self._times[0] + self.window_s - now)

    def count(self, now: float) -> int:
        self._expire(now)
        return len(self._times)


class WalkBudget:
    """A token bucket of CPU seconds: ``per_minute`` capacity, refilled at per_minute/60 per second."""

    def __init__(self, per_minute: float, now: float):
        self.per_minute = per_minute
        self.tokens = per_minute
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self.tokens = min(self.per_minute, self.tokens + (now - self._at) * self.per_minute / 60.0)
        self._at = max(self._at, now)

    def can_walk(self, now: float) -> bool:
        self._refill(now)
        return self.tokens > 0

    def spend(self, cpu_s: float, now: float) -> None:
        self._refill(now)
        self.tokens -= cpu_s


# --- candidates --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A process that could be worth a trim, as read from /proc by :func:`scan`."""

    identity: ProcessIdentity
    comm: str
    uid: int | None
    rss_anon: int
    cgroups: tuple[str, ...]
    excluded: str | None  # why the rules (or the guard's own limits) exclude it; None: allowed

    @property
    def facts(self) -> ProcessFacts:
        return ProcessFacts(self.identity.pid, self.comm, self.uid, self.cgroups)


def read_cgroup_paths(pid: int, root: Path = PROC) -> tuple[str, ...]:
    """The memory controller's path and the cgroup v2 path of ``pid`` (/proc/PID/cgroup), distinct,
    in that order; () when unreadable."""
    from memtop.procfs import read_text
    from memtop.procfs.cgroup import parse_cgroup_file

    try:
        lines = parse_cgroup_file(read_text(f"{root}/{pid}/cgroup"))
    except (ProcfsError, OSError):
        return ()
    paths: list[str] = []
    for line in lines:
        if "memory" in line.controllers and line.path not in paths:
            paths.append(line.path)
    for line in lines:
        if line.hierarchy_id == 0 and not line.controllers and line.path not in paths:
            paths.append(line.path)
    return tuple(paths)


def scan(rules: Rules, min_rss_anon: int, *, root: Path = PROC, never: frozenset[int] = frozenset()) -> list[Candidate]:
    """User processes with RssAnon >= ``min_rss_anon``, largest first, each with the rules' verdict.

    ``never``: PIDs the guard never acts on (itself, PID 1). Kernel threads and zombies have no
    RssAnon line and are left out here; the trim path would refuse them anyway.
    """
    from memtop.procfs.process import list_pids, read_stat, read_status

    out: list[Candidate] = []
    try:
        pids = list_pids(root)
    except OSError:
        return out
    for pid in pids:
        try:
            status = read_status(pid, root)
            if status.rss_anon is None or status.rss_anon < min_rss_anon:
                continue
            stat = read_stat(pid, root)
        except (NoSuchProcess, ProcfsError, OSError):
            continue
        if stat.is_kernel_thread or stat.is_zombie:
            continue
        cgroups = read_cgroup_paths(pid, root)
        excluded = None
        if pid in never:
            excluded = "PID 1 and the guard itself are never acted on"
        else:
            excluded = rules.exclusion(ProcessFacts(pid, stat.comm, status.uid, cgroups))
        out.append(Candidate(ProcessIdentity(pid, stat.start_ticks), stat.comm, status.uid, status.rss_anon,
                             cgroups, excluded))
    out.sort(key=lambda c: c.rss_anon, reverse=True)
    return out


# --- the ranking ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ranked:
    """One cached prediction: what :func:`memtop.actions.trim.predict` said, when, at what cost."""

    identity: ProcessIdentity
    comm: str
    prediction: object  # memtop.actions.trim.TrimPrediction
    walked_at: float
    walk_cpu_s: float
    rss_anon_at_walk: int

    @property
    def release_bytes(self) -> int | None:
        return getattr(self.prediction, "release_bytes", None)

    @property
    def refusal(self) -> str | None:
        return getattr(self.prediction, "refusal", None)


@dataclass
class RefreshReport:
    walked: list[Ranked] = field(default_factory=list)
    deferred: int = 0  # candidates that needed a walk the budget did not allow now


class Ranking:
    """Predicted releases per process identity; see the module doc."""

    def __init__(self, *, cache_age_s: float, min_release: int, budget: WalkBudget,
                 predict: Callable | None = None, root: Path = PROC, max_walk_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic, cpu_clock: Callable[[], float] = time.thread_time):
        if predict is None:
            from memtop.actions.trim import predict
        self.cache_age_s = cache_age_s
        self.min_release = min_release
        self.budget = budget
        # One walk may take at most the whole budget of a minute (and never more than 60 s).
        self.max_walk_s = max_walk_s if max_walk_s is not None else min(60.0, budget.per_minute)
        self._predict = predict
        self.root = root
        self._clock = clock
        self._cpu_clock = cpu_clock
        self.entries: dict[ProcessIdentity, Ranked] = {}

    def is_fresh(self, entry: Ranked | None, candidate: Candidate, now: float) -> bool:
        if entry is None or now - entry.walked_at > self.cache_age_s:
            return False
        return abs(candidate.rss_anon - entry.rss_anon_at_walk) < max(self.min_release // 2, 1)

    def walk(self, candidate: Candidate, *, should_stop: Callable[[], bool] = lambda: False) -> Ranked | None:
        """Walk one process now (whatever the budget says: the caller decided), and cache it.

        One walk lasts at most ``max_walk_s`` (wall time): a heap too large for that is cached as
        refused ("too large to walk within the budget") for ``cache_age``. None when ``should_stop``
        ended the walk (nothing is cached)."""
        from memtop.heap import Cancelled

        started = self._clock()
        cpu0 = self._cpu_clock()
        too_long = False

        def cancel() -> bool:
            nonlocal too_long
            too_long = self._clock() - started > self.max_walk_s
            return too_long or should_stop()

        try:
            prediction = self._predict(candidate.identity, self.root, cancel=cancel)
        except Cancelled:
            prediction = None
        cpu = max(0.0, self._cpu_clock() - cpu0)
        now = self._clock()
        self.budget.spend(cpu, now)
        if prediction is None:
            if not too_long:
                return None
            from memtop.actions.trim import refused_prediction

            prediction = refused_prediction(f"the heap walk of PID {candidate.identity.pid} took longer than "
                                            f"{self.max_walk_s:g} s (the guard's walk budget) and was stopped")
        entry = Ranked(candidate.identity, candidate.comm, prediction, now, cpu, candidate.rss_anon)
        self.entries[candidate.identity] = entry
        return entry

    def refresh(self, candidates: list[Candidate], *, should_stop: Callable[[], bool] = lambda: False) -> RefreshReport:
        """Walk the allowed candidates whose prediction is missing or stale, largest RssAnon first,
        while the budget allows; forget processes that are gone."""
        report = RefreshReport()
        live = {c.identity for c in candidates}
        self.entries = {i: e for i, e in self.entries.items() if i in live}
        for candidate in candidates:  # scan() sorted them, largest first
            if candidate.excluded is not None:
                continue
            now = self._clock()
            if self.is_fresh(self.entries.get(candidate.identity), candidate, now):
                continue
            if should_stop() or not self.budget.can_walk(now):
                report.deferred += 1
                continue
            entry = self.walk(candidate, should_stop=should_stop)
            if entry is not None:
                report.walked.append(entry)
        return report

    def ordered(self, candidates: list[Candidate]) -> list[tuple[Candidate, Ranked]]:
        """Allowed candidates with a cached, unrefused prediction of a known release, largest first."""
        out = []
        for candidate in candidates:
            entry = self.entries.get(candidate.identity)
            if candidate.excluded is None and entry is not None and entry.refusal is None and entry.release_bytes is not None:
                out.append((candidate, entry))
        out.sort(key=lambda pair: pair[1].release_bytes, reverse=True)
        return out
