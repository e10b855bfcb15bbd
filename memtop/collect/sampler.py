"""Tiered collection of processes and system memory.

Every tick, for every process: stat (held open, re-read with pread) and the fd count; status only
when the stat line changed. smaps_rollup walks the target's page tables (~70 µs for a small
process here, 0.5 ms and more for one of 150 MiB, and it takes the target's mmap lock: htop
issue 1712), so it is read by tiers. A process is *idle* when its stat line has not changed
since its rollup was read (no CPU time, no page fault, same RSS: only its PSS can move, when
other processes share or unshare its pages). Rows on screen and the selected process: every
tick, or every ``idle_on_screen`` ticks when idle. Other processes: every ``stagger`` ticks, or every
``idle_stagger`` ticks when idle. ProcessView.rollup_current says whether the rollup was read
after the process last changed.

With ``rollup_duty`` (the TUI's), a process's rollup is also not read again sooner than
``rollup_duty`` times what its last read cost (CPU time): a busy process of a few hundred MiB on
screen cost 1-2 ms a read, every tick (memtop's own row among them), and each read takes its mmap
lock. The selected process (``selected``) is read every tick whatever it costs.

With ``idle_every`` (the TUI's: 2), a process off screen whose stat line and fd count have not
changed for ``idle_after`` ticks (30 s at 2 s) is read every ``idle_every`` ticks only, the
others keeping the last tick's figures: with 3,000 mostly sleeping processes, these reads were
most of memtop's cost (issue 20, item 1). On the next read that finds it changed, it is read every
tick again; on screen or selected, every tick.
"""

from __future__ import annotations

import os
import pwd
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from memtop.model.process import ProcessIdentity, ProcessSample, ProcessView, Rollup, new_history, new_view
from memtop.model.snapshot import Snapshot, SystemSample
from memtop.procfs import (_HELD_CHUNK, PROC, AccessDenied, NoSuchProcess, OpenFiles, ParseError, ProcfsError,
                           held_fd_budget)
from memtop.procfs import process as procfs
from memtop.procfs import system as sysfs

DEFAULT_INTERVAL_S = 2.0
# The TUI's rollup_duty: at most 1/5000 of a core per process on screen (a read of 1.3 ms: every
# 6.5 s; of 70 µs, a small process: every tick).
ROLLUP_DUTY = 5000.0
# The TUI's idle_every, and after how many unchanged ticks an off-screen process counts as idle.
IDLE_EVERY = 2
IDLE_AFTER = 15
HISTORY_LEN = 150  # points per process: 5 minutes at the default 2 s tick
SYSTEM_HISTORY_LEN = 600


_KTHREAD = "kernel thread: no user address space"
_ZOMBIE = "zombie: its memory is already released"


@dataclass(slots=True)
class _Track:
    """A process's history between ticks: where its RSS / fd count changed (see History)."""

    since: int  # the tick of its first point
    runs: list  # of (tick, rss, fds), oldest first; bounded by the window
    frozen: tuple = ()  # runs as a tuple, rebuilt only when they change


@dataclass(slots=True)
class _RollupState:
    rollup: Rollup | None
    reason: str | None
    time: float | None
    tick: int
    stat: bytes = b""  # the stat line when it was read: unchanged since means idle since
    cost: float = 0.0  # CPU seconds the read took


def _proc_is_of_this_pid_namespace() -> bool:
    """Whether /proc shows this process's own PID namespace (/proc/self is our PID): then
    /proc/loadavg's last PID counts every process /proc lists (a new process in a nested
    namespace has a PID in this one too)."""
    try:
        return os.readlink(f"{PROC}/self") == str(os.getpid())
    except OSError:
        return False


# VmRSS (status) and smaps_rollup's figures are read apart, and the kernel's RSS counters lag by
# a few pages per CPU: a difference below this is not a sign of an old rollup.
_RSS_SLACK = 1 << 20


def _rollup_impossible(state: "_RollupState | None", rss: int | None) -> bool:
    """The last rollup's PSS or USS is above the RSS just read: the process has let go of memory
    since (a 400 MiB mapping unmapped), and until its rollup is read again its row would show a
    PSS larger than its RSS. Read it now, whatever the spacing (the fresh-eyes report: a 13 MiB
    process shown with 409 MiB of PSS for 12 s, the totals counting it)."""
    if state is None or state.rollup is None or rss is None:
        return False
    r = state.rollup
    return max(r.pss or 0, r.uss or 0) > rss + _RSS_SLACK


