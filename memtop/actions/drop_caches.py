"""Drop the kernel's clean caches: sync(2), then write 1, 2 or 3 to /proc/sys/vm/drop_caches.

Documentation/admin-guide/sysctl/vm.rst: 1 frees the page cache, 2 reclaimable slab objects
(dentries and inodes), 3 both. Only clean, unused objects are dropped, which is why sync comes
first. It affects the whole machine (everything cached must be read again), so the TUI asks for a
strong confirmation. The result reports MemAvailable, Cached and SReclaimable before and after.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from memtop.actions import audit
from memtop.procfs import PROC, ProcfsError, parse_kb_table, read_text

LEVELS = {1: "the page cache", 2: "reclaimable slab objects (dentries and inodes)", 3: "the page cache and reclaimable slab objects"}
REPORTED = ("MemAvailable", "Cached", "SReclaimable", "MemFree")


@dataclass(frozen=True, slots=True)
class DropCachesResult:
    level: int
    ok: bool
    error: str | None
    before: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    after: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    sync_s: float | None = None
    drop_s: float | None = None

    def change(self, key: str) -> int | None:
        if key not in self.before or key not in self.after:
            return None
        return self.after[key] - self.before[key]

    def as_json(self) -> dict:
        return {
            "level": self.level,
            "ok": self.ok,
            "error": self.error,
            "before_bytes": dict(self.before),
            "after_bytes": dict(self.after),
            "sync_s": None if self.sync_s is None else round(self.sync_s, 3),
            "drop_s": None if self.drop_s is None else round(self.drop_s, 3),
        }


def _meminfo(root: Path) -> dict[str, int]:
    try:
        table = parse_kb_table(read_text(f"{root}/meminfo"))
    except ProcfsError:
        return {}
    return {k: table[k] for k in REPORTED if k in table}


def drop_caches(level: int = 1, *, root: Path = PROC, sysctl: Path | None = None, log: bool = True) -> DropCachesResult:
    """sync, then drop (see module doc). Never raises for a refusal: the result says it."""
    if level not in LEVELS:
        raise ValueError(f"level must be 1, 2 or 3, not {level!r}")
    root = Path(root)
    sysctl = sysctl or root / "sys" / "vm" / "drop_caches"
    started = time.monotonic()
    before = _meminfo(root)
    error = None
    sync_s = drop_s = None
    if os.geteuid() != 0:
        error = f"only root may write {sysctl} (you are uid {os.geteuid()})"
    else:
        t0 = time.monotonic()
        os.sync()
        sync_s = time.monotonic() - t0
        t1 = time.monotonic()
        try:
            with open(sysctl, "w") as f:
                f.write(f"{level}\n")
        except OSError as e:
            error = f"writing {sysctl} failed: {e.strerror or e}"
        drop_s = time.monotonic() - t1
    after = _meminfo(root)
    result = DropCachesResult(level, error is None, error, MappingProxyType(before), MappingProxyType(after),
                              sync_s, drop_s)
    if log:
        audit.log_action("drop-caches", {"level": level, "what": LEVELS[level]}, prediction=None,
                         result=result.as_json(), duration_s=time.monotonic() - started)
    return result
