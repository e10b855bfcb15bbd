"""What a language runtime or a known application says about its own memory, read from outside.

Produced by :mod:`memtop.runtime` (hsperfdata for the JVM, obmalloc pool headers for CPython,
the Go runtime's globals, postgres / MariaDB / redis recognised from their mappings). Each
figure carries the source a user could check by hand; a figure memtop cannot know is None with
the reason. Bytes everywhere; times in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from memtop.model.findings import Finding

RUNTIME_KINDS = ("jvm", "cpython", "go", "node")
APPLICATION_KINDS = ("postgres", "mariadb", "redis")


@dataclass(frozen=True, slots=True)
class Figure:
    """One number (or setting) the runtime keeps about itself.

    ``unit`` is 'bytes', 'count', 'seconds', 'ratio' or 'text' (a setting such as GOGC).
    """

    key: str
    label: str
    value: int | float | str | None
    unit: str
    source: str
    reason: str | None = None  # why value is None

    def as_json(self) -> dict:
        return {"label": self.label, "value": self.value, "unit": self.unit, "source": self.source,
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Region:
    """An address range the runtime owns, with its resident bytes (smaps) where read."""

    key: str  # 'java_heap', 'code_cache', 'obmalloc_arenas', 'go_heap', 'shared_buffers', ...
    label: str
    start: int
    size: int
    rss_bytes: int | None
    source: str

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True, slots=True)
class Unknown:
    what: str
    why: str


@dataclass(frozen=True, slots=True)
class RuntimeReport:
    """The runtime's (or application's) own view of one process.

    ``status``: 'ok' (figures read), 'partial' (some figures unknown), 'unavailable' (recognised
    but nothing could be read: ``reason`` says why), 'unsupported' (a version or build memtop does
    not read), 'denied' (needs root), 'gone'.
    """

    kind: str
    version: str | None
    status: str
    reason: str | None
    source: str | None  # where the figures come from (a file, symbols + /proc/PID/mem)
    figures: tuple[Figure, ...] = ()
    regions: tuple[Region, ...] = ()
    unknowns: tuple[Unknown, ...] = ()
    findings: tuple[Finding, ...] = ()
    read_seconds: float = 0.0

    @property
    def is_application(self) -> bool:
        return self.kind in APPLICATION_KINDS

    def figure(self, key: str) -> Figure | None:
        for f in self.figures:
            if f.key == key:
                return f
        return None

    def value(self, key: str):
        f = self.figure(key)
        return f.value if f is not None else None
