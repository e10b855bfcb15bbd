"""The Collector: one road from /proc to every consumer.

Every tick it samples the processes (memtop/collect/sampler.py) and starts, on a small pool of
worker threads, each *part* that is due and that someone consumes; it hands out one immutable
:class:`~memtop.model.sample.Sample` holding the processes and the latest result of every part.
The TUI renders samples, ``memtop snapshot`` formats one, ``memtop record`` stores them and
``memtop export`` turns them into metrics: none of them reads /proc itself.

A part (:class:`Part`) knows what to read and keeps its own history (slab growth, PSI readings,
vmstat rates). How parts are scheduled is written here once:

- only while a consumer wants it (:meth:`Collector.want`): a hidden tab costs nothing;
- one run in flight per part; a part is due when its interval has passed since the last run
  ended (re-armed on completion, so a slow part never piles up) or when what it is read for
  changed (the selected process, a directory: its *key*);
- a result read for another key than the current one is stale and dropped; a run whose key is
  no longer wanted is told to stop (``job.cancelled()``);
- a part that raises does not stop anything: its result carries the error, the next tick tries
  again.

Nothing here imports Textual: the TUI passes ``on_update`` (called from worker threads with each
new sample; it posts a message), the other consumers call :meth:`Collector.tick` and
:meth:`Collector.collect_once`.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Hashable, Iterable, Mapping

from memtop.collect.sampler import Sampler
from memtop.model.process import ProcessIdentity
from memtop.model.sample import PartResult, Sample
from memtop.model.snapshot import Snapshot
from memtop.procfs import PROC


# No part costs more than 0.5 % of a core on average: a run that cost c seconds of CPU is not
# started again sooner than PART_DUTY * c after it ended (a part cheaper than a tick's worth runs
# at its own interval, most at every tick). What is spaced out says its age on its tab. (1 % before:
# the Kernel part alone, ~20 ms a run at ~100 processes, took 0.7 % of a core, half of its tab's
# idle cost; issue 20 item 2 wants every tab ≤ 1.5 % with ~100 processes.)
PART_DUTY = 200.0


class PartUnavailable(Exception):
    """A part cannot be read for this request; its message says why (shown as it is)."""


@dataclass(frozen=True)
class Job:
    """What one run of a part gets."""

    snapshot: Snapshot  # the processes of the tick the run started from
    target: ProcessIdentity | None  # the selected process
    params: Mapping[str, Any]  # the part's own parameters (Collector.set_params)
    root: Path
    cancelled: Callable[[], bool]  # True once the result could not be used any more: stop early
    progress: Callable[[Any], None]  # publish what is known so far (shown while the run goes on)
    one_shot: bool = False  # a single sample (memtop snapshot): no history to lean on


class Part:
    """A domain's collection. Subclasses set ``name`` and implement :meth:`collect`."""

    name: ClassVar[str] = "?"
    # True: the part is read once at start whoever wants it (e.g. a baseline of counters).
    at_start: ClassVar[bool] = False

    def key(self, target: ProcessIdentity | None, params: Mapping[str, Any]) -> Hashable:
        """What a result is read for; a new key makes the part due at once and older results
        stale. The default: nothing (the same for every target)."""
        return None

    def interval_s(self, tick_s: float, last: PartResult | None) -> float | None:
        """Seconds from the end of the last run to the next one (on the processes' clock); 0:
        once every tick; None: only when the key changes or :meth:`Collector.refresh` asks.
        The default: every tick."""
        return 0.0

    def collect(self, job: Job) -> Any:
        raise NotImplementedError  # every part says what it reads

    def close(self) -> None:
        """Release what the part holds open."""


@dataclass
class _State:
    part: Part
    result: PartResult | None = None
    running_key: Hashable = None
    running: bool = False
    progress: Any = None
    last_end: float = float("-inf")
    forced: bool = False  # Collector.refresh asked for a run
    stop: bool = False  # Collector.stop asked the running one to stop (what it has is kept)


