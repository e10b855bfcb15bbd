"""Collection for the Kernel tab and the snapshot's ``kernel`` section.

Reads slabinfo, sockstat per network namespace, file-nr and the selected process's fd table,
and keeps a short slab history to compute growth per minute. One :class:`KernelCollector` lives
as long as the tab; its :meth:`collect` may be called from successive worker threads (a lock
keeps the history consistent when an old worker is still finishing).
"""

from __future__ import annotations

import os
from dataclasses import replace
import threading
from array import array
from collections import deque
from pathlib import Path
from types import MappingProxyType

from memtop.model.kernel import (
    FD_WINDOW_S,
    LEAK_MIN_AGE_S,
    LEAK_MIN_SPAN_S,
    KernelView,
    NetNamespace,
    SlabInfo,
    SlabRow,
    fd_growers,
    meminfo_categories,
)
from memtop.model.snapshot import Snapshot
from memtop.procfs import CLOCK_TICKS, PROC, AccessDenied, NoSuchProcess, ProcfsError
from memtop.procfs import kernel as kfs
from memtop.procfs.kernel import SYS

SLAB_HISTORY_LEN = 150  # 5 minutes at the default 2 s tick
SLAB_WINDOW_S = 60.0
SLAB_MIN_SPAN_S = 10.0
CHART_CACHES = 5


def growth_per_min(times, values, window_s: float = SLAB_WINDOW_S, min_span_s: float = SLAB_MIN_SPAN_S) -> float | None:
    """Change per minute between the oldest point within ``window_s`` and the newest one."""
    if len(times) < 2 or values[-1] is None:
        return None
    now = times[-1]
    for t, v in zip(times, values):
        if now - t <= window_s and v is not None:
            if now - t < min_span_s:
                return None
            return (values[-1] - v) / (now - t) * 60.0
    return None


def read_namespaces(root: Path, pids, comms: dict[int, str]) -> tuple[tuple[NetNamespace, ...], int]:
    """Group processes by network namespace (inode of /proc/PID/ns/net) and read each one's
    sockstat once, through /proc/PID/net of its first live member.

    Returns the namespaces (memtop's own first) and how many processes' namespace was unreadable.
    """
    try:
        own_inode: int | None = kfs.read_net_ns("self", root)
    except ProcfsError:
        own_inode = None
    members: dict[int, list[int]] = {}
    unreadable = 0
    for pid in pids:
        try:
            inode = kfs.read_net_ns(pid, root)
        except ProcfsError:
            unreadable += 1
            continue
        members.setdefault(inode, []).append(pid)
    if own_inode is not None:
        members.setdefault(own_inode, [])
    namespaces = []
    for inode, ns_pids in members.items():
        ns_pids.sort()
        sockstat = None
        reason = None
        for pid in ns_pids:
            try:
                sockstat = kfs.read_sockstat(f"{root}/{pid}/net")
                break
            except ProcfsError as e:
                reason = str(e)
        if sockstat is None and inode == own_inode:
            try:
                sockstat = kfs.read_sockstat(f"{root}/net")  # /proc/net is memtop's own namespace
            except ProcfsError as e:
                reason = str(e)
        example = f"{ns_pids[0]} {comms.get(ns_pids[0], '?')}" if ns_pids else "memtop"
        namespaces.append(
            NetNamespace(inode, tuple(ns_pids), example, inode == own_inode, sockstat, None if sockstat else reason)
        )
    if own_inode is None and not namespaces:
        # Not even our own namespace link: still show /proc/net/sockstat, unnamed.
        try:
            sockstat = kfs.read_sockstat(f"{root}/net")
            namespaces.append(NetNamespace(None, (), "memtop", True, sockstat))
        except ProcfsError as e:
            namespaces.append(NetNamespace(None, (), "memtop", True, None, str(e)))
    namespaces.sort(key=lambda ns: (not ns.own, -len(ns.pids), ns.inode or 0))
    return tuple(namespaces), unreadable


