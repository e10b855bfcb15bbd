"""The guard's loop: wait for pressure, then trim the best candidates, then evict, until it is gone.

Pressure episodes. Idle, the guard sleeps in poll() on the PSI trigger, waking every quarter of
the trigger's window (at least 0.25 s) to read the pressure file's total, and, every
``IDLE_REFRESH_S`` when ``idle_walks``, to keep its ranking warm within the walk budget. The total
decides: an episode starts when it shows the trigger's threshold reached within one window (since
the last calm moment). The trigger is what wakes the guard at once, but its events are not taken
at their word, for two things measured on kernel 6.18 with a cgroup's memory.pressure: under a
steady 15-25 % stall a trigger stayed silent for 8 s between two events, and an event came 0.8 s
after the stall had stopped (the kernel delivers an event deferred from a window already past).

In an episode the guard acts once at once, then every tick judges the stall since its last action:
at least the trigger's threshold for that much time (100 ms per 1 s is 25 ms per 0.25 s) means the
pressure lasts, and it acts once more; less ends the episode, and nothing more is done until
pressure comes back. So a trim that relieved the pressure is followed by no other, and one that
did not is followed by the next within a tick. When there was nothing to do, the next attempt
waits a whole window. An injected event (the test hook) counts as pressure, whatever the total.

One action at a time:
1. the candidate with the largest predicted release (a prediction at most ``FRESH_S`` old: the
   top candidate is walked again right before it is acted on), if that release reaches the
   minimum, the process is not in its cooldown and the stops-per-minute cap allows a stop;
2. otherwise, when evict paths are configured and the last evict pass is older than the evict
   interval, an evict pass over them;
3. otherwise nothing (said once per episode, with why).

Every action goes through :mod:`memtop.actions.trim` / :mod:`memtop.actions.evict`, which refuse
on their own what is unsafe (held locks, traced or stopped processes, corrupt heaps, zombies,
files that changed). Each is written to the audit log (:mod:`memtop.actions.audit`) as the TUI
writes it, with a ``guard`` section: the pressure before and after and the stall during the
action. ``dry_run`` makes every decision the same way, records cooldowns and stops as if it had
acted, logs the choice, and acts on nothing and writes no audit line.
"""

from __future__ import annotations

import glob as glob_mod
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from memtop.format import fmt_bytes, counted
from memtop.guard.config import GuardConfig
from memtop.guard.policy import Cooldown, Ranking, StopLimit, WalkBudget, scan
from memtop.guard.pressure import PressureReading, PressureSource, PressureSourceError
from memtop.procfs import PROC
from memtop.text import json_dumps, printable

FRESH_S = 2.0  # a prediction older than this is walked again before acting on it
IDLE_REFRESH_S = 10.0  # idle: how often the ranking is refreshed (within the walk budget)
MAX_EVICT_FILES = 10_000  # files per evict pass, all globs together


class EventLog:
    """One line per event on ``stream``: text (``printable``) or, with ``json_lines``, JSON."""

    def __init__(self, stream=None, *, json_lines: bool = False):
        self.stream = stream or sys.stdout
        self.json_lines = json_lines

    def emit(self, event: str, text: str, **fields) -> None:
        now = datetime.now(timezone.utc)
        if self.json_lines:
            line = json_dumps({"time": now.isoformat(timespec="milliseconds"), "event": event, **fields},
                              separators=(",", ":"))
        else:
            line = f"{now.strftime('%H:%M:%S')} {printable(text)}"
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, OSError):
            pass  # the log went away (a closed journal pipe): the guard goes on


@dataclass
class Episode:
    number: int
    started: float
    start: PressureReading | None
    judged_from: PressureReading | None  # the next window's stall is judged from here (after the last action)
    accounted_from: PressureReading | None  # the episode's stall is added up from here (contiguous)
    actions: int = 0
    said_nothing_to_do: bool = False
    said_stop_limit: bool = False
    stall_some_us: int = 0
    stall_full_us: int = 0
    next_attempt_at: float = float("-inf")


@dataclass
class Stats:
    """What the run did (for the final line and the tests)."""

    episodes: int = 0
    trims: dict = field(default_factory=dict)  # status -> count
    evicts: int = 0
    released_bytes: int = 0
    walks: int = 0


