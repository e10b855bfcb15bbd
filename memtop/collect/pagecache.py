"""What the page cache tab collects over time: vmstat rates history, the thrashing finding.

Reading /proc/vmstat is cheap (~50 us); the rates need two reads, so a one-shot caller (``memtop
snapshot``) reads twice a short interval apart and says so (``interval_s``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path

from memtop.format import fmt_bytes
from memtop.model.findings import Finding, Severity
from memtop.model.pagecache import VMSTAT_RATE_KEYS, VmstatRates
from memtop.procfs import PAGE_SIZE, PROC
from memtop.procfs.filesources import (HeldFiles, held_files, holders_by_inode, measure_held, process_cached_files,
                                       system_cached_files)
from memtop.procfs.process import list_pids
from memtop.procfs.vmstat import read_vmstat, vmstat_rates

HISTORY_LEN = 150  # 5 minutes at the default 2 s tick
THRASH_WINDOW = 5  # rates averaged for the finding: ~10 s at the default tick


class VmstatSampler:
    """Reads /proc/vmstat on each call and keeps the rates between consecutive reads."""

    def __init__(self, root: Path = PROC, history_len: int = HISTORY_LEN):
        self.root = Path(root)
        self.history: deque[VmstatRates] = deque(maxlen=history_len)
        self._prev: dict[str, int] | None = None
        self._prev_time: float | None = None

    def sample(self, now: float | None = None) -> VmstatRates | None:
        """Read once; returns the rates since the previous read (None on the first read).

        Raises the errors of :mod:`memtop.procfs` (a missing /proc/vmstat is a ProcfsError).
        """
        counters = read_vmstat(self.root)
        now = time.monotonic() if now is None else now
        rates = None
        if self._prev is not None and now > self._prev_time:
            rates = vmstat_rates(self._prev, counters, now - self._prev_time, now)
            self.history.append(rates)
        self._prev, self._prev_time = counters, now
        return rates

    @property
    def counters(self) -> dict[str, int] | None:
        """The last read, raw."""
        return self._prev

    def series(self, key: str) -> list[float | None]:
        """The history of one rate, oldest first (None where the counter was missing)."""
        return [r.get(key) for r in self.history]

    def window(self, n: int = THRASH_WINDOW) -> list[VmstatRates]:
        return list(self.history)[-n:]


def one_shot_rates(root: Path = PROC, interval_s: float = 0.5) -> VmstatRates:
    """Two reads of /proc/vmstat ``interval_s`` apart (for a snapshot that has no history)."""
    sampler = VmstatSampler(root)
    sampler.sample()
    time.sleep(interval_s)
    rates = sampler.sample()
    if rates is None:  # the monotonic clock did not move: no rate to give
        return VmstatRates(interval_s=0.0, rates={}, time=time.monotonic())
    return rates


# A refault rate below this is background noise (4 KiB pages: 1 MiB/s).
THRASH_MIN_REFAULT_BYTES_PER_S = 1 << 20
# ... and refaults must be at least this share of all the data read from disk.
THRASH_MIN_REFAULT_SHARE = 0.25


def thrashing_finding(window, files=(), page_size: int = PAGE_SIZE) -> Finding | None:
    """A finding when the page cache thrashes: file pages read back soon after being evicted.

    ``workingset_refault_file`` counts file pages faulted back in while their shadow entry says
    they were evicted recently (mm/workingset.c): the working set of file reads does not fit.
    It is high *and* a large share of ``pgpgin`` (all reads, in KiB) when the same data is read
    again and again. ``files`` (CachedFile) with recently evicted pages name the files being
    re-read. Returns None when there is no thrashing in the rates of ``window``.
    """
    refaults = [r.get("workingset_refault_file") for r in window if r.get("workingset_refault_file") is not None]
    reads = [r.get("pgpgin") for r in window if r.get("pgpgin") is not None]
    if not refaults:
        return None
    refault_bps = sum(refaults) / len(refaults) * page_size
    read_bps = (sum(reads) / len(reads) * 1024) if reads else None
    if refault_bps < THRASH_MIN_REFAULT_BYTES_PER_S:
        return None
    share = refault_bps / read_bps if read_bps else None
    if share is not None and share < THRASH_MIN_REFAULT_SHARE:
        return None
    seconds = sum(r.interval_s for r in window)
    rereads = sorted(
        (f for f in files if (f.stat.recently_evicted_bytes or 0) > 0),
        key=lambda f: f.stat.recently_evicted_bytes,
        reverse=True,
    )
    text = (
        f"The page cache is thrashing: {fmt_bytes(refault_bps)}/s of file pages were read back soon "
        f"after being evicted (workingset_refault_file, last {seconds:.0f} s)"
    )
    if share is not None:
        text += f", {min(share, 1.0) * 100:.0f}% of all disk reads"
    text += "."
    # The files named must not take the blame for what they cannot explain: 16 KiB of one
    # library beside 485 MiB/s of refaults (the fresh-eyes report).
    refaulted = refault_bps * seconds
    listed = sum(f.stat.recently_evicted_bytes for f in rereads)
    if rereads:
        names = ", ".join(f"{f.path} ({fmt_bytes(f.stat.recently_evicted_bytes)} recently evicted)" for f in rereads[:3])
        text += f" Files read again after eviction: {names}."
    if listed < 0.1 * refaulted:
        text += (f" The files listed hold {fmt_bytes(listed)} recently evicted of ~{fmt_bytes(refaulted)} refaulted: "
                 "most of what is re-read is in other files.")
    severity = Severity.CRITICAL if share is not None and share >= 0.75 else Severity.WARNING
    return Finding(
        severity,
        text,
        "The working set of file reads does not fit in memory: find the reader of these files "
        "(who maps/opens them), make it use less cache (posix_fadvise DONTNEED, O_DIRECT, a "
        "memory cgroup limit for the batch job), or add memory.",
    )


def _cached_order(cached):
    size = cached.stat.cached_bytes
    return (size is None, -(size or 0), cached.path)


# Listing who holds which file reads every process's maps and fds: ~45 µs per process (49 ms at
# 1,000 processes, bench/pagecache_held.py), while measuring the listed files' cached bytes costs
# ~6 µs per file (12 ms for ~2,000 files). The list is kept and read again once it is older than
# this many times its own cost (≤ 1 % of a core: every ~5 s at 1,000 processes) and at least
# HELD_MIN_AGE_S (at ~100 processes the cost alone made it every tick: ~0.5 % of a core, a third
# of the tab's cost, py-spy); the bytes are measured at every tick, and the note says how old the
# list is. A file opened since the listing shows up at the next one.
HELD_DUTY = 100.0
HELD_MIN_AGE_S = 10.0


class HeldFilesCache:
    """The files every process maps or holds open (:func:`held_files`), listed again when the
    last listing is older than ``duty`` times the CPU it cost and than ``min_age_s``. Safe to
    share between threads."""

    def __init__(self, root: Path = PROC, duty: float = HELD_DUTY, min_age_s: float = HELD_MIN_AGE_S):
        self.root = Path(root)
        self.duty = duty
        self.min_age_s = min_age_s
        self._lock = threading.Lock()
        self._held: HeldFiles | None = None
        self._by_inode: tuple[HeldFiles, dict] | None = None
        self._listed_at = 0.0
        self._cpu_s = 0.0

    def get(self, now: float | None = None) -> tuple[HeldFiles, float]:
        """(the listing, its age in seconds at ``now``, monotonic)."""
        with self._lock:
            now = time.monotonic() if now is None else now
            if self._held is None or now - self._listed_at >= max(self.duty * self._cpu_s, self.min_age_s):
                cpu0 = time.thread_time()
                self._held = held_files(list_pids(self.root), self.root)
                self._cpu_s = time.thread_time() - cpu0
                self._listed_at = now
                self._by_inode = None
            return self._held, now - self._listed_at

    def by_inode(self, now: float | None = None) -> tuple[dict[tuple[int, int], frozenset[int]], HeldFiles, float]:
        """Who holds each file by (device, inode) (:func:`holders_by_inode` of the listing, made
        once per listing), the listing and its age."""
        held, age = self.get(now)
        with self._lock:
            if self._by_inode is None or self._by_inode[0] is not held:
                self._by_inode = (held, holders_by_inode(held))
            return self._by_inode[1], held, age


def top_cached_files(root: Path = PROC, *, cancel=None, held: HeldFiles | None = None):
    """Source (b), most cached first (unknown last): ([CachedFile], HeldFiles). ``held``: a
    listing to measure (from :class:`HeldFilesCache`), else every process is listed now."""
    if held is None:
        files, held = system_cached_files(root, cancel=cancel)
    else:
        files = measure_held(held, cancel=cancel)
    files.sort(key=_cached_order)
    return files, held


def process_top_files(pid: int, root: Path = PROC, *, all_holders: bool = True, holders: HeldFiles | None = None):
    """Source (a), most cached first, each file with every process that holds it (the listing
    of source (b), without measuring the other files). Raises NoSuchProcess / AccessDenied.
    ``holders``: that listing when the caller keeps one (the process's own files are read now)."""
    if holders is None and all_holders:
        holders = held_files(list_pids(root), root)
    files = process_cached_files(pid, root, holders=holders)
    files.sort(key=_cached_order)
    return files
