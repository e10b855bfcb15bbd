"""One process as read from /proc, and the view derived from its history."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class ProcessView:
    """A sample plus what only two or more samples can tell: rates, growth, history."""

    sample: ProcessSample
    minflt_per_s: float | None
    majflt_per_s: float | None
    rss_change_per_min: float | None
    rollup_age_s: float | None
    # Oldest first: (monotonic time, RSS bytes, fd count) per tick; None where unknown.
    history: tuple[tuple[float, int | None, int | None], ...] = field(default=())

    @property
    def history_times(self) -> tuple[float, ...]:
        return tuple(h[0] for h in self.history)

    @property
    def rss_history(self) -> tuple[int | None, ...]:
        return tuple(h[1] for h in self.history)

    @property
    def fd_history(self) -> tuple[int | None, ...]:
        return tuple(h[2] for h in self.history)

    @property
    def pid(self) -> int:
        return self.sample.identity.pid