class Sampler:
    """Reads one tick at a time. Not thread-safe: one thread calls :meth:`sample`.

    The UI may assign :attr:`visible` (a frozenset of PIDs on screen, including the selected
    one) from another thread: it is replaced, never mutated.
    """

    # Idle processes take shortcuts (in sample and _views_of) to the same samples and views as
    # the general path; tests turn them off to compare the two.
    idle_shortcuts = True

    def __init__(self, root: Path = PROC, *, stagger: int = 5, idle_stagger: int = 30, idle_on_screen: int = 5,
                 history_len: int = HISTORY_LEN, rollup_duty: float | None = None, idle_every: int = 1,
                 idle_after: int = IDLE_AFTER, clock=time.monotonic, wall_clock=time.time):
        self.root = Path(root)
        self._clock = clock
        self._wall_clock = wall_clock
        self.stagger = max(1, stagger)
        self.idle_stagger = max(self.stagger, idle_stagger)
        self.idle_on_screen = max(1, idle_on_screen)
        self.history_len = history_len
        self.visible: frozenset[int] = frozenset()
        self.selected: int | None = None  # read every tick, whatever rollup_duty says
        self.rollup_duty = rollup_duty
        self.idle_every, self.idle_after = max(1, idle_every), idle_after
        self._now = 0.0  # this tick's clock (sample sets it)
        self.tick = 0
        # A captured tree (tests) has plain directories for fd: count by listing there.
        self._root_s = str(self.root)
        self._fd_stat_size = self.root == PROC and procfs.fd_count_is_stat_size()
        self._prev: dict[ProcessIdentity, ProcessSample] = {}
        self._cmdlines: dict[ProcessIdentity, str] = {}
        # PID -> (raw stat line, sample, the tick its stat line or fd count last changed)
        self._last: dict[int, tuple[bytes, ProcessSample, int]] = {}
        self._prev_time: float | None = None
        self._prev_pids: list[int] | None = None  # the list last tick went through
        # Held open between ticks: stat (re-read with pread) and, as root, the fd directory (its
        # count by fstat: no path walk, half the cost of stat(2) by path; as root st_size needs
        # no permission check first, read_fd_count makes one otherwise). They share the budget.
        budget = held_fd_budget()[1]
        self._fd_dirs = (OpenFiles("fd", self.root, budget // 2, directory=True)
                         if self._fd_stat_size and os.geteuid() == 0 else None)
        self._stat_files = OpenFiles("stat", self.root, budget - budget // 2 if self._fd_dirs else budget)
        self._rollups: dict[ProcessIdentity, _RollupState] = {}
        self._histories: dict[ProcessIdentity, _Track] = {}
        self._views: dict[ProcessIdentity, ProcessView] = {}  # last tick's
        self._tick_times: deque = deque(maxlen=self.history_len)  # the processes' history window
        self._users: dict[int, str] = {}
        self._sys_times: deque = deque(maxlen=SYSTEM_HISTORY_LEN)
        self._sys_available: deque = deque(maxlen=SYSTEM_HISTORY_LEN)
        self._hostname = self._read_or(sysfs.read_hostname, "?")
        self._kernel = self._read_or(sysfs.read_kernel_release, "?")
        self._first: Snapshot | None = None
        # The last listing of the proc root and the last PID the kernel had handed out then
        # (see _list_pids); the loadavg file is held open, re-read with pread.
        self._listed: list[int] | None = None
        self._listed_mark: bytes | None = None
        self._loadavg_fd: int | None = None
        self._pid_marks = self.root == PROC and _proc_is_of_this_pid_namespace()

    def sample_first(self) -> None:
        """Read the first tick now; the next :meth:`sample` returns it.

        The live view calls it before Textual starts: read in its own thread while the screen
        is laid out, the first tick (every process's smaps_rollup; 0.08 s with 1,000 processes)
        took 0.2 s and more, each of its ~3,000 reads waiting for the GIL to come back from
        the busy UI thread; first, then the layout, the first full screen comes sooner (issue
        20, item 3: bench/compare.py --startup)."""
        self._first = self.sample()

    @property
    def first_ready(self) -> bool:
        """Whether :meth:`sample_first` has read a tick that :meth:`sample` has not returned yet."""
        return self._first is not None

    def close(self) -> None:
        """Close the proc files held open between ticks."""
        if self._loadavg_fd is not None:
            os.close(self._loadavg_fd)
            self._loadavg_fd = None
        self._stat_files.close()
        if self._fd_dirs is not None:
            self._fd_dirs.close()

    def _last_pid_mark(self) -> bytes | None:
        """/proc/loadavg's last field: the last PID the kernel handed out in this PID namespace
        (threads and processes of nested namespaces included), or None when unknown."""
        if not self._pid_marks:
            return None
        try:
            if self._loadavg_fd is None:
                self._loadavg_fd = os.open(f"{PROC}/loadavg", os.O_RDONLY | os.O_CLOEXEC)
            return os.pread(self._loadavg_fd, 128, 0).rsplit(None, 1)[-1]
        except (OSError, IndexError):
            return None

    def _list_pids(self) -> list[int]:
        """The PIDs under the proc root. Listing /proc costs ~1 µs per process (2.9 ms with
        3,000): when the last PID handed out is the one of the last listing, no process has been
        created since, and the last list, less the processes found gone, is still the list."""
        mark = self._last_pid_mark()
        if mark is not None and mark == self._listed_mark and self._listed is not None:
            return self._listed
        pids = procfs.list_pids(self.root)
        self._listed, self._listed_mark = pids, mark
        return pids

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

    def _want_rollup(self, identity: ProcessIdentity, raw: bytes, all_rollups: bool) -> bool:
        """Whether the smaps_rollup of a process is due (the tiers above); see also
        :func:`_rollup_impossible`, which overrides the spacing."""
        if all_rollups:
            return True
        state = self._rollups.get(identity)
        if state is None:
            return True
        if identity.pid == self.selected:
            return state.stat != raw or self.tick - state.tick >= self.idle_on_screen
        if self.rollup_duty and state.time is not None and self._now - state.time < self.rollup_duty * state.cost:
            return False
        idle = state.stat == raw
        if identity.pid in self.visible:
            # On screen: every tick, unless it has been idle since (then every ``idle_on_screen``).
            return not idle or self.tick - state.tick >= self.idle_on_screen
        every = self.idle_stagger if idle else self.stagger
        if self.tick - state.tick >= every:
            return True
        return (identity.pid + self.tick) % every == 0

    def _fd_count_slow(self, pid: int) -> tuple[int | None, str | None]:
        try:
            return procfs.read_fd_count(pid, self.root, stat_size=self._fd_stat_size), None
        except NoSuchProcess:
            return None, "no fd table (process exiting, or not in a captured tree)"
        except AccessDenied as e:
            return None, e.reason

    def _read_process(self, pid: int, raw: bytes, now: float, all_rollups: bool) -> ProcessSample | None:
        """One process from its stat line ``raw``, or None when it vanished. Permission problems
        become reasons.

        When its stat line is byte for byte the one of the last tick (same start time, so the
        same process; no CPU time, no fault, same RSS), the last sample is reused and only the
        fd count (and a due smaps_rollup) is read again (see also :meth:`sample`).
        """
        root = self._root_s
        last = self._last.get(pid)
        prev = last[1] if last is not None and last[0] == raw else None
        if prev is not None:
            identity, kernel_thread, zombie = prev.identity, prev.kernel_thread, prev.state in ("Z", "X")
        else:
            stat_path = f"{root}/{pid}/stat"
            try:
                stat = procfs.parse_stat_file(raw, stat_path)
            except ParseError:
                # A stat line we do not understand: drop the row rather than show wrong numbers.
                return None
            identity = ProcessIdentity(pid, stat.start_ticks)
            kernel_thread, zombie = stat.is_kernel_thread, stat.is_zombie
            try:
                status = procfs.read_status(pid, self.root)
                cmdline = self._cmdlines.get(identity)
                if cmdline is None:
                    try:
                        cmdline = procfs.read_cmdline(pid, self.root)
                    except AccessDenied:
                        cmdline = ""
                    self._cmdlines[identity] = cmdline
            except (NoSuchProcess, ParseError):
                return None

        # Every process, every tick: an fd leak's rate comes from this history (Kernel tab), and a
        # process can open fds without its stat line changing (a run shorter than a clock tick of
        # CPU time, no page fault); skipping idle processes made a steady leak look like steps.
        fd_count: int | None = None
        fd_reason: str | None = None
        if kernel_thread:
            fd_reason = "kernel thread"
        elif self._fd_dirs is not None:
            # The common case (it runs for every process every tick): one fstat(2).
            try:
                fd_count = self._fd_dirs.size(pid)
            except ProcfsError:
                fd_count, fd_reason = self._fd_count_slow(pid)
        else:
            fd_count, fd_reason = self._fd_count_slow(pid)

        state = old_state = self._rollups.get(identity)
        if kernel_thread:
            if state is None or state.reason != _KTHREAD:
                state = _RollupState(None, _KTHREAD, None, self.tick)
        elif zombie:
            if state is None or state.reason != _ZOMBIE:
                state = _RollupState(None, _ZOMBIE, None, self.tick)
        elif self._want_rollup(identity, raw, all_rollups) or (
                prev is None and _rollup_impossible(state, status.rss)):
            try:
                cpu0 = time.thread_time()
                rollup = procfs.read_rollup(pid, self.root)
                reason = None if rollup is not None else "no smaps_rollup data (exiting?)"
                state = _RollupState(rollup, reason, now, self.tick, raw, time.thread_time() - cpu0)
            except NoSuchProcess:
                return None
            except AccessDenied as e:
                state = _RollupState(None, e.reason, now, self.tick, raw)
            except ParseError as e:
                state = _RollupState(None, str(e), now, self.tick, raw)
            self.rollups_read += 1
        if state is not old_state:
            self._rollups[identity] = state
        rollup, rollup_reason, rollup_time = state.rollup, state.reason, state.time

        if prev is not None:
            if state is old_state and prev.fd_count == fd_count and prev.fd_reason == fd_reason:
                return prev  # the idle case: nothing new, the same sample object as last tick
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
        self._last[pid] = (raw, sample,
                           last[2] if prev is not None and prev.fd_count == fd_count else self.tick)
        return sample

    def _view(self, sample: ProcessSample, now: float, times: tuple[float, ...], tick0: int) -> ProcessView:
        identity = sample.identity
        track = self._histories.get(identity)
        point = (sample.rss_bytes, sample.fd_count)
        if track is None:
            track = self._histories[identity] = _Track(self.tick, [(self.tick, *point)])
            track.frozen = tuple(track.runs)
        elif track.runs[-1][1:] != point:
            track.runs.append((self.tick, *point))
            track.frozen = ()
        runs = track.runs
        while len(runs) > 1 and runs[1][0] <= tick0:  # a run wholly before the window
            del runs[0]
            track.frozen = ()
        if not track.frozen:
            track.frozen = tuple(runs)
        history = new_history(times, tick0, track.since, track.frozen)

        prev = self._prev.get(identity)
        minflt_rate = majflt_rate = None
        if prev is not None and self._prev_time is not None and now > self._prev_time:
            dt = now - self._prev_time
            minflt_rate = (sample.minflt - prev.minflt) / dt
            majflt_rate = (sample.majflt - prev.majflt) / dt
        state = self._rollups.get(identity)
        return new_view(
            sample,
            minflt_rate,
            majflt_rate,
            history.rss_change_per_min(),
            track.since,
            track.frozen,
            (state is None or state.time is None or state.tick == self.tick
             or state.stat == self._last[identity.pid][0]),
        )

    def _views_of(self, samples, now: float, times: tuple[float, ...], tick0: int) -> tuple[ProcessView, ...]:
        """This tick's views. Most processes are idle: the same sample object as last tick, one
        run of history, no fault, no RSS change over its last 10 s and more. A view holds
        nothing that moves with time alone (the history's times are the snapshot's), so such a
        process keeps last tick's view object: :meth:`_view` would build an equal one."""
        views = []
        append = views.append
        last_views, histories = self._views, self._histories
        steady = self.idle_shortcuts and self._prev_time is not None and now > self._prev_time
        for identity, sample in samples.items():
            last = last_views.get(identity)
            if (steady and last is not None and last.sample is sample and last.rss_change_per_min == 0.0
                    and last.minflt_per_s == 0.0 and last.majflt_per_s == 0.0
                    and len(histories[identity].runs) == 1):
                append(last)
                continue
            append(self._view(sample, now, times, tick0))
        self._views = {view.sample.identity: view for view in views}
        return tuple(views)

    def sample(self, *, all_rollups: bool = False) -> Snapshot:
        """Read one tick. ``all_rollups`` reads smaps_rollup for every process (snapshot CLI)."""
        first, self._first = self._first, None
        if first is not None and not all_rollups:
            return first
        cpu0 = time.thread_time()
        now = self._now = self._clock()
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
            pids = self._list_pids()
        except OSError as e:
            pids = []
            warnings.append(f"cannot list {self.root}: {e}")
        stat_read, last_get = self._stat_files.read, self._last.get
        fd_size = (self._fd_dirs.size if self.idle_shortcuts and self._fd_dirs is not None and not all_rollups
                   else None)
        # The idle path below runs for most processes every tick: OpenFiles.read/size and
        # _want_rollup written out (the same results, without three calls per process).
        stat_fd_get = self._stat_files.held
        dir_fd_get = self._fd_dirs.held if self._fd_dirs is not None else None
        rollups_get, visible, tick = self._rollups.get, self.visible, self.tick
        selected, duty = self.selected, self.rollup_duty
        every = self.idle_every if self.idle_shortcuts and not all_rollups else 1
        idle_since = tick - self.idle_after
        idle_on_screen, idle_stagger = self.idle_on_screen, self.idle_stagger
        pread, fstat = os.pread, os.fstat
        for pid in pids:
            last = last_get(pid)
            if every > 1 and last is not None and (pid + tick) % every and last[2] <= idle_since and (
                    pid not in visible and pid != selected):
                prev = last[1]  # off screen and long idle: not this tick (idle_every)
                samples[prev.identity] = prev
                continue
            raw = None
            fd = stat_fd_get(pid)
            if fd is not None:
                try:
                    raw = pread(fd, _HELD_CHUNK, 0)
                except OSError:
                    raw = None
                if raw is not None and len(raw) >= _HELD_CHUNK:
                    raw = None
            if raw is None:  # not held yet, gone, or an error: OpenFiles sorts it out
                try:
                    raw = stat_read(pid)
                except (NoSuchProcess, AccessDenied):
                    continue
            if fd_size is not None and last is not None and last[0] == raw:
                # Idle since last tick (most processes): last tick's sample, unless its fd count
                # moved or its rollup is due; the same as _read_process gives, in fewer steps.
                prev = last[1]
                if prev.kernel_thread:
                    samples[prev.identity] = prev
                    continue
                if prev.fd_reason is None:
                    fds = None
                    dfd = dir_fd_get(pid)
                    if dfd is not None:
                        try:
                            fds = fstat(dfd).st_size
                        except OSError:
                            fds = None
                    if fds is None:
                        try:
                            fds = fd_size(pid)
                        except ProcfsError:
                            fds = None
                    if fds == prev.fd_count:
                        identity = prev.identity
                        state = rollups_get(identity)
                        # _want_rollup(identity, raw, False), written out
                        if state is None:
                            due = True
                        elif state.stat == raw:  # idle since its rollup was read
                            if pid in visible or pid == selected:
                                due = tick - state.tick >= idle_on_screen
                            else:
                                due = tick - state.tick >= idle_stagger or (pid + tick) % idle_stagger == 0
                            if (due and duty and pid != selected and state.time is not None
                                    and now - state.time < duty * state.cost):
                                due = False
                        else:
                            due = self._want_rollup(identity, raw, False)
                        if not due:
                            samples[identity] = prev
                            continue
            sample = self._read_process(pid, raw, now, all_rollups)
            if sample is not None:
                samples[sample.identity] = sample
        self._tick_times.append(now)
        times = tuple(self._tick_times)
        tick0 = self.tick - len(times) + 1
        views = self._views_of(samples, now, times, tick0)

        # Forget what vanished, so memory stays flat over any number of ticks; nothing did when
        # the list is last tick's and every process on it has a sample again (most ticks).
        if pids is not self._prev_pids or len(samples) != len(self._prev):
            for cache in (self._cmdlines, self._rollups, self._histories):
                for identity in cache.keys() - samples.keys():
                    del cache[identity]
            for pid, (_, sample, _) in list(self._last.items()):
                if sample.identity not in samples:
                    del self._last[pid]
            for files in (self._stat_files, self._fd_dirs):
                if files is not None:
                    for pid in set(files.pids()) - self._last.keys():
                        files.forget(pid)
            if pids is self._listed and len(self._last) != len(pids):
                # A reused list: those gone (or unreadable) come off it.
                pids = self._listed = [pid for pid in pids if pid in self._last]
        self._prev_pids = pids
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
            tick_times=times,
            tick0=tick0,
        )
        self.tick += 1
        return snapshot
