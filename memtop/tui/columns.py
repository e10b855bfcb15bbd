"""The Processes table's columns: title, width, how to sort, how to show, where the figure comes from."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from memtop.format import fmt_bytes, fmt_count, fmt_rate, sparkline
from memtop.model.process import TREND_MIN_R2, TREND_MIN_SPAN_S, TREND_WINDOW_S, ProcessView, RssTrend
from memtop.text import printable


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int  # 0: takes the remaining width (the command)
    priority: int  # lower survives longer when the terminal is narrow
    value: Callable[[ProcessView], Any]  # sort key; None sorts last
    text: Callable[[ProcessView], str]
    source: str
    align: str = "right"
    stale_with_rollup: bool = False  # dim when the smaps_rollup it comes from is old
    with_history: bool = False  # text(view, history): the view's Snapshot.history
    with_container: bool = False  # value(view, container) and text(view, container): a ContainerId or None


def _r(attr: str) -> Callable[[ProcessView], Any]:
    def get(v: ProcessView):
        r = v.sample.rollup
        return getattr(r, attr) if r is not None else None

    return get


def _bytes(get: Callable[[ProcessView], Any]) -> Callable[[ProcessView], str]:
    return lambda v: fmt_bytes(get(v))


_uss = lambda v: v.sample.rollup.uss if v.sample.rollup else None  # noqa: E731


def container_name(container) -> str | None:
    """What the Container column shows: the container's, pod's or unit's name; "-" on the host
    (the root cgroup); None when unknown (a kernel thread, a process whose cgroup was not read)."""
    if container is None:
        return None
    if container.kind == "host":
        return "-"
    if container.pod_name:
        return f"{container.pod_name}/{container.name}"
    return container.name
_change = lambda v: v.rss_change_per_min  # noqa: E731


def trend_text(trend: RssTrend | None) -> str:
    """The ΔRSS/min cell: a steady rate per minute ("+1.2 MiB"), "0 B" when RSS did not move,
    or, when it moved without a steady rate, the move itself with an arrow ("↑300 MiB": a step
    up within the window; "↕8.0 KiB": up and down), never a rate made of a step."""
    if trend is None:
        return fmt_bytes(None)
    kind = trend.kind
    if kind == "flat":
        return "0 B"
    if kind == "trend":
        return fmt_bytes(trend.slope_per_min, signed=True)
    net = trend.last_bytes - trend.first_bytes
    moved = trend.high_bytes - trend.low_bytes
    if abs(net) * 2 >= moved:
        return ("↑" if net > 0 else "↓") + fmt_bytes(abs(net))
    return "↕" + fmt_bytes(moved)


def trend_sentence(trend: RssTrend | None) -> str:
    """The same in words, for the selected process's detail line."""
    window = f"last {TREND_WINDOW_S:.0f} s"
    if trend is None:
        return f"RSS trend ({window}): unknown until {TREND_MIN_SPAN_S:.0f} s of readings"
    span = f"last {trend.span_s:.0f} s" if trend.span_s < TREND_WINDOW_S - 1 else window
    kind = trend.kind
    if kind == "flat":
        return f"RSS trend ({span}): flat at {fmt_bytes(trend.last_bytes)}"
    if kind == "trend":
        return (f"RSS trend ({span}): {fmt_bytes(trend.slope_per_min, signed=True)}/min, steady "
                f"(least squares, R² {trend.r2:.2f})")
    r2 = f"R² {trend.r2:.2f}" if trend.r2 is not None else "no line"
    return (f"RSS ({span}): {fmt_bytes(trend.first_bytes)} → {fmt_bytes(trend.last_bytes)}, "
            f"between {fmt_bytes(trend.low_bytes)} and {fmt_bytes(trend.high_bytes)}: in steps, "
            f"no steady rate ({r2} < {TREND_MIN_R2})")

