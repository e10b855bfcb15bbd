"""One tick of the whole system, handed from the sampler thread to the UI."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from memtop.model.process import ProcessView


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

    def by_pid(self, pid: int) -> ProcessView | None:
        for view in self.processes:
            if view.pid == pid:
                return view
        return None
