"""Tiered collection of processes and system memory.

Every tick, for every process: stat, status and the fd count (cheap: ~20 µs each).
smaps_rollup walks the target's page tables (cost grows with RSS, and it takes the target's
mmap lock: htop issue 1712), so it is read every tick only for the rows on screen and the
selected process, and staggered for the rest so that no rollup is older than ``stagger`` ticks.
"""

from __future__ import annotations

import bisect
import pwd
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from memtop.model.process import ProcessIdentity, ProcessSample, ProcessView, Rollup
from memtop.model.snapshot import Snapshot, SystemSample
from memtop.procfs import PROC, AccessDenied, NoSuchProcess, OpenFiles, ParseError, ProcfsError
from memtop.procfs import process as procfs
from memtop.procfs import system as sysfs

DEFAULT_INTERVAL_S = 2.0
HISTORY_LEN = 150  # points per process: 5 minutes at the default 2 s tick
SYSTEM_HISTORY_LEN = 600


@dataclass(slots=True)
class _RollupState:
    rollup: Rollup | None
    reason: str | None
    time: float | None
    tick: int


class Sampler:
    """Reads one tick at a time. Not thread-safe: one thread calls :meth:`sample`.

    The UI may assign :attr:`visible` (a frozenset of PIDs on screen, including the selected
    one) from another thread: it is replaced, never mutated.
    """

    def __init__(self, root: Path = PROC, *, stagger: int = 5, history_len: int = HISTORY_LEN,
                 clock=time.monotonic, wall_clock=time.time):
        self.root = Path(root)
        self._clock = clock
        self._wall_clock = wall_clock
        self.stagger = max(1, stagger)
        self.history_len = history_len
        self.visible: frozenset[int] = frozenset()
        self.tick = 0
        # A captured tree (tests) has plain directories for fd: count by listing there.
        self._fd_stat_size = self.root == PROC and procfs.fd_count_is_stat_size()
        self._prev: dict[ProcessIdentity, ProcessSample] = {}
        self._cmdlines: dict[ProcessIdentity, str] = {}
        self._last: dict[int, tuple[bytes, ProcessSample]] = {}  # PID -> (raw stat line, sample)
        self._prev_time: float | None = None
        self._stat_files = OpenFiles("stat", self.root)
        self._rollups: dict[ProcessIdentity, _RollupState] = {}
        self._histories: dict[ProcessIdentity, deque] = {}  # of (time, rss, fds), bounded
        self._users: dict[int, str] = {}
        self._sys_times: deque = deque(maxlen=SYSTEM_HISTORY_LEN)
        self._sys_available: deque = deque(maxlen=SYSTEM_HISTORY_LEN)
        self._hostname = self._read_or(sysfs.read_hostname, "?")
        self._kernel = self._read_or(sysfs.read_kernel_release, "?")

    def close(self) -> None:
        """Close the proc files held open between ticks."""
        self._stat_files.close()

    def _read_or(self, reader, default):
        try:
            return reader(self.root)
        except (ProcfsError, OSError):
            return default

    def _user(self, uid: int | None) -> str | None:
        if uid is None:
            return None
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self._users[uid] = name
        return name

    def _want_rollup(self, identity: ProcessIdentity, all_rollups: bool) -> bool:
        if all_rollups or identity.pid in self.visible:
            return True
        state = self._rollups.get(identity)
        if state is None:
            return True
        if self.tick - state.tick >= self.stagger:
            return True
        return (identity.pid + self.tick) % self.stagger == 0

    def _read_process(self, pid: int, now: float, all_rollups: bool) -> ProcessSample | None:
        """One process, or None when it vanished. Permission problems become reasons.

        An idle process costs two syscalls: when its stat line is byte for byte the one of the
        last tick (same start time, so the same process; no CPU time, no fault, same RSS), the
        last sample is reused and only the fd count (and a due smaps_rollup) is read again.
        """
        root = self.root
        stat_path = f"{root}/{pid}/stat"
        try:
            raw = self._stat_files.read(pid)
        except (NoSuchProcess, AccessDenied):
            return None
        last = self._last.get(pid)
        prev = last[1] if last is not None and last[0] == raw else None
        if prev is not None:
            identity, kernel_thread, zombie = prev.identity, prev.kernel_thread, prev.state in ("Z", "X")
        else:
            try:
                stat = procfs.parse_stat_file(raw, stat_path)
            except ParseError:
                # A stat line we do not understand: drop the row rather than show wrong numbers.
                return None
            identity = ProcessIdentity(pid, stat.start_ticks)
            kernel_thread, zombie = stat.is_kernel_thread, stat.is_zombie
            try:
                status = procfs.read_status(pid, root)
                cmdline = self._cmdlines.get(identity)
                if cmdline is None:
                    try:
                        cmdline = procfs.read_cmdline(pid, root)
                    except AccessDenied:
                        cmdline = ""
                    self._cmdlines[identity] = cmdline
            except (NoSuchProcess, ParseError):
                return None

        fd_count: int | None = None
        fd_reason: str | None = None
        if kernel_thread:
            fd_reason = "kernel thread"
        else:
            try:
                fd_count = procfs.read_fd_count(pid, root, stat_size=self._fd_stat_size)
            except NoSuchProcess:
                fd_reason = "no fd table (process exiting, or not in a captured tree)"
            except AccessDenied as e:
                fd_reason = e.reason

        state = self._rollups.get(identity)
        if kernel_thread:
            state = _RollupState(None, "kernel thread: no user address space", None, self.tick)
        elif zombie:
            state = _RollupState(None, "zombie: its memory is already released", None, self.tick)
        elif self._want_rollup(identity, all_rollups):
            try:
                rollup = procfs.read_rollup(pid, root)
                reason = None if rollup is not None else "no smaps_rollup data (exiting?)"
                state = _RollupState(rollup, reason, now, self.tick)
            except NoSuchProcess:
                return None
            except AccessDenied as e:
                state = _RollupState(None, e.reason, now, self.tick)
            except ParseError as e:
                state = _RollupState(None, str(e), now, self.tick)
            self.rollups_read += 1
        self._rollups[identity] = state
        rollup, rollup_reason, rollup_time = state.rollup, state.reason, state.time

        if prev is not None:
            if (prev.fd_count, prev.fd_reason, prev.rollup, prev.rollup_reason, prev.rollup_time) == (
                fd_count, fd_reason, rollup, rollup_reason, rollup_time
            ):
                sample = prev
            else:
                sample = replace(prev, fd_count=fd_count, fd_reason=fd_reason, rollup=rollup,
                                 rollup_reason=rollup_reason, rollup_time=rollup_time)
        else:
            sample = ProcessSample(
                identity=identity,
                ppid=stat.ppid,
                comm=stat.comm,
                cmdline=cmdline,
                user=self._user(status.uid),
                state=stat.state,
                kernel_thread=kernel_thread,
                rss_bytes=status.rss if status.rss is not None else (0 if kernel_thread else None),
                anon_bytes=status.rss_anon,
                file_bytes=status.rss_file,
                shmem_bytes=status.rss_shmem,
                swap_bytes=status.swap,
                threads=stat.num_threads,
                minflt=stat.minflt,
                majflt=stat.majflt,
                fd_count=fd_count,
                fd_reason=fd_reason,
                rollup=rollup,
                rollup_reason=rollup_reason,
                rollup_time=rollup_time,
            )
        self._last[pid] = (raw, sample)
        return sample

    def _view(self, sample: ProcessSample, now: float) -> ProcessView:
        identity = sample.identity
        history = self._histories.get(identity)
        if history is None:
            history = self._histories[identity] = deque(maxlen=self.history_len)
        history.append((now, sample.rss_bytes, sample.fd_count))
        frozen = tuple(history)

        prev = self._prev.get(identity)
        minflt_rate = majflt_rate = None
        if prev is not None and self._prev_time is not None and now > self._prev_time:
            dt = now - self._prev_time
            minflt_rate = (sample.minflt - prev.minflt) / dt
            majflt_rate = (sample.majflt - prev.majflt) / dt
        return ProcessView(
            sample=sample,
            minflt_per_s=minflt_rate,
            majflt_per_s=majflt_rate,
            rss_change_per_min=rss_change_per_min(frozen),
            rollup_age_s=(now - sample.rollup_time) if sample.rollup_time is not None else None,
            history=frozen,
        )

    def sample(self, *, all_rollups: bool = False) -> Snapshot:
        """Read one tick. ``all_rollups`` reads smaps_rollup for every process (snapshot CLI)."""
        cpu0 = time.thread_time()
        now = self._clock()
        self.rollups_read = 0
        warnings: list[str] = []
        try:
            meminfo = sysfs.read_meminfo(self.root)
        except ProcfsError as e:
            meminfo = {}
            warnings.append(str(e))
        uptime = self._read_or(sysfs.read_uptime, None)
        system = SystemSample(
            wall_time=self._wall_clock(),
            monotonic=now,
            hostname=self._hostname,
            kernel=self._kernel,
            uptime_s=uptime,
            meminfo=MappingProxyType(meminfo),
        )
        self._sys_times.append(now)
        self._sys_available.append(meminfo.get("MemAvailable"))

        samples: dict[ProcessIdentity, ProcessSample] = {}
        try:
            pids = procfs.list_pids(self.root)
        except OSError as e:
            pids = []
            warnings.append(f"cannot list {self.root}: {e}")
        for pid in pids:
            sample = self._read_process(pid, now, all_rollups)
            if sample is not None:
                samples[sample.identity] = sample
        views = tuple(self._view(s, now) for s in samples.values())

        # Forget what vanished, so memory stays flat over any number of ticks.
        for cache in (self._cmdlines, self._rollups, self._histories):
            for identity in [i for i in cache if i not in samples]:
                del cache[identity]
        for pid in [pid for pid, (_, sample) in self._last.items() if sample.identity not in samples]:
            del self._last[pid]
        for pid in self._stat_files.pids():
            if pid not in self._last:
                self._stat_files.forget(pid)
        self._prev = samples
        self._prev_time = now
        snapshot = Snapshot(
            tick=self.tick,
            interval_s=0.0,
            system=system,
            processes=views,
            history_times=tuple(self._sys_times),
            available_history=tuple(self._sys_available),
            rollups_read=self.rollups_read,
            sample_cpu_s=time.thread_time() - cpu0,
            warnings=tuple(warnings),
        )
        self.tick += 1
        return snapshot


def rss_change_per_min(history: tuple[tuple[float, int | None, int | None], ...], window_s: float = 60.0) -> float | None:
    """RSS change per minute over the last ``window_s`` (or what history there is, if ≥ 10 s).

    ``history`` holds (time, rss, fds) points, oldest first.
    """
    if len(history) < 2 or history[-1][1] is None:
        return None
    now, rss_now = history[-1][0], history[-1][1]
    i = bisect.bisect_left(history, now - window_s, key=lambda h: h[0])
    while i < len(history) - 1 and history[i][1] is None:
        i += 1
    t0, rss0 = history[i][0], history[i][1]
    if now - t0 < 10.0 or rss0 is None:
        return None
    return (rss_now - rss0) / (now - t0) * 60.0