class KernelCollector:
    def __init__(self, root: Path = PROC, sys_root: Path | None = None, history_len: int = SLAB_HISTORY_LEN, *,
                 leak_min_span_s: float = LEAK_MIN_SPAN_S, leak_min_age_s: float = LEAK_MIN_AGE_S):
        """``sys_root`` defaults to /sys for /proc, and to a ``sys`` beside any other proc root
        (a captured tree keeps OUT/proc and OUT/sys side by side). ``leak_min_*``: how long an fd
        growth must have lasted, and how old the process must be, for a LEAK? finding."""
        self.leak_min_span_s = leak_min_span_s
        self.leak_min_age_s = leak_min_age_s
        self.root = Path(root)
        if sys_root is None:
            sys_root = SYS if self.root == PROC else self.root.parent / "sys"
        self.sys_root = Path(sys_root)
        self._lock = threading.Lock()
        self._times: deque = deque(maxlen=history_len)
        # One compact array of total bytes per read (-1: no such cache then), indexed by the
        # column of each cache name in _columns. A {name: bytes} dict per read held ~240 fresh
        # name strings and ints each tick (~25 KiB a read, 150 reads kept); what the history
        # holds now is one array object a read.
        self._columns: dict[str, int] = {}
        self._slab_totals: deque = deque(maxlen=history_len)
        self._reclaimable: dict[str, bool | None] = {}

    def _read_slabs(self, now: float) -> tuple[SlabInfo | None, str | None]:
        try:
            info = kfs.read_slabinfo(self.root)
        except ProcfsError as e:
            return None, getattr(e, "reason", None) or str(e)
        self._prune_columns(info)
        columns = self._columns
        for c in info.caches:
            if c.name not in columns:
                columns[c.name] = len(columns)
        totals = array("q", [-1]) * len(columns)
        for c in info.caches:
            totals[columns[c.name]] = c.total_bytes
        if self._times and now <= self._times[-1]:
            # The same tick again (the tab was re-shown): replace, never two points at one time.
            self._slab_totals[-1] = totals
        else:
            self._times.append(now)
            self._slab_totals.append(totals)
        return info, None

    def _prune_columns(self, info: SlabInfo) -> None:
        """Forget cache names that neither the history nor this read has any more (caches come and
        go: per-mount, per-module), so that the columns and the reclaim flags stay bounded."""
        current = {c.name for c in info.caches}
        if len(self._columns) <= len(current) + 64 and len(self._reclaimable) <= len(current) + 64:
            return
        keep = [name for name, i in self._columns.items()
                if name in current or any(i < len(h) and h[i] >= 0 for h in self._slab_totals)]
        old = self._columns
        self._columns = {name: j for j, name in enumerate(keep)}
        remapped = [array("q", (h[old[name]] if old[name] < len(h) else -1 for name in keep)) for h in self._slab_totals]
        self._slab_totals.clear()
        self._slab_totals.extend(remapped)
        self._reclaimable = {name: flag for name, flag in self._reclaimable.items() if name in current}

    def _history_of(self, name: str) -> tuple[int | None, ...]:
        i = self._columns.get(name)
        if i is None:
            return (None,) * len(self._slab_totals)
        return tuple(h[i] if i < len(h) and h[i] >= 0 else None for h in self._slab_totals)

    def retained_counts(self) -> dict[str, int]:
        """Sizes of what the collector keeps between reads (the bounded-memory test reads them)."""
        return {"times": len(self._times), "history": len(self._slab_totals), "columns": len(self._columns),
                "reclaim_flags": len(self._reclaimable),
                "history_cells": sum(len(h) for h in self._slab_totals)}

    def _reclaim_flag(self, name: str) -> bool | None:
        # The flag is fixed when the cache is created: read /sys once per name.
        if name not in self._reclaimable:
            self._reclaimable[name] = kfs.read_slab_reclaimable(name, self.sys_root)
        return self._reclaimable[name]

    def _others(self, views):
        """Every process but memtop itself: its sampler keeps /proc/PID/stat (and as root
        /proc/PID/fd) open per process (memtop.procfs.OpenFiles), so its fd count follows the
        process count; that is no leak."""
        if self.root != PROC:
            return views
        own = os.getpid()
        return [v for v in views if v.pid != own]

    def collect(self, snapshot: Snapshot, target_pid: int | None = None, *, namespaces: bool = True) -> KernelView:
        with self._lock:
            return self._collect(snapshot, target_pid, namespaces)

    def _collect(self, snapshot: Snapshot, target_pid: int | None, want_namespaces: bool) -> KernelView:
        # The tick's time, so that slab growth and fd growth share one clock (and tests a fake one).
        now = snapshot.system.monotonic
        info, slab_reason = self._read_slabs(now)
        times = tuple(self._times)
        rows = None
        chart: dict[str, tuple[int | None, ...]] = {}
        if info is not None:
            rows = tuple(
                SlabRow(
                    cache,
                    growth_per_min(times, self._history_of(cache.name)),
                    self._reclaim_flag(cache.name),
                )
                for cache in info.caches
            )
            largest = sorted(info.caches, key=lambda c: -c.total_bytes)[:CHART_CACHES]
            chart = {c.name: self._history_of(c.name) for c in largest}

        user_pids = [v.pid for v in snapshot.processes if not v.sample.kernel_thread]
        comms = {v.pid: v.sample.comm for v in snapshot.processes}
        if want_namespaces:
            namespaces, unreadable = read_namespaces(self.root, user_pids, comms)
        else:
            namespaces, unreadable = (), 0

        try:
            file_nr, file_nr_reason = kfs.read_file_nr(self.root), None
        except ProcfsError as e:
            file_nr, file_nr_reason = None, str(e)

        breakdown = breakdown_reason = None
        if target_pid is not None:
            try:
                breakdown = kfs.read_fd_breakdown(target_pid, self.root)
                if breakdown.sockets:
                    states, reason = kfs.read_socket_states(target_pid, self.root)
                    breakdown = replace(breakdown, socket_states=states, socket_states_reason=reason)
            except NoSuchProcess:
                breakdown_reason = f"process {target_pid} exited"
            except AccessDenied as e:
                breakdown_reason = e.reason

        meminfo = snapshot.system.meminfo
        return KernelView(
            tick=snapshot.tick,
            meminfo=meminfo,
            categories=meminfo_categories(meminfo),
            slabs=rows,
            slab_reason=slab_reason,
            slab_version=info.version if info else None,
            slab_history_times=times if info is not None else (),
            slab_history=MappingProxyType(chart),
            namespaces=namespaces,
            namespaces_unreadable=unreadable,
            file_nr=file_nr,
            file_nr_reason=file_nr_reason,
            growers=fd_growers(self._others(snapshot.processes), snapshot.history, FD_WINDOW_S,
                               uptime_s=snapshot.system.uptime_s,
                               clock_ticks=CLOCK_TICKS, min_span_s=self.leak_min_span_s,
                               min_age_s=self.leak_min_age_s)[:20],
            target_pid=target_pid,
            fd_breakdown=breakdown,
            fd_breakdown_reason=breakdown_reason,
        )
