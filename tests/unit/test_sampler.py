"""The sampler on a captured proc tree: identity by PID + start time, derived rates, unknowns."""

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memtop.collect.sampler import Sampler
from memtop.model.process import History

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "proc-basic"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "proc"
    shutil.copytree(FIX, root)
    return root


def _set_stat_field(root: Path, pid: int, field_no: int, value: int) -> None:
    path = root / str(pid) / "stat"
    data = path.read_bytes()
    head, _, tail = data.rpartition(b")")
    fields = tail.split()
    fields[field_no - 3] = str(value).encode()
    path.write_bytes(head + b") " + b" ".join(fields) + b"\n")


def test_a_reused_pid_is_a_new_process(tree):
    clock = FakeClock()
    sampler = Sampler(tree, clock=clock)
    sampler.sample()
    clock.now += 2
    snapshot = sampler.sample()
    second = snapshot.by_pid(7335)
    assert len(snapshot.history(second)) == 2 and second.minflt_per_s == 0
    # GIVEN the same PID with another start time (the PID was reused)
    _set_stat_field(tree, 7335, 22, 999999)
    (tree / "7335" / "cmdline").write_bytes(b"/usr/bin/other\0--flag\0")
    clock.now += 2
    snapshot = sampler.sample()
    third = snapshot.by_pid(7335)
    # THEN memtop treats it as a new process: fresh history, no rate, its own command line
    assert third.sample.identity.start_ticks == 999999
    assert len(snapshot.history(third)) == 1 and third.minflt_per_s is None
    assert third.sample.cmdline == "/usr/bin/other --flag"


def test_fault_rates_from_two_ticks(tree):
    clock = FakeClock()
    sampler = Sampler(tree, clock=clock)
    before = sampler.sample().by_pid(7335).sample
    _set_stat_field(tree, 7335, 10, before.minflt + 500)
    _set_stat_field(tree, 7335, 12, before.majflt + 4)
    clock.now += 2
    view = sampler.sample().by_pid(7335)
    assert view.minflt_per_s == pytest.approx(250)
    assert view.majflt_per_s == pytest.approx(2)


def test_kernel_threads_and_zombies_have_reasons(tree):
    snapshot = Sampler(tree, clock=FakeClock()).sample()
    kthread, zombie, user = snapshot.by_pid(2).sample, snapshot.by_pid(7337).sample, snapshot.by_pid(7335).sample
    assert kthread.kernel_thread and kthread.rollup is None and "kernel thread" in kthread.rollup_reason
    assert kthread.rss_bytes == 0 and kthread.fd_count is None
    assert zombie.state == "Z" and zombie.rollup is None and "zombie" in zombie.rollup_reason
    assert zombie.rss_bytes is None  # no VmRSS line: unknown, not 0
    assert user.rollup.pss == 233 * 1024 and user.fd_count is not None
    assert snapshot.system.meminfo["MemTotal"] > 0 and snapshot.system.hostname


def test_a_process_vanishing_between_reads_is_dropped(tree):
    (tree / "7335" / "status").unlink()  # it exited after stat was listed
    snapshot = Sampler(tree, clock=FakeClock()).sample()
    assert snapshot.by_pid(7335) is None and snapshot.by_pid(1077) is not None


def test_garbage_in_stat_drops_the_row_not_the_tick(tree):
    (tree / "1077" / "stat").write_bytes(b"\x00\xffgarbage")
    snapshot = Sampler(tree, clock=FakeClock()).sample()
    assert snapshot.by_pid(1077) is None and snapshot.by_pid(7335) is not None


def _h(times, rss):
    return History.from_points((float(t), r, None) for t, r in zip(times, rss))


def test_rss_change_per_minute():
    history = _h(range(0, 122, 2), [1000 * t for t in range(0, 122, 2)])  # +1000 bytes per second
    assert history.rss_change_per_min() == pytest.approx(60_000)
    assert history.rss_trend().kind == "trend" and history.rss_trend().span_s == 60
    assert _h((0, 5), (1, 2)).rss_change_per_min() is None  # less than 10 s of history
    assert _h((0, 20), (1, None)).rss_change_per_min() is None
    assert _h((0, 20), (100, 160)).rss_change_per_min() is None  # two readings make no trend
    assert _h((0, 20, 40), (100, 130, 160)).rss_change_per_min() == pytest.approx(90)
    assert _h((0, 20, 40, 60), (None, 100, 130, 160)).rss_change_per_min() == pytest.approx(90)
    assert _h(range(0, 62, 2), [5000] * 31).rss_trend().kind == "flat"


