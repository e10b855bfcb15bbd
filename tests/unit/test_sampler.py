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


def test_rss_change_per_minute():
    def h(times, rss):
        return History.from_points((float(t), r, None) for t, r in zip(times, rss))

    history = h(range(0, 122, 2), [1000 * t for t in range(0, 122, 2)])  # +1000 bytes per second
    assert history.rss_change_per_min() == pytest.approx(60_000)
    assert h((0, 5), (1, 2)).rss_change_per_min() is None  # less than 10 s of history
    assert h((0, 20), (1, None)).rss_change_per_min() is None
    assert h((0, 20, 40), (None, 100, 160)).rss_change_per_min() == pytest.approx(180)


def test_history_is_bounded(tree):
    clock = FakeClock()
    sampler = Sampler(tree, clock=clock, history_len=5)
    for _ in range(12):
        clock.now += 2
        snapshot = sampler.sample()
    assert len(snapshot.history(snapshot.by_pid(7335)).column(1)) == 5


def _naive_change(points, window_s=60.0):
    """The per-point definition of RSS change per minute (what History computes from runs)."""
    if len(points) < 2 or points[-1][1] is None:
        return None
    now, rss_now = points[-1][0], points[-1][1]
    i = next(i for i, p in enumerate(points) if p[0] >= now - window_s)
    while i < len(points) - 1 and points[i][1] is None:
        i += 1
    t0, rss0 = points[i][0], points[i][1]
    if now - t0 < 10.0 or rss0 is None:
        return None
    return (rss_now - rss0) / (now - t0) * 60.0


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
    assert a.by_pid(7335).rss_change_per_min > 0
    assert sorted(built_generally) == [7335, 7337] and len(a.processes) > 2
    assert all(v is before.by_pid(v.pid) for v in a.processes if v.pid not in (7335, 7337))
