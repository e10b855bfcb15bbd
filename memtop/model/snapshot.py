"""One tick of the whole system, handed from the sampler thread to the UI."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from memtop.model.process import History, ProcessView, new_history


@dataclass(frozen=True, slots=True)
class SystemSample:
    """System-wide figures of one tick. meminfo values are bytes (kB x 1024)."""

    wall_time: float
    monotonic: float
    hostname: str
    kernel: str
    uptime_s: float | None
    meminfo: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the Processes tab and the header need for one tick, immutable."""

    tick: int
    interval_s: float
    system: SystemSample
    processes: tuple[ProcessView, ...]
    # Aligned system history, oldest first: monotonic time, MemAvailable bytes.
    history_times: tuple[float, ...] = ()
    available_history: tuple[int | None, ...] = ()
    rollups_read: int = 0  # how many smaps_rollup files this tick read (tiering made visible)
    sample_cpu_s: float = 0.0  # CPU time (user+sys of this thread) the tick cost
    warnings: tuple[str, ...] = ()
    # The processes' history window: the times of the last ticks (5 minutes at 2 s), oldest
    # first, and the tick number of the first. Each view's history is told against it.
    tick_times: tuple[float, ...] = ()
    tick0: int = 0

    def history(self, view: ProcessView) -> History:
        """The view's (time, RSS, fd count) points in this snapshot's window."""
        return new_history(self.tick_times, self.tick0, view.since, view.runs)

    def rollup_age_s(self, view: ProcessView) -> float | None:
        """Seconds between the reading of the view's smaps_rollup and this tick."""
        read = view.sample.rollup_time
        return None if read is None else self.system.monotonic - read

    def by_pid(self, pid: int) -> ProcessView | None:
        for view in self.processes:
            if view.pid == pid:
                return view
        return None


def memory_used(meminfo: dict[str, int]) -> int | None:
    """Used memory as free(1) computes it: MemTotal - MemAvailable (procps-ng >= 4)."""
    total = meminfo.get("MemTotal")
    available = meminfo.get("MemAvailable")
    if total is None or available is None:
        return None
    return total - available


def buff_cache(meminfo: dict[str, int]) -> int | None:
    """free(1)'s buff/cache: Buffers + Cached + SReclaimable."""
    try:
        return meminfo["Buffers"] + meminfo["Cached"] + meminfo["SReclaimable"]
    except KeyError:
        return None
