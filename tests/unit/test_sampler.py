"""The sampler on a captured proc tree: identity by PID + start time, derived rates, unknowns."""

import shutil
from pathlib import Path

import pytest

from memtop.collect.sampler import Sampler, rss_change_per_min

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
    second = sampler.sample().by_pid(7335)
    assert len(second.rss_history) == 2 and second.minflt_per_s == 0
    # GIVEN the same PID with another start time (the PID was reused)
    _set_stat_field(tree, 7335, 22, 999999)
    (tree / "7335" / "cmdline").write_bytes(b"/usr/bin/other\0--flag\0")
    clock.now += 2
    third = sampler.sample().by_pid(7335)
    # THEN memtop treats it as a new process: fresh history, no rate, its own command line
    assert third.sample.identity.start_ticks == 999999
    assert len(third.rss_history) == 1 and third.minflt_per_s is None
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
        return tuple((float(t), r, None) for t, r in zip(times, rss))

    history = h(range(0, 122, 2), [1000 * t for t in range(0, 122, 2)])  # +1000 bytes per second
    assert rss_change_per_min(history) == pytest.approx(60_000)
    assert rss_change_per_min(h((0, 5), (1, 2))) is None  # less than 10 s of history
    assert rss_change_per_min(h((0, 20), (1, None))) is None
    assert rss_change_per_min(h((0, 20, 40), (None, 100, 160))) == pytest.approx(180)


def test_history_is_bounded(tree):
    clock = FakeClock()
    sampler = Sampler(tree, clock=clock, history_len=5)
    for _ in range(12):
        clock.now += 2
        snapshot = sampler.sample()
    assert len(snapshot.by_pid(7335).rss_history) == 5