COLUMNS: tuple[Column, ...] = (
    Column("pid", "PID", 7, 0, lambda v: v.pid, lambda v: str(v.pid), "/proc (directory name)"),
    Column("user", "USER", 8, 3, lambda v: v.sample.user or "", lambda v: printable(v.sample.user or "?", 8),
           "/proc/PID/status Uid, named by the password database", align="left"),
    Column("rss", "RSS", 9, 0, lambda v: v.sample.rss_bytes, _bytes(lambda v: v.sample.rss_bytes), "/proc/PID/status VmRSS"),
    Column("pss", "PSS", 9, 1, _r("pss"), _bytes(_r("pss")),
           "/proc/PID/smaps_rollup Pss (shared pages divided among their mappers)", stale_with_rollup=True),
    Column("uss", "USS", 9, 2, _uss, _bytes(_uss),
           "/proc/PID/smaps_rollup Private_Clean + Private_Dirty", stale_with_rollup=True),
    Column("anon", "ANON", 9, 4, lambda v: v.sample.anon_bytes, _bytes(lambda v: v.sample.anon_bytes), "/proc/PID/status RssAnon"),
    Column("file", "FILE", 9, 6, lambda v: v.sample.file_bytes, _bytes(lambda v: v.sample.file_bytes), "/proc/PID/status RssFile"),
    Column("shmem", "SHMEM", 9, 7, lambda v: v.sample.shmem_bytes, _bytes(lambda v: v.sample.shmem_bytes), "/proc/PID/status RssShmem"),
    Column("swap", "SWAP", 9, 5, lambda v: v.sample.swap_bytes, _bytes(lambda v: v.sample.swap_bytes), "/proc/PID/status VmSwap"),
    Column("lazyfree", "LAZYFREE", 9, 9, _r("lazyfree"), _bytes(_r("lazyfree")),
           "/proc/PID/smaps_rollup LazyFree (MADV_FREE pages still counted in RSS)", stale_with_rollup=True),
    Column("threads", "THR", 4, 8, lambda v: v.sample.threads, lambda v: fmt_count(v.sample.threads), "/proc/PID/stat num_threads"),
    Column("fds", "FDS", 5, 5, lambda v: v.sample.fd_count, lambda v: fmt_count(v.sample.fd_count),
           "stat(/proc/PID/fd).st_size (Linux >= 6.2), else a listing of /proc/PID/fd"),
    Column("minflt", "MINF/s", 7, 6, lambda v: v.minflt_per_s, lambda v: fmt_rate(v.minflt_per_s, ""),
           "/proc/PID/stat minflt, difference of two ticks / seconds between them"),
    Column("majflt", "MAJF/s", 6, 7, lambda v: v.majflt_per_s, lambda v: fmt_rate(v.majflt_per_s, ""),
           "/proc/PID/stat majflt, difference of two ticks / seconds between them"),
    Column("change", "ΔRSS/min", 10, 3, _change, lambda v, history: trend_text(history.rss_trend()),
           f"VmRSS at each tick over the last {TREND_WINDOW_S:.0f} s: the least-squares slope per minute when a "
           f"line fits (R² ≥ {TREND_MIN_R2}); ↑X ↓X: RSS moved by X in a step (↕: up and down) with no steady "
           f"rate (sorted as 0); 0 B: it did not move; ? before {TREND_MIN_SPAN_S:.0f} s of readings",
           with_history=True),
    Column("trend", "TREND", 10, 8, _change, lambda v, history: sparkline(history.column(1, last=10), 10),
           "the last 10 VmRSS readings, scaled between their own min and max", align="left", with_history=True),
    Column("container", "CONTAINER", 16, 5, lambda v, c: container_name(c),
           lambda v, c: printable(container_name(c) or "?", 16),
           "/proc/PID/cgroup, named from the cgroup path (Docker, containerd/CRI-O, Kubernetes pods, podman, "
           "systemd units) and the runtime's own files; '-' is the host's root cgroup", align="left",
           with_container=True),
    Column("command", "COMMAND", 0, 0, lambda v: v.sample.name.lower(), lambda v: printable(v.sample.name),
           "/proc/PID/cmdline ([comm] from /proc/PID/stat for kernel threads)", align="left"),
)

COLUMNS_BY_KEY = {c.key: c for c in COLUMNS}


def command_min_width(width: int) -> int:
    """The command keeps a quarter of the width (at least 16 cells): a row must say what it is."""
    return max(16, width // 4)


@lru_cache(maxsize=16)
def fit_columns(width: int) -> tuple[Column, ...]:
    """The columns that fit ``width`` cells, dropping the highest priority numbers first."""
    chosen = list(COLUMNS)
    while True:
        used = sum(c.width + 1 for c in chosen if c.width) + command_min_width(width)
        if used <= width:
            return tuple(chosen)
        droppable = [c for c in chosen if c.priority > 0]
        if not droppable:
            return tuple(chosen)
        chosen.remove(max(droppable, key=lambda c: (c.priority, COLUMNS.index(c))))
