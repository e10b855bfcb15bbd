"""One composite sample of everything memtop reads: what every consumer takes.

The Collector (memtop/collect/collector.py) builds a :class:`Sample` per tick: the processes
(every tick) and the latest result of each *part* (kernel, PSI, cgroups, page cache, tmpfs, the
selected process's heap...), each read at its own cadence and only while someone consumes it.
The TUI renders it, ``memtop snapshot`` formats it, ``memtop record`` stores it and replay reads
it back, ``memtop export`` turns it into metrics. A part's result says when it was read, how long
it took, what it was read for (the selected process, a directory) and, when it failed, why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Hashable, Mapping

from memtop.model.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class PartResult:
    """The latest result of one part.

    ``value`` is the part's own immutable view (None when it failed: ``error`` says why);
    ``progress`` is what a run still going has published so far (a walk's bytes, a scan's files).
    """

    value: Any
    tick: int  # the processes' tick the run started from
    finished: float  # monotonic time the run ended
    seconds: float  # how long it ran
    key: Hashable = None  # what it was read for: the selected process, a directory...
    error: str | None = None
    progress: Any = None
    running: bool = False
    cpu_s: float = 0.0  # the CPU time the run cost its thread


@dataclass(frozen=True, slots=True)
class Sample:
    processes: Snapshot
    parts: Mapping[str, PartResult] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def tick(self) -> int:
        return self.processes.tick

    def result(self, name: str) -> PartResult | None:
        return self.parts.get(name)

    def get(self, name: str) -> Any:
        """The value of part ``name``, or None when it was not read (or failed)."""
        result = self.parts.get(name)
        return None if result is None else result.value
