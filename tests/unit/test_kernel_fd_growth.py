"""fd growth per minute and the leak finding, from fd histories (the sampler's ProcessView)."""

from __future__ import annotations

import pytest

from memtop.model.kernel import FdGrowth, fd_growers, fd_growth, fd_leak_finding
from memtop.model.process import History, ProcessIdentity, ProcessSample, ProcessView


def make_view(pid: int, times, fds) -> ProcessView:
    sample = ProcessSample(
        identity=ProcessIdentity(pid, 100), ppid=1, comm=f"proc{pid}", cmdline=f"proc{pid}", user="root", state="S",
        kernel_thread=False, rss_bytes=1 << 20, anon_bytes=0, file_bytes=0, shmem_bytes=0, swap_bytes=0, threads=1,
        minflt=0, majflt=0, fd_count=fds[-1], fd_reason=None, rollup=None, rollup_reason="test", rollup_time=None,
    )
    history = History.from_points((t, 1 << 20, n) for t, n in zip(times, fds))
    return ProcessView(sample, None, None, None, since=history.since, runs=history.runs)


def window(times):
    """Snapshot.history for views made by make_view over ``times``."""
    return lambda view: History(tuple(times), 0, view.since, view.runs)


def test_steady_growth_rate_and_finding():
    times = [1000.0 + 2 * i for i in range(31)]  # 60 s at a 2 s tick
    fds = [10 + 3 * i for i in range(31)]  # 3 fds per 2 s = 90/min
    growth = fd_growth(tuple(times), tuple(fds))
    assert growth.per_min == pytest.approx(90.0)
    assert growth.steady and growth.first == 10 and growth.last == 100
    finding = fd_leak_finding(make_view(7, times, fds), growth, age_s=600.0)
    assert finding is not None and "from 10 to 100 in 60 s (+90/min" in finding.text
    assert "/proc/7/fd" in finding.next_step


def test_window_keeps_only_the_last_minute():
    times = [float(i) for i in range(0, 121, 2)]
    fds = [100 if t < 60 else 100 + int(t - 60) for t in times]  # flat for a minute, then 1/s
    growth = fd_growth(tuple(times), tuple(fds), window_s=60)
    assert growth.per_min == pytest.approx(60.0)


def test_not_enough_history_is_unknown():
    assert fd_growth((0.0, 2.0, 4.0, 6.0), (1, 2, 3, 4)) is None  # 6 s < 10 s
    assert fd_growth((0.0, 20.0), (1, 2)) is None  # too few points
    assert fd_growth((), ()) is None
    # Unknown counts (None) are skipped, not taken as 0.
    assert fd_growth(tuple(float(t) for t in range(0, 22, 2)), (None,) * 11) is None


@pytest.mark.parametrize(
    "fds, why",
    [
        ([50, 50, 50, 50, 50, 50, 50, 50], "flat"),
        ([50, 80, 50, 80, 50, 80, 50, 80], "oscillating: a pool opening and closing"),
        ([50, 51, 52, 52, 53, 54, 55, 56], "too small an increase to call a leak"),
        ([50, 50, 50, 50, 50, 50, 50, 120], "one jump, not steady"),
    ],
)
def test_no_leak_finding_without_steady_growth(fds, why):
    times = [2.0 * i for i in range(len(fds))]
    growth = fd_growth(tuple(times), tuple(fds))
    assert fd_leak_finding(make_view(1, times, fds), growth) is None, why


def test_young_process_or_short_growth_is_no_leak():
    # A process that just started opens its files: 13 -> 28 fds in 12 s (the report) is no leak.
    times = [float(i) for i in range(13)]
    fds = [13 + round(i * 15 / 12) for i in range(13)]
    growth = fd_growth(tuple(times), tuple(fds))
    assert growth is not None and growth.steady  # the shape alone would say leak
    assert fd_leak_finding(make_view(1, times, fds), growth, age_s=12.5) is None
    assert fd_leak_finding(make_view(1, times, fds), growth) is None  # 12 s of history is too short
    # 60 s of steady growth, but the process is 30 s old (history from before a PID reuse cannot
    # exist: the identity includes the start time; this is the age check on its own).
    times = [2.0 * i for i in range(31)]
    fds = [10 + 2 * i for i in range(31)]
    growth = fd_growth(tuple(times), tuple(fds))
    assert fd_leak_finding(make_view(1, times, fds), growth, age_s=30.0) is None
    assert fd_leak_finding(make_view(1, times, fds), growth, age_s=61.0) is not None


def test_growers_use_the_process_age_from_uptime_and_start_ticks():
    times = [2.0 * i for i in range(31)]
    view = make_view(3, times, [10 + 5 * i for i in range(31)])  # start_ticks 100: 1 s after boot
    (old,) = fd_growers([view], window(times), uptime_s=1000.0, clock_ticks=100)
    assert old.finding is not None
    (young,) = fd_growers([view], window(times), uptime_s=31.0, clock_ticks=100)  # 30 s old
    assert young.finding is None and young.growth.per_min == pytest.approx(150.0)


def test_growers_sorted_fastest_first_and_only_growing():
    times = [2.0 * i for i in range(31)]
    fast = make_view(3, times, [10 + 5 * i for i in range(31)])
    slow = make_view(2, times, [10 + i for i in range(31)])
    shrinking = make_view(1, times, [100 - i for i in range(31)])
    growers = fd_growers([shrinking, slow, fast], window(times))
    assert [g.view.pid for g in growers] == [3, 2]
    assert growers[0].finding is not None
    assert isinstance(growers[0].growth, FdGrowth)