class Collector:
    """Builds samples. :meth:`tick` is called by one thread (the sampler's); everything else is
    thread-safe."""

    def __init__(self, root: Path = PROC, *, parts: Iterable[Part] = (), sampler: Sampler | None = None,
                 workers: int = 2, on_update: Callable[[Sample], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.root = Path(root)
        self.sampler = sampler or Sampler(self.root)
        self.on_update = on_update
        self.interval_s = 2.0
        # Tests on a captured tree with a fake clock set 0: which ticks a part runs at must not
        # depend on how loaded the machine running them is (its CPU cost is real).
        self.part_duty = PART_DUTY
        self._clock = clock
        self._lock = threading.Lock()
        self._tick_lock = threading.Lock()  # held while the sampler samples: close waits for it
        self._states: dict[str, _State] = {p.name: _State(p) for p in parts}
        self._wants: dict[str, frozenset[str]] = {}
        self._target: ProcessIdentity | None = None
        self._params: dict[str, Mapping[str, Any]] = {}
        self._snapshot: Snapshot | None = None
        # workers=0: parts run in the thread that ticks, during the tick (deterministic tests,
        # one-shot tools); requests between ticks wait for the next one.
        self._inline = workers == 0
        self._pool = None if self._inline else ThreadPoolExecutor(max_workers=workers, thread_name_prefix="memtop-part")
        self._closed = False
        self.latest: Sample | None = None

    # --- who wants what -------------------------------------------------------------------------
    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(self._states)

    def part(self, name: str) -> Part:
        return self._states[name].part

    def want(self, consumer: str, parts: Iterable[str]) -> None:
        """``consumer`` (a tab, the recorder...) wants exactly ``parts`` from now on."""
        names = frozenset(p for p in parts if p in self._states)
        with self._lock:
            self._wants[consumer] = names
        self._schedule()

    def wanted(self) -> frozenset[str]:
        with self._lock:
            return frozenset().union(*self._wants.values()) if self._wants else frozenset()

    def set_target(self, target: ProcessIdentity | None) -> None:
        with self._lock:
            changed = target != self._target
            self._target = target
        if changed:
            self._schedule()

    @property
    def target(self) -> ProcessIdentity | None:
        return self._target

    def set_params(self, name: str, **params: Any) -> None:
        """The part's own parameters (a directory to scan, a source); a new key starts a run."""
        with self._lock:
            self._params[name] = MappingProxyType(dict(params))
        self._schedule()

    def refresh(self, name: str) -> None:
        """Read part ``name`` again as soon as it is free (the user pressed r)."""
        with self._lock:
            if name in self._states:
                self._states[name].forced = True
        self._schedule()

    def stop(self, name: str) -> None:
        """Ask the run of part ``name`` in flight to stop now (the user cancelled a scan); the
        part returns what it has, which is kept as its result."""
        with self._lock:
            if name in self._states and self._states[name].running:
                self._states[name].stop = True

    # --- ticks ------------------------------------------------------------------------------------
    def tick(self, *, all_rollups: bool = False) -> Sample:
        """Sample the processes, start the parts that are due, return the sample. After
        :meth:`close`, the last sample again (nothing is read: the files are closed)."""
        with self._tick_lock:
            if self._closed and self.latest is not None:
                return self.latest
            if self._closed:
                raise RuntimeError("the collector is closed")
            sampled = self.sampler.sample(all_rollups=all_rollups)
        snapshot = replace(sampled, interval_s=self.interval_s)
        with self._lock:
            self._snapshot = snapshot
        self._schedule(start=snapshot.tick == 0, ticking=True)
        return self._compose()

    def collect_once(self, parts: Iterable[str], *, target: ProcessIdentity | None = None,
                     timeout: float = 60.0, all_rollups: bool = True) -> Sample:
        """One sample with ``parts`` read for it, waiting for them (``memtop snapshot``)."""
        names = [p for p in parts if p in self._states]
        with self._lock:
            self._target = target
        snapshot = self.sampler.sample(all_rollups=all_rollups)
        with self._lock:
            self._snapshot = snapshot
        futures = []
        for name in names:
            state = self._states[name]
            key = state.part.key(target, self._params.get(name, MappingProxyType({})))
            futures.append(self._start(state, snapshot, key, one_shot=True))
        wait([f for f in futures if f is not None], timeout=timeout)
        return self._compose()

    def close(self, timeout: float = 2.0) -> None:
        """Stop: the runs in flight are told to stop (Job.cancelled) and waited for, the tick in
        flight too, up to ``timeout`` seconds in all; then what they hold open is closed. What
        is still running then is not closed under it (its files go with the process)."""
        with self._lock:
            self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                running = [s for s in self._states.values() if s.running]
            if not running or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        still = {id(s) for s in running}
        for state in self._states.values():
            if id(state) in still:
                continue
            try:
                state.part.close()
            except OSError:
                pass
        close = getattr(self.sampler, "close", None)
        if close is not None and self._tick_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            try:
                close()
            finally:
                self._tick_lock.release()

    # --- scheduling -------------------------------------------------------------------------------
    def _schedule(self, start: bool = False, ticking: bool = False) -> None:
        with self._lock:
            snapshot = self._snapshot
            if snapshot is None or self._closed or (self._inline and not ticking):
                return
            wanted = frozenset().union(*self._wants.values()) if self._wants else frozenset()
            due = []
            now = snapshot.system.monotonic  # the processes' clock (a fake one in tests)
            for name, state in self._states.items():
                if name not in wanted and not (start and state.part.at_start):
                    continue
                key = state.part.key(self._target, self._params.get(name, MappingProxyType({})))
                if state.running:
                    continue  # one run in flight; re-armed when it ends
                last = state.result
                if state.forced or last is None or last.key != key:
                    due.append((state, key))
                    continue
                interval = state.part.interval_s(self.interval_s, last)
                if interval is None:
                    continue
                if self.part_duty * last.cpu_s > self.interval_s:  # an expensive run: spaced out
                    interval = max(interval, self.part_duty * last.cpu_s)
                if (last.tick < snapshot.tick) if interval == 0 else (now - state.last_end >= interval):
                    due.append((state, key))
            for state, key in due:
                state.forced = False
                state.stop = False
                state.running = True
                state.running_key = key
                state.progress = None
        for state, key in due:
            self._submit(state, snapshot, key)

    def _start(self, state: _State, snapshot: Snapshot, key: Hashable, *, one_shot: bool = False):
        with self._lock:
            if state.running or self._closed:
                return None
            state.running = True
            state.stop = False
            state.running_key = key
            state.progress = None
        return self._submit(state, snapshot, key, one_shot=one_shot)

    def _submit(self, state: _State, snapshot: Snapshot, key: Hashable, *, one_shot: bool = False):
        if self._inline:
            self._run(state, snapshot, key, one_shot)
            return None
        try:
            return self._pool.submit(self._run, state, snapshot, key, one_shot)
        except RuntimeError:  # the pool was shut down (closing)
            with self._lock:
                state.running = False
            return None

    def _current_key(self, state: _State) -> Hashable:
        return state.part.key(self._target, self._params.get(state.part.name, MappingProxyType({})))

    def _run(self, state: _State, snapshot: Snapshot, key: Hashable, one_shot: bool) -> None:
        name = state.part.name

        def cancelled() -> bool:
            with self._lock:
                return self._closed or state.stop or (not one_shot and self._current_key(state) != key)

        def progress(value: Any) -> None:
            with self._lock:
                if state.running_key != key:
                    return
                state.progress = value
            self._publish()

        job = Job(snapshot, self._target, self._params.get(name, MappingProxyType({})), self.root, cancelled,
                  progress, one_shot)
        started, cpu0 = self._clock(), time.thread_time()
        value, error = None, None
        try:
            value = state.part.collect(job)
        except PartUnavailable as e:
            error = str(e)
        except Exception as e:  # noqa: BLE001 - a part must never stop the others; its error is shown
            error = f"{type(e).__name__}: {e}"
        ended, cpu_s = self._clock(), time.thread_time() - cpu0
        with self._lock:
            state.running = False
            state.last_end = snapshot.system.monotonic + (ended - started)  # on the processes' clock
            fresh = one_shot or self._current_key(state) == key
            if fresh and not (error is None and value is None and (self._closed or state.stop)):
                state.result = PartResult(value, snapshot.tick, ended, ended - started, key, error, cpu_s=cpu_s)
            state.progress = None
            closed = self._closed
        if closed:
            return
        if fresh and not one_shot:
            self._publish()
        if not one_shot and not self._inline:
            self._schedule()  # re-armed: due again, or its key changed while it ran

    # --- samples ----------------------------------------------------------------------------------
    def _compose(self) -> Sample:
        with self._lock:
            parts = {}
            for name, state in self._states.items():
                result = state.result
                if state.running and state.progress is not None:
                    base = result if result is not None and result.key == state.running_key else None
                    result = (replace(base, progress=state.progress, running=True) if base is not None
                              else PartResult(None, -1, 0.0, 0.0, state.running_key, progress=state.progress,
                                              running=True))
                elif state.running and result is not None and result.key == state.running_key:
                    result = replace(result, running=True)
                if result is not None:
                    parts[name] = result
            sample = Sample(self._snapshot, MappingProxyType(parts))
            self.latest = sample
        return sample

    def _publish(self) -> None:
        if self.on_update is None or self._snapshot is None:
            return
        self.on_update(self._compose())