def test_a_step_is_not_a_trend():
    """The issue's case: 300 MiB allocated once, 25 s ago, on a process flat since: the old
    "now minus 60 s ago" rate said +552 MiB/min for a minute. Now: no rate, the step shown."""
    from memtop.tui.columns import trend_sentence, trend_text

    mib = 2**20
    times = list(range(0, 62, 2))
    for step_at in (5, 20, 35, 50, 58):  # wherever the step falls in the window
        rss = [100 * mib if t < step_at else 400 * mib for t in times]
        trend = _h(times, rss).rss_trend()
        assert trend.kind == "steps" and trend.r2 < 0.8, step_at
        assert trend.change_per_min == 0.0 and _h(times, rss).rss_change_per_min() == 0.0
        assert trend_text(trend) == "↑300 MiB"
        assert "no steady rate" in trend_sentence(trend) and "100 MiB → 400 MiB" in trend_sentence(trend)
    # A spike up and back down is not a rate either
    spike = _h(times, [100 * mib if not 20 <= t < 30 else 300 * mib for t in times]).rss_trend()
    assert trend_text(spike) == "↕200 MiB"
    # A staircase that keeps climbing is a trend: +10 MiB every 6 s is +100 MiB a minute
    stairs = _h(times, [100 * mib + (t // 6) * 10 * mib for t in times]).rss_trend()
    assert stairs.kind == "trend" and stairs.slope_per_min == pytest.approx(100 * mib, rel=0.1)
    assert trend_text(stairs).startswith("+") and "steady" in trend_sentence(stairs)
    # A leak of 8 KiB a minute read every 2 s (each reading a whole page apart) is still a trend
    leak = _h(times, [50 * mib + 4096 * (t // 30) for t in times] ).rss_trend()
    assert leak.kind in ("steps", "trend")
    slow = _h(list(range(0, 62, 2)), [50 * mib + 4096 * (t // 4) for t in range(0, 62, 2)]).rss_trend()
    assert slow.kind == "trend" and trend_text(slow) == "+60.0 KiB"


def test_history_is_bounded(tree):
    clock = FakeClock()
    sampler = Sampler(tree, clock=clock, history_len=5)
    for _ in range(12):
        clock.now += 2
        snapshot = sampler.sample()
    assert len(snapshot.history(snapshot.by_pid(7335)).column(1)) == 5


def _naive_change(points, window_s=60.0):
    """The per-point definition of the RSS trend per minute (what History computes from runs):
    the least-squares slope of the known readings of the last minute, when a line fits."""
    if len(points) < 2 or points[-1][1] is None:
        return None
    now = points[-1][0]
    known = [(t, r) for t, r, _ in points if t >= now - window_s and r is not None]
    if len(known) < 3 or known[-1][0] - known[0][0] < 10.0:
        return None
    n = len(known)
    mt = sum(t for t, _ in known) / n
    mr = sum(r for _, r in known) / n
    stt = sum((t - mt) ** 2 for t, _ in known)
    srr = sum((r - mr) ** 2 for _, r in known)
    s = sum((t - mt) * (r - mr) for t, r in known)
    if not srr or s * s / (stt * srr) < 0.8:
        return 0.0
    return s / stt * 60.0


point_values = st.lists(st.tuples(st.sampled_from([None, 1000, 2000, 5000]), st.sampled_from([None, 3, 4])),
                        min_size=1, max_size=60)


@given(values=point_values, step=st.sampled_from([0.5, 2.0, 7.0]))
@settings(max_examples=300, deadline=None)
def test_history_by_change_equals_the_points_it_stands_for(values, step):
    points = [(1000.0 + step * i, rss, fds) for i, (rss, fds) in enumerate(values)]
    history = History.from_points(points)
    assert history.point_times() == tuple(p[0] for p in points)
    assert history.column(1) == tuple(p[1] for p in points)
    assert history.column(2) == tuple(p[2] for p in points)
    assert history.column(1, last=10) == tuple(p[1] for p in points)[-10:]
    assert history.rss_change_per_min() == pytest.approx(_naive_change(points))


@given(values=point_values)
@settings(max_examples=60, deadline=None)
def test_sampler_history_window_slides_over_changing_values(tmp_path_factory, values):
    # GIVEN a process whose RSS and fd count change at some ticks (written into a captured tree)
    root = tmp_path_factory.mktemp("proc")
    shutil.copytree(FIX, root, dirs_exist_ok=True)
    clock = FakeClock()
    sampler = Sampler(root, clock=clock, history_len=7)
    status = root / "7335" / "status"
    original = status.read_text()
    seen = []
    for i, (rss, _fds) in enumerate(values):
        kb = rss if rss is not None else 4
        status.write_text("\n".join(f"VmRSS:\t{kb} kB" if line.startswith("VmRSS:") else line
                                    for line in original.splitlines()) + "\n")
        _set_stat_field(root, 7335, 24, 1000 + i)  # a new stat line: status is read again
        snapshot = sampler.sample()
        view = snapshot.by_pid(7335)
        history = snapshot.history(view)
        seen.append((clock.now, view.sample.rss_bytes, view.sample.fd_count))
        clock.now += 2
        # THEN its history is exactly the last history_len points, however the window slid
        assert tuple(zip(history.point_times(), history.column(1), history.column(2))) == tuple(seen[-7:])
        assert history.column(1, last=3) == tuple(p[1] for p in seen[-3:])
    assert len(sampler._histories[view.sample.identity].runs) <= 7


def test_fast_constructors_build_the_same_records():
    from memtop.model.process import ProcessView, new_history, new_view

    history = new_history((1.0, 2.0), 5, 5, ((5, 100, 3),))
    assert history == History((1.0, 2.0), 5, 5, ((5, 100, 3),))
    args = (None, 0.5, 0.0, 12.0, 5, ((5, 100, 3),), False)
    assert new_view(*args) == ProcessView(*args)
    assert [f for f in ProcessView.__slots__] == ["sample", "minflt_per_s", "majflt_per_s", "rss_change_per_min",
                                                 "since", "runs", "rollup_current"]


def test_idle_fast_path_builds_the_same_views_as_the_general_one(tree):
    # GIVEN two samplers on the same tree and clock, one made to build every view the general way
    clock = FakeClock()
    fast, general = Sampler(tree, clock=clock), Sampler(tree, clock=clock)
    general.idle_shortcuts = False
    built_generally = []
    view = fast._view
    fast._view = lambda sample, *a: built_generally.append(sample.pid) or view(sample, *a)
    a = fast.sample()
    minflt = a.by_pid(7335).sample.minflt
    general.sample()
    for tick in range(1, 40):
        clock.now += 2
        if tick % 7 == 0:  # 7335 faults now and then; the others stay idle all along
            minflt += 100
            _set_stat_field(tree, 7335, 10, minflt)
        if tick == 25:  # and its RSS moves once, within the last minute
            status = tree / "7335" / "status"
            status.write_text(status.read_text().replace("VmRSS:\t    1400 kB", "VmRSS:\t    1800 kB"))
        built_generally.clear()
        before = a
        a, b = fast.sample(), general.sample()
        # THEN every view is equal, field by field, and so is the window of their histories
        assert a.processes == b.processes and (a.tick_times, a.tick0) == (b.tick_times, b.tick0), f"tick {tick}"
    # and the idle processes kept last tick's view object: not 7335 (its RSS moved within the
    # last minute) nor the zombie 7337 (its RSS is unknown)
    assert a.history(a.by_pid(7335)).rss_trend().kind == "steps"  # one step: no steady rate (0.0)
    assert sorted(built_generally) == [7335, 7337] and len(a.processes) > 2
    assert all(v is before.by_pid(v.pid) for v in a.processes if v.pid not in (7335, 7337))