class AuditFailure(Exception):
    """The audit log could not be written: the guard stops acting (exit 1)."""


class Guard:
    def __init__(self, config: GuardConfig, source: PressureSource, log: EventLog, metrics=None, *,
                 root: Path = PROC, clock=time.monotonic):
        self.config = config
        self.source = source
        self.log = log
        self.metrics = metrics
        self.root = Path(root)
        self.clock = clock
        now = clock()
        self.cooldown = Cooldown(config.cooldown_s)
        self.stops = StopLimit(config.max_stops_per_minute)
        self.budget = WalkBudget(config.walk_budget_s, now)
        self.ranking = Ranking(cache_age_s=config.cache_age_s, min_release=config.min_release_bytes,
                               budget=self.budget, root=self.root, clock=clock)
        self.never = frozenset({1, os.getpid()})
        self.episode: Episode | None = None
        self.last_evict = float("-inf")
        self.last_idle_refresh = float("-inf")
        self.stats = Stats()
        self._episode_count = 0
        self.recent: list[PressureReading] = []  # idle: readings of the last window, oldest first

    # --- helpers ---------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self.source.stopping

    def _metric(self, name: str, *labels, inc: float | None = None, set_to: float | None = None) -> None:
        if self.metrics is None:
            return
        metric = getattr(self.metrics, name)
        if labels:
            metric = metric.labels(*labels)
        with self.metrics.lock:
            if inc is not None:
                metric.inc(inc)
            if set_to is not None:
                metric.set(set_to)
        self.metrics.touch()

    def _total(self, reading: PressureReading | None, kind: str) -> int | None:
        if reading is None:
            return None
        line = reading.psi.some if kind == "some" else reading.psi.full
        return None if line is None else line.total_us

    def _audit(self, action: str, target, *, prediction, result: dict, duration_s: float, guard: dict) -> None:
        from memtop.actions import audit
        from memtop.text import json_safe

        record = audit.make_record(action, target, prediction=prediction, result=result, duration_s=duration_s)
        record["guard"] = guard
        try:
            audit.append(json_safe(record))
        except OSError as e:
            raise AuditFailure(f"could not write the audit log {printable(str(audit.log_path()))}: "
                               f"{getattr(e, 'message', None) or e.strerror or e}") from None

    def _guard_context(self, before: PressureReading | None, after: PressureReading | None, why: str) -> dict:
        stall = None
        b, a = self._total(before, "some"), self._total(after, "some")
        if a is not None and b is not None:
            stall = max(0, a - b)
        return {"episode": self.episode.number if self.episode else None, "dry_run": self.config.dry_run,
                "pressure_file": self.source.path, "trigger": self.source.spec.text(), "why": why,
                "pressure_before": before.as_json() if before else None,
                "pressure_after": after.as_json() if after else None, "stall_during_us": stall}

    # --- the run ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Log the start; when acting, write it to the audit log first (AuditFailure if it cannot:
        the guard never acts without its log)."""
        c = self.config
        mode = "dry run: choices are logged, nothing is done" if c.dry_run else "acting"
        self.log.emit("start", f"memtop guard: {mode}; trigger {self.source.spec.describe()} on {self.source.path}; "
                               f"min release {fmt_bytes(c.min_release_bytes)}, cooldown {c.cooldown_s:g} s, "
                               f"at most {c.max_stops_per_minute} stops/min, walks {c.walk_budget_s:g} CPU s/min",
                      pid=os.getpid(), config=c.describe(), pressure_file=self.source.path,
                      trigger=self.source.spec.text())
        for note in (self.source.note, self.source.adjusted):
            if note:
                self.log.emit("note", f"note: {note}", note=note)
        if not c.dry_run:
            self._audit("guard", {"pid": os.getpid()}, prediction=None,
                        result={"event": "start", "trigger": self.source.spec.text(), "pressure_file": self.source.path},
                        duration_s=0.0, guard={"config": c.describe()})

    def run(self, duration_s: float | None = None) -> int:
        """Run until a stop is requested (or ``duration_s`` passed). 0 when stopped cleanly, 1 when
        the audit log failed (the guard then stops acting)."""
        started = self.clock()
        self.start()  # AuditFailure here: nothing was done, the caller says why
        try:
            while not self.stopping:
                now = self.clock()
                left = None if duration_s is None else started + duration_s - now
                if left is not None and left <= 0:
                    break
                if self.episode is None:
                    self._idle(left)
                else:
                    self._judge_window(left)
        except AuditFailure as e:
            self.log.emit("error", f"memtop guard: {e}; stopping (the guard does not act without its audit log)",
                          error=str(e))
            return 1
        except PressureSourceError as e:  # the cgroup whose pressure it watched was removed
            self.log.emit("error", f"memtop guard: {e}; stopping", error=str(e))
            return 1
        finally:
            if self.episode is not None:
                self._end_episode("the guard is stopping")
            trims = ", ".join(f"{n} {status}" for status, n in sorted(self.stats.trims.items())) or "none"
            self.log.emit("stop", f"memtop guard stopped: {counted(self.stats.episodes, 'episode')}, trims: {trims}, "
                                  f"{counted(self.stats.evicts, 'evict pass', 'evict passes')}, released {fmt_bytes(self.stats.released_bytes)}",
                          episodes=self.stats.episodes, trims=self.stats.trims, evicts=self.stats.evicts,
                          released_bytes=self.stats.released_bytes)
        if not self.config.dry_run:
            try:
                self._audit("guard", {"pid": os.getpid()}, prediction=None,
                            result={"event": "stop", "episodes": self.stats.episodes, "trims": self.stats.trims,
                                    "evicts": self.stats.evicts, "released_bytes": self.stats.released_bytes},
                            duration_s=self.clock() - started, guard={})
            except AuditFailure as e:
                self.log.emit("error", f"memtop guard: {e}", error=str(e))
                return 1
        return 0

    @property
    def tick_s(self) -> float:
        """How often pressure is read: a quarter of the trigger's window, at least 0.25 s."""
        return max(0.25, self.source.spec.window_us / 4e6)

    def _threshold_us(self, elapsed_s: float) -> float:
        """The trigger's threshold for ``elapsed_s`` seconds (the same share of the time)."""
        return self.source.spec.threshold_us * elapsed_s / (self.source.spec.window_us / 1e6)

    def _stall_between(self, before: PressureReading | None, after: PressureReading | None) -> int | None:
        kind = self.source.spec.kind
        b, a = self._total(before, kind), self._total(after, kind)
        return None if a is None or b is None else max(0, a - b)

    def _idle(self, left: float | None) -> None:
        """Wait a tick (or a trigger event); start an episode on an event, or when the stall since
        the last calm moment, over at most one window, reached the trigger's threshold."""
        timeout = self.tick_s if left is None else min(self.tick_s, left)
        fired, injected = self.source.wait(timeout)
        if self.stopping:
            return
        reading = self.source.read()
        window_s = self.source.spec.window_us / 1e6
        if reading is not None:
            self.recent.append(reading)
            while len(self.recent) > 1 and reading.time - self.recent[1].time >= window_s:
                self.recent.pop(0)  # keep one reading at least a window old (or the last calm one)
        stall = self._stall_between(self.recent[0], reading) if self.recent and reading else None
        over = stall is not None and stall >= self.source.spec.threshold_us
        self._events(fired, injected)
        if injected or over:
            self._begin_episode(fired, injected, stall)
            self._act_once()
            if self.episode is not None:
                self.episode.judged_from = self.source.read() or self.episode.judged_from  # judge what follows the action
        elif self.config.idle_walks and self.clock() - self.last_idle_refresh >= IDLE_REFRESH_S:
            self.last_idle_refresh = self.clock()
            self._rank()

    def _events(self, fired: int, injected: int) -> None:
        if not fired and not injected:
            return
        if fired:
            self._metric("pressure_events", "trigger", inc=fired)
        if injected:
            self._metric("pressure_events", "injected", inc=injected)

    def _begin_episode(self, fired: int, injected: int, stall_us: int | None) -> None:
        self._episode_count += 1
        self.stats.episodes += 1
        reading = self.source.read()
        self.episode = Episode(self._episode_count, self.clock(), reading, reading, reading)
        self._metric("episodes", inc=1)
        self._metric("pressure_active", set_to=1)
        if injected:
            source = "an injected trigger event (test hook)"
        else:
            source = (f"{stall_us / 1000:.0f} ms of {self.source.spec.kind} stall within the trigger's window"
                      f"{' (the PSI trigger fired)' if fired else ' (read; the PSI trigger had not fired)'}")
        avg = f"; some avg10 {reading.psi.some.avg10:.2f}%" if reading else ""
        self.log.emit("pressure", f"pressure: {source}{avg} (episode {self._episode_count})",
                      episode=self._episode_count, trigger_events=fired, injected_events=injected,
                      read_stall_us=stall_us, pressure=reading.as_json() if reading else None)

    def _account(self, reading: PressureReading | None) -> None:
        """Add the stall from the episode's last accounted reading to ``reading``."""
        episode = self.episode
        before = episode.accounted_from
        if before is None or reading is None:
            episode.accounted_from = reading or before
            return
        some = max(0, self._total(reading, "some") - self._total(before, "some"))
        full_b, full_a = self._total(before, "full"), self._total(reading, "full")
        full = max(0, full_a - full_b) if full_a is not None and full_b is not None else 0
        episode.stall_some_us += some
        episode.stall_full_us += full
        self._metric("stall", "some", inc=some / 1e6)
        self._metric("stall", "full", inc=full / 1e6)
        episode.accounted_from = reading

    def _end_episode(self, why: str) -> None:
        reading = self.source.read()
        self._account(reading)
        self.recent = [reading] if reading is not None else []  # the next episode counts stall from now
        episode = self.episode
        self.episode = None
        self._metric("pressure_active", set_to=0)
        self.log.emit("calm", f"pressure gone ({why}): episode {episode.number} lasted "
                              f"{self.clock() - episode.started:.1f} s, {counted(episode.actions, 'action')}, "
                              f"memory stall {episode.stall_some_us / 1e6:.2f} s (some)",
                      episode=episode.number, why=why, seconds=round(self.clock() - episode.started, 3),
                      actions=episode.actions, stall_some_us=episode.stall_some_us, stall_full_us=episode.stall_full_us)

    def _judge_window(self, left: float | None) -> None:
        """Wait a tick, then judge the stall since the last action: still over the trigger's
        threshold (for that much time), or a trigger event came -> act once more; else the episode
        ends. After a tick with nothing to do, the next attempt waits a whole window."""
        episode = self.episode
        start = self.clock()
        end = start + self.tick_s
        if left is not None:
            end = min(end, start + left)
        fired = injected = 0
        while not self.stopping:
            remaining = end - self.clock()
            if remaining <= 0:
                break
            f, i = self.source.wait(remaining)
            fired += f
            injected += i
        self._events(fired, injected)
        if self.stopping:
            return
        reading = self.source.read()
        self._account(reading)
        before = episode.judged_from
        stall = self._stall_between(before, reading)
        elapsed = max(1e-3, reading.time - before.time) if before is not None and reading is not None else self.tick_s
        threshold = self._threshold_us(elapsed)
        under = bool(injected) or (stall is not None and stall >= threshold)
        if not under:
            what = f"{stall / 1000:.0f} ms of stall in {elapsed:.1f} s" if stall is not None else "the pressure file unread"
            self._end_episode(f"{what}, under the trigger's {threshold / 1000:.0f} ms for that time")
            return
        if self.clock() < episode.next_attempt_at:
            return  # pressure lasts, but the last attempt found nothing to do: judge on, act at the next window
        episode.judged_from = reading
        acted = self._act_once()
        if self.episode is not None:
            self.episode.judged_from = self.source.read() or self.episode.judged_from  # judge what follows the action
            if not acted:
                self.episode.next_attempt_at = self.clock() + self.source.spec.window_us / 1e6

    # --- deciding ----------------------------------------------------------------------------------------
    def _rank(self):
        candidates = scan(self.config.rules, self.config.min_release_bytes, root=self.root, never=self.never)
        report = self.ranking.refresh(candidates, should_stop=lambda: self.stopping)
        for entry in report.walked:
            self.stats.walks += 1
            self._metric("walks", inc=1)
            self._metric("walk_cpu", inc=entry.walk_cpu_s)
        self._count_states(candidates)
        return candidates, report

    def _count_states(self, candidates) -> None:
        if self.metrics is None:
            return
        now = self.clock()
        counts = dict.fromkeys(("eligible", "cooldown", "below_minimum", "unknown_release", "refused", "excluded",
                                "not_walked"), 0)
        for c in candidates:
            entry = self.ranking.entries.get(c.identity)
            if c.excluded is not None:
                counts["excluded"] += 1
            elif entry is None:
                counts["not_walked"] += 1
            elif entry.refusal is not None:
                counts["refused"] += 1
            elif entry.release_bytes is None:
                counts["unknown_release"] += 1
            elif entry.release_bytes < self.config.min_release_bytes:
                counts["below_minimum"] += 1
            elif self.cooldown.remaining(c.identity, now) > 0:
                counts["cooldown"] += 1
            else:
                counts["eligible"] += 1
        for state, n in counts.items():
            self._metric("candidates", state, set_to=n)

    def _act_once(self) -> bool:
        """One action (a trim, a dry run's choice, or an evict pass); False when there was nothing to do."""
        if self.stopping:
            return False
        candidates, report = self._rank()
        for _ in range(3):  # a candidate whose fresh walk no longer shows enough: choose again
            if self.stopping:
                return False  # asked to stop during the walks: start nothing new
            now = self.clock()
            self.cooldown.forget_gone({c.identity for c in candidates}, now)
            choice, passed = self._choose(candidates, now)
            if choice is None:
                break
            outcome = self._trim(*choice, ranked=len(self.ranking.ordered(candidates)))
            if outcome != "stale":
                return outcome == "acted"
        now = self.clock()
        if self.config.evict_globs and now - self.last_evict >= self.config.evict_interval_s:
            self._evict()
            return True
        if not self.episode.said_nothing_to_do:
            self.episode.said_nothing_to_do = True
            if not passed:
                allowed = [c for c in candidates if c.excluded is None]
                entries = [self.ranking.entries.get(c.identity) for c in allowed]
                walked = [e for e in entries if e is not None]
                refused = sum(e.refusal is not None for e in walked)
                unknown = sum(e.refusal is None and e.release_bytes is None for e in walked)
                detail = [f"{counted(len(allowed), 'allowed process', 'allowed processes')} {'has' if len(allowed) == 1 else 'have'} that much anonymous memory",
                          f"{len(walked)} walked"]
                if refused:
                    detail.append(f"{refused} refused by trim")
                if unknown:
                    detail.append(f"{unknown} with a heap changing too fast to predict")
                if report.deferred:
                    detail.append(f"{report.deferred} waiting for the walk budget")
                passed.append(f"no allowed process has a predicted release of at least "
                              f"{fmt_bytes(self.config.min_release_bytes)} ({', '.join(detail)})")
            if self.config.evict_globs:
                passed.append(f"the last evict pass was {now - self.last_evict:.0f} s ago "
                              f"(interval {self.config.evict_interval_s:g} s)")
            self.log.emit("nothing", "nothing to do: " + "; ".join(passed), reasons=passed)
        return False

    def _choose(self, candidates, now: float):
        """The candidate to trim now, or None; and why others were passed over."""
        choice, passed = None, []
        for candidate, entry in self.ranking.ordered(candidates):
            if entry.release_bytes < self.config.min_release_bytes:
                passed.append(f"the largest predicted release left is {fmt_bytes(entry.release_bytes)} "
                              f"(PID {candidate.identity.pid}), under the minimum {fmt_bytes(self.config.min_release_bytes)}")
                break
            wait = self.cooldown.remaining(candidate.identity, now)
            if wait > 0:
                passed.append(f"PID {candidate.identity.pid} in cooldown for {wait:.0f} s")
                continue
            choice = (candidate, entry)
            break
        if choice is not None and not self.stops.allowed(now):
            self._metric("stop_limit_hits", inc=1)
            if not self.episode.said_stop_limit:
                self.episode.said_stop_limit = True
                self.log.emit("limit", f"stop limit: {self.stops.count(now)} stops in the last minute (max "
                                       f"{self.config.max_stops_per_minute}): PID {choice[0].identity.pid} waits "
                                       f"{self.stops.next_slot_in(now):.0f} s",
                              pid=choice[0].identity.pid, next_slot_s=round(self.stops.next_slot_in(now), 1))
            passed.append("the stops-per-minute cap is reached")
            choice = None
        return choice, passed

    # --- acting ------------------------------------------------------------------------------------------
    def _trim(self, candidate, entry, *, ranked: int) -> str:
        """"acted" (trimmed, or chosen in a dry run), "stale" (its fresh walk shows too little now:
        choose again), or "stopped" (a stop was asked for during the walk)."""
        from memtop.actions import trim as trim_action

        identity = candidate.identity
        now = self.clock()
        if now - entry.walked_at > FRESH_S:
            entry = self.ranking.walk(candidate, should_stop=lambda: self.stopping)  # decide on a fresh walk
            if entry is None:
                return "stopped"
            self.stats.walks += 1
            self._metric("walks", inc=1)
            self._metric("walk_cpu", inc=entry.walk_cpu_s)
        if self.stopping:
            return "stopped"  # asked to stop during the walk: start nothing new
        prediction = entry.prediction
        comm = printable(candidate.comm)
        min_release = self.config.min_release_bytes
        if prediction.refusal is not None:
            self.log.emit("skip", f"PID {identity.pid} ({comm}): walked again, trim now refuses it: "
                                  f"{printable(prediction.refusal)}",
                          pid=identity.pid, comm=candidate.comm, refusal=prediction.refusal)
            return "stale"
        if prediction.release_bytes is None or prediction.release_bytes < min_release:
            self.log.emit("skip", f"PID {identity.pid} ({comm}): walked again, the release is now "
                                  f"{fmt_bytes(prediction.release_bytes)}, under the minimum {fmt_bytes(min_release)}",
                          pid=identity.pid, comm=candidate.comm, predicted_bytes=prediction.release_bytes)
            return "stale"
        why = (f"largest predicted release of {ranked} ranked: {fmt_bytes(prediction.release_bytes)} "
               f">= minimum {fmt_bytes(min_release)}")
        now = self.clock()
        self.cooldown.start(identity, now)
        self.episode.actions += 1
        if self.config.dry_run:
            self.stops.record(now)
            self.stats.trims["dry_run"] = self.stats.trims.get("dry_run", 0) + 1
            self._metric("actions", "trim", "dry_run", inc=1)
            self._metric("last_action", set_to=time.time())
            text = (f"dry run: would trim PID {identity.pid} ({comm}): predicted release "
                    f"{fmt_bytes(prediction.release_bytes)}, stop ~{prediction.estimated_stop_s * 1000:.0f} ms")
            self.log.emit("would-trim", text, pid=identity.pid, start_ticks=identity.start_ticks, comm=candidate.comm,
                          predicted_bytes=prediction.release_bytes, refusal=prediction.refusal, why=why,
                          episode=self.episode.number)
            return "acted"
        self.stops.record(now)
        before = self.source.read()
        result = trim_action.trim(identity, timeout=self.config.timeout_s, root=self.root, prediction=prediction,
                                  log=False)
        after = self.source.read()
        context = self._guard_context(before, after, why)
        self.stats.trims[result.status] = self.stats.trims.get(result.status, 0) + 1
        released = result.released_bytes
        if result.ok and released and released > 0:
            self.stats.released_bytes += released
            self._metric("released", "trim", inc=released)
        self._metric("actions", "trim", result.status, inc=1)
        self._metric("last_action", set_to=time.time())
        self._metric("predicted", inc=prediction.release_bytes)
        if result.stopped_s:
            self._metric("stopped", inc=result.stopped_s)
        if context["stall_during_us"] is not None:
            self._metric("action_stall", "trim", inc=context["stall_during_us"] / 1e6)
        self._audit("trim", {"pid": identity.pid, "start_ticks": identity.start_ticks, "comm": candidate.comm},
                    prediction=prediction.as_json(),
                    result={k: v for k, v in result.as_json().items() if k != "prediction"},
                    duration_s=result.duration_s, guard=context)
        if result.ok:
            text = (f"trimmed PID {identity.pid} ({comm}): predicted {fmt_bytes(prediction.release_bytes)}, heap released "
                    f"{fmt_bytes(result.heap_released_bytes)}, RSS {fmt_bytes(result.rss_before)} -> "
                    f"{fmt_bytes(result.rss_after)}, stopped {(result.stopped_s or 0) * 1000:.0f} ms")
        else:
            text = f"trim of PID {identity.pid} ({comm}) {result.status}: {printable(result.message)}"
        self.log.emit("trim", text, pid=identity.pid, start_ticks=identity.start_ticks, comm=candidate.comm,
                      status=result.status, message=result.message, predicted_bytes=prediction.release_bytes,
                      released_bytes=released, heap_released_bytes=result.heap_released_bytes,
                      stopped_ms=None if result.stopped_s is None else round(result.stopped_s * 1000, 1),
                      why=why, episode=self.episode.number, pressure_before=context["pressure_before"],
                      pressure_after=context["pressure_after"], stall_during_us=context["stall_during_us"])
        return "acted"

    def evict_targets(self) -> tuple[list, list[str]]:
        """The files the evict globs name now, each pinned (memtop.actions.evict.check_file): only
        regular files, never one reached through a symbolic link; and what was skipped, why."""
        from memtop.actions.evict import check_file

        targets, skipped, seen = [], [], set()
        for pattern in self.config.evict_globs:
            for path in sorted(glob_mod.iglob(pattern, recursive=True))[:MAX_EVICT_FILES]:
                if path in seen:
                    continue
                seen.add(path)
                if len(targets) >= MAX_EVICT_FILES:
                    skipped.append(f"more than {MAX_EVICT_FILES} files: the rest wait for the next pass")
                    return targets, skipped
                if os.path.realpath(path) != os.path.abspath(path):
                    skipped.append(f"{path}: reached through a symbolic link")
                    continue
                target = check_file(path, follow_symlinks=False)
                if target.early is not None:
                    if target.early.error and "only regular files" not in target.early.error:
                        skipped.append(f"{path}: {target.early.error}")
                    continue
                targets.append(target)
        return targets, skipped

    def _evict(self) -> None:
        from memtop.actions.evict import evict_checked
        from memtop.procfs.cachestat import file_cache_stat

        now = self.clock()
        self.last_evict = now
        targets, skipped = self.evict_targets()
        self.episode.actions += 1
        why = "no trim candidate could be acted on (see the last lines); evicting the configured paths"
        if not targets:
            self.log.emit("evict", f"evict: no regular file matches the evict paths ({len(skipped)} skipped)",
                          files=0, skipped=skipped[:20])
            return
        if self.config.dry_run:
            cached = [file_cache_stat(t.resolved, follow_symlinks=False).cached_bytes for t in targets]
            known = [c for c in cached if c is not None]
            self.stats.evicts += 1
            self._metric("actions", "evict", "dry_run", inc=1)
            self._metric("last_action", set_to=time.time())
            self.log.emit("would-evict", f"dry run: would evict {counted(len(targets), 'file')} holding "
                                         f"{fmt_bytes(sum(known)) if known else 'an unknown amount of'} page cache",
                          files=len(targets), cached_bytes=sum(known) if known else None,
                          paths=[t.path for t in targets[:50]], skipped=skipped[:20], why=why)
            return
        before = self.source.read()
        started = time.monotonic()
        outcome = evict_checked(targets, log=False)
        duration = time.monotonic() - started
        after = self.source.read()
        context = self._guard_context(before, after, why)
        results = outcome.results
        dropped = sum(r.dropped_bytes or 0 for r in results)
        self.stats.evicts += 1
        self.stats.released_bytes += max(0, dropped)
        for r in results:
            self._metric("actions", "evict", r.outcome, inc=1)
        self._metric("released", "evict", inc=max(0, dropped))
        self._metric("last_action", set_to=time.time())
        if context["stall_during_us"] is not None:
            self._metric("action_stall", "evict", inc=context["stall_during_us"] / 1e6)
        self._audit("evict", {"paths": list(self.config.evict_globs), "recursive": False, "sync": False},
                    prediction=None,
                    result={"files": len(results), "failed": sum(not r.ok for r in results),
                            "refused": sum(r.refused for r in results),
                            "partial": sum(r.outcome == "partial" for r in results), "dropped_bytes": dropped,
                            "per_file": [r.as_json() for r in results[:200]]},
                    duration_s=duration, guard=context)
        self.log.emit("evict", f"evicted {counted(len(results), 'file')}: dropped {fmt_bytes(dropped)} of page cache, "
                               f"{sum(not r.ok for r in results)} not evicted",
                      files=len(results), dropped_bytes=dropped, failed=sum(not r.ok for r in results),
                      refused=sum(r.refused for r in results), skipped=skipped[:20],
                      pressure_before=context["pressure_before"], pressure_after=context["pressure_after"],
                      stall_during_us=context["stall_during_us"])
