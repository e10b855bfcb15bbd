"""The sampler against real processes the test starts, checked against /proc read independently."""

import math
import os
import sys
import time

import pytest

from memtop.collect.sampler import ROLLUP_DUTY, Sampler
from memtop.procfs import PROC, NoSuchProcess, OpenFiles
from tests.support import IS_ROOT, compile_c, rollup_kb, run_as_user, status_kb, wait_until

MiB = 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")

TOUCHER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
/* Touch N MiB of private anonymous memory, then wait. */
int main(int argc, char **argv) {
    size_t n = (size_t)atoi(argv[1]) << 20;
    volatile char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
    printf("READY\n"); fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) { printf("ok\n"); fflush(stdout); }
    return 0;
}
"""

SHARER = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
/* Map a 32 MiB file in /dev/shm shared and touch all of it, then wait. */
int main(int argc, char **argv) {
    size_t n = 32u << 20;
    int fd = open(argv[1], O_RDWR | O_CREAT, 0600);
    if (fd < 0 || ftruncate(fd, n) != 0) return 1;
    volatile char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return 1;
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
    printf("READY\n"); fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) { printf("ok\n"); fflush(stdout); }
    return 0;
}
"""


def _view(snapshot, pid):
    view = snapshot.by_pid(pid)
    assert view is not None, f"PID {pid} missing from the snapshot"
    return view


def test_a_child_touching_64_mib(children, gcc):
    # GIVEN a child that touched 64 MiB of private anonymous memory
    child = children.start([compile_c(TOUCHER, name="toucher"), "64"])
    # One round trip first: the child's first fgets allocates and touches stdio's input buffer
    # after READY (CI once read VmRSS a page above what memtop had read a moment before).
    assert child.ask("sync") == "ok"
    sampler = Sampler()
    sampler.visible = frozenset({child.pid})
    # WHEN memtop samples it
    view = _view(sampler.sample(), child.pid)
    s = view.sample
    # THEN its figures equal /proc read independently, and include the 64 MiB
    assert s.rss_bytes == status_kb(child.pid, "VmRSS")
    assert s.anon_bytes == status_kb(child.pid, "RssAnon")
    assert s.anon_bytes >= 64 * MiB
    assert s.rollup.pss == rollup_kb(child.pid, "Pss")
    assert s.rollup.uss == rollup_kb(child.pid, "Private_Clean") + rollup_kb(child.pid, "Private_Dirty")
    assert s.rollup.private_dirty >= 64 * MiB
    assert s.threads == 1
    assert s.fd_count == len(os.listdir(f"/proc/{child.pid}/fd"))
    assert s.cmdline.endswith(" 64")


def test_two_processes_sharing_32_mib_of_dev_shm(children, gcc, tmp_path):
    # GIVEN two processes mapping the same 32 MiB /dev/shm file, every page touched
    path = f"/dev/shm/memtop-test-{os.getpid()}"
    try:
        binary = compile_c(SHARER, name="sharer")
        a = children.start([binary, path])
        b = children.start([binary, path])
        assert a.ask("sync") == b.ask("sync") == "ok"  # stdin's buffer touched (see above)
        sampler = Sampler()
        sampler.visible = frozenset({a.pid, b.pid})
        snapshot = sampler.sample()
        va, vb = _view(snapshot, a.pid).sample, _view(snapshot, b.pid).sample
        # THEN each has the 32 MiB as shmem in RSS, and PSS splits it between the two
        for v in (va, vb):
            assert v.shmem_bytes == 32 * MiB
            assert v.rollup.pss == rollup_kb(v.pid, "Pss")
            assert v.rollup.pss_shmem == pytest.approx(16 * MiB, abs=64 * 1024)
            assert v.rollup.uss < 8 * MiB  # the shared pages are nobody's unique pages
        assert va.rollup.pss_shmem + vb.rollup.pss_shmem == pytest.approx(32 * MiB, abs=64 * 1024)
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_rates_history_and_a_process_that_exits(children, gcc):
    child = children.start([compile_c(TOUCHER, name="toucher"), "8"])
    sampler = Sampler()
    first = sampler.sample()
    assert _view(first, child.pid).minflt_per_s is None  # one sample has no rate
    time.sleep(0.3)
    second = sampler.sample()
    view = _view(second, child.pid)
    assert view.minflt_per_s is not None and view.minflt_per_s >= 0
    history = second.history(view)
    assert len(history.column(1)) == 2 == len(history.point_times())
    # WHEN the child exits, THEN its row and its history are dropped, without error
    child.close()
    third = sampler.sample()
    assert third.by_pid(child.pid) is None
    assert all(i.pid != child.pid for i in sampler._histories)


FAULTER = r"""
#include <stdio.h>
#include <unistd.h>
#include <sys/mman.h>
/* Busy in the way the sampler notices: a new page fault every 2 ms (its stat line changes). */
int main(void) {
    printf("READY\n"); fflush(stdout);
    for (;;) {
        volatile char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p[0] = 1;
        munmap((void *)p, 4096);
        usleep(2000);
    }
}
"""


def test_staggered_rollups_idle_processes_less_often_than_busy_ones(children, gcc):
    idle = [children.start([compile_c(TOUCHER, name="toucher"), "1"]) for _ in range(8)]
    busy = [children.start([compile_c(FAULTER, name="faulter")]) for _ in range(3)]
    sampler = Sampler(stagger=3, idle_stagger=8, idle_on_screen=3)
    # on screen: one idle, one busy process
    on_screen = {idle[0].pid, busy[0].pid}
    sampler.visible = frozenset(on_screen)
    sampler.sample()  # first tick reads everything
    reads = {kid.pid: set() for kid in idle + busy}
    ticks = 24
    for _ in range(ticks):
        time.sleep(0.03)  # the faulters fault in between: their stat lines change
        snapshot = sampler.sample()
        for kid in idle + busy:
            view = _view(snapshot, kid.pid)
            assert view.sample.rollup is not None
            state = sampler._rollups[view.sample.identity]
            reads[kid.pid].add(state.tick)
            # THEN no rollup is older than its tier allows: busy 3 ticks, idle 8, and 1 (this
            # tick) for the busy row on screen, 3 for the idle one
            limit = {True: 1, False: 3}[kid in busy] if kid.pid in on_screen else (3 if kid in busy else 8)
            assert snapshot.tick - state.tick < limit, (kid in busy, kid.pid in on_screen, snapshot.tick, state.tick)
            # AND a rollup read after the process's last change says so (not dimmed)
            assert view.rollup_current == (state.tick == snapshot.tick or kid in idle)
    # AND an idle process's page tables are walked about every 8 ticks, a busy one's every 3
    for kid in idle[1:]:
        assert len(reads[kid.pid]) <= ticks // 8 + 2, reads[kid.pid]
    for kid in busy[1:]:
        assert len(reads[kid.pid]) >= ticks // 3 - 1, reads[kid.pid]
    assert len(reads[busy[0].pid]) == ticks and len(reads[idle[0].pid]) <= ticks // 3 + 2


MANY_MAPPINGS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
/* argv[1] mappings of one touched page each (every other page PROT_NONE, so the kernel cannot
   merge them: smaps_rollup walks each), then busy like FAULTER: a page fault every 2 ms. */
int main(int argc, char **argv) {
    long n = atol(argv[1]), page = sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, 2 * n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    for (long i = 0; i < n; i++) {
        p[2 * i * page] = 1;
        if (mprotect(p + (2 * i + 1) * page, page, PROT_NONE) != 0) return 2;
    }
    printf("READY\n"); fflush(stdout);
    for (;;) {
        volatile char *q = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        q[0] = 1;
        munmap((void *)q, 4096);
        usleep(2000);
    }
}
"""


def test_a_costly_rollup_on_screen_is_read_less_often_unless_selected(children, gcc):
    # GIVEN two busy processes on screen: one whose smaps_rollup walks 4,000 mappings, one small
    big = children.start([compile_c(MANY_MAPPINGS, name="manymaps"), "4000"])
    small = children.start([compile_c(FAULTER, name="faulter")])
    now = [1000.0]
    sampler = Sampler(rollup_duty=ROLLUP_DUTY, clock=lambda: now[0])
    sampler.visible = frozenset({big.pid, small.pid})
    first = sampler.sample()
    reads: dict[int, list[tuple[float, float]]] = {}  # PID -> [(time, its cost)]
    for kid in (big, small):
        state = sampler._rollups[_view(first, kid.pid).sample.identity]
        reads[kid.pid] = [(state.time, state.cost)]
    stale_rows = 0
    for _ in range(16):
        now[0] += 2.0
        time.sleep(0.03)  # both fault in between: their stat lines change
        snapshot = sampler.sample()
        for kid in (big, small):
            view = _view(snapshot, kid.pid)
            state = sampler._rollups[view.sample.identity]
            if state.tick == snapshot.tick:
                reads[kid.pid].append((state.time, state.cost))
            else:  # THEN a row whose rollup was not read after its last change says so (dimmed)
                assert not view.rollup_current
                stale_rows += 1
    # THEN the big one is read again only after ROLLUP_DUTY times what its last read cost
    big_reads = reads[big.pid]
    assert big_reads[0][1] * ROLLUP_DUTY > 2.0, f"4,000 mappings read in {big_reads[0][1]} s"
    for (t1, cost), (t2, _) in zip(big_reads, big_reads[1:]):
        assert t2 - t1 >= ROLLUP_DUTY * cost
    assert len(big_reads) < 17 and stale_rows > 0
    # AND the small one (tens of µs a read) at every tick its last read's cost allows: every
    # tick, unless a read was slowed past 400 µs (a busy machine: CI's other worker), then at
    # the first tick ROLLUP_DUTY times that cost later
    small_reads = reads[small.pid]
    for (t1, cost), (t2, _) in zip(small_reads, small_reads[1:]):
        assert t2 - t1 == 2.0 * max(1, math.ceil(ROLLUP_DUTY * cost / 2.0 - 1e-9)), (t1, cost, t2)
    assert small_reads[-1][0] >= now[0] - 2.0 * math.ceil(ROLLUP_DUTY * small_reads[-1][1] / 2.0)
    assert sum(ROLLUP_DUTY * cost <= 2.0 for _, cost in small_reads) >= 9  # mostly cheap: every tick
    # WHEN the big one is selected THEN it is read every tick, whatever it costs
    sampler.selected = big.pid
    for _ in range(4):
        now[0] += 2.0
        time.sleep(0.03)
        snapshot = sampler.sample()
        view = _view(snapshot, big.pid)
        assert sampler._rollups[view.sample.identity].tick == snapshot.tick and view.rollup_current


@pytest.mark.skipif(not IS_ROOT, reason="needs root to drop privileges in a child")
def test_non_root_sees_unknown_with_reasons_never_zero(children, gcc):
    child = children.start([compile_c(TOUCHER, name="toucher"), "4"])  # runs as root

    def sample_as_nobody():
        view = Sampler().sample().by_pid(child.pid)
        s = view.sample
        return s.rss_bytes, s.rollup, s.rollup_reason, s.fd_count, s.fd_reason

    rss, rollup, rollup_reason, fd_count, fd_reason = run_as_user(65534, sample_as_nobody)
    assert rss is not None and rss > 4 * MiB  # status is world-readable
    assert rollup is None and "permission denied" in rollup_reason
    assert fd_count is None and "needs root" in fd_reason


FDOPENER = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
/* "open N" opens /dev/null N more times; answers "ok". */
int main(void) {
    printf("READY\n"); fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        int n = atoi(line + 5);
        for (int i = 0; i < n; i++) open("/dev/null", O_RDONLY);
        printf("ok\n"); fflush(stdout);
    }
    return 0;
}
"""


def test_fd_counts_every_tick_on_screen_or_not(children, gcc):
    binary = compile_c(FDOPENER, name="fdopener")
    shown, hidden = children.start([binary]), children.start([binary])
    sampler = Sampler(stagger=4)
    sampler.visible = frozenset({shown.pid})
    for _ in range(6):
        snapshot = sampler.sample()
    before = {k.pid: _view(snapshot, k.pid).sample.fd_count for k in (shown, hidden)}
    assert before == {k.pid: len(os.listdir(f"/proc/{k.pid}/fd")) for k in (shown, hidden)}
    # WHEN both open 7 more fds (a run so short that their stat lines may not even change)
    for kid in (shown, hidden):
        assert kid.ask("open 7") == "ok"
    snapshot = sampler.sample()
    # THEN the next tick shows it for both: an fd leak's rate is read from this history
    for kid in (shown, hidden):
        assert _view(snapshot, kid.pid).sample.fd_count == before[kid.pid] + 7


def test_a_long_idle_process_off_screen_is_read_every_other_tick(children, gcc):
    # GIVEN the live view's sampler (idle_every=2) and three sleepers, one of them on screen
    binary = compile_c(FDOPENER, name="fdopener")
    hidden, shown, calm = (children.start([binary]) for _ in range(3))
    sampler = Sampler(idle_every=2, idle_after=3, clock=_Clock())
    sampler.visible = frozenset({shown.pid})

    def until_skipping(kid, snapshot=None):
        """Sample until the next tick is one that would skip ``kid`` if it is long idle."""
        while not (kid.pid + sampler.tick) % 2:
            snapshot = sampler.sample()
        return snapshot

    def fds(snapshot, kid):
        return _view(snapshot, kid.pid).sample.fd_count

    for _ in range(6):  # idle for longer than idle_after
        snapshot = sampler.sample()
    before = {kid.pid: fds(snapshot, kid) for kid in (hidden, shown, calm)}
    # WHEN the hidden one opens 3 fds, THEN a tick that skips it still shows the last figure,
    # the same sample object (nothing was read), and the next tick reads the new count
    skipped_sample = _view(until_skipping(hidden, snapshot), hidden.pid).sample
    assert hidden.ask("open 3") == "ok"
    snapshot = sampler.sample()
    assert fds(snapshot, hidden) == before[hidden.pid]
    assert _view(snapshot, hidden.pid).sample is skipped_sample
    snapshot = sampler.sample()
    assert fds(snapshot, hidden) == before[hidden.pid] + 3 == len(os.listdir(f"/proc/{hidden.pid}/fd"))
    # AND having changed, it is read every tick again: a tick of the skipping parity shows it
    until_skipping(hidden)
    assert hidden.ask("open 2") == "ok"
    assert fds(sampler.sample(), hidden) == before[hidden.pid] + 5
    # AND the one on screen and the selected one are read every tick, long idle or not
    sampler.selected = calm.pid
    for kid in (shown, calm):
        until_skipping(kid)
        assert kid.ask("open 1") == "ok"
        assert fds(sampler.sample(), kid) == before[kid.pid] + 1
    # AND the default Sampler (snapshot, export, record) reads everything every tick
    assert Sampler().idle_every == 1


def _last_pid() -> str:
    return open("/proc/loadavg").read().split()[-1]


def test_proc_is_listed_again_only_when_a_pid_was_handed_out(children, gcc, monkeypatch):
    from memtop.procfs import process as procfs

    listings = []
    real = procfs.list_pids
    monkeypatch.setattr(procfs, "list_pids", lambda root: listings.append(1) or real(root))  # counts, real result
    binary = compile_c(FDOPENER, name="fdopener")
    first = children.start([binary])
    sampler = Sampler()
    assert _view(sampler.sample(), first.pid) and len(listings) == 1
    # WHEN a process starts THEN the next tick lists /proc again and shows it
    second = children.start([binary])
    assert _view(sampler.sample(), second.pid) and len(listings) == 2

    # WHEN no PID was handed out during a tick THEN it used the last list, without listing /proc;
    # and a process that exited meanwhile (an exit hands out no PID) is gone from rows and list
    for _attempt in range(20):  # other work on the machine may hand out PIDs: try again
        kid = children.start([binary])
        assert _view(sampler.sample(), kid.pid)
        mark, count = _last_pid(), len(listings)
        kid.close()
        snapshot = sampler.sample()
        if _last_pid() == mark:
            break
    else:
        pytest.skip("the machine handed out PIDs during every tick tried")
    assert len(listings) == count
    assert snapshot.by_pid(kid.pid) is None and kid.pid not in sampler._listed
    assert {first.pid, second.pid} <= {v.pid for v in snapshot.processes} and first.pid in sampler._listed
    assert set(sampler._listed) == set(real(PROC))  # what a listing now gives


@pytest.mark.skipif(not IS_ROOT, reason="the fd directory is held open only as root")
def test_held_fd_directory_counts_by_fstat_and_lets_go_when_the_process_exits(children, gcc):
    binary = compile_c(FDOPENER, name="fdopener")
    kid = children.start([binary])
    dirs = OpenFiles("fd", directory=True)
    try:
        assert dirs.size(kid.pid) == len(os.listdir(f"/proc/{kid.pid}/fd"))
        assert dirs.pids() == [kid.pid]  # held: the next reads are fstat(2) of the same fd
        assert kid.ask("open 5") == "ok"
        assert dirs.size(kid.pid) == len(os.listdir(f"/proc/{kid.pid}/fd"))
        kid.close()
        # The held fd is bound to the process, not to its PID: once gone, it says so.
        with pytest.raises(NoSuchProcess):
            dirs.size(kid.pid)
        assert dirs.pids() == []
    finally:
        dirs.close()


@pytest.mark.skipif(not IS_ROOT, reason="the idle shortcut needs the fd directories held open (root)")
def test_idle_shortcuts_give_the_samples_and_views_of_the_general_path(children, gcc):
    # GIVEN idle children, one that opens fds now and then, and one whose RSS grows
    sleepers = [children.start([compile_c(FDOPENER, name="fdopener")]) for _ in range(4)]
    opener = sleepers[0]
    toucher = children.start([compile_c(TOUCHER, name="toucher"), "2"])
    grower = python_child_growing(children)
    pids = {k.pid for k in (*sleepers, toucher, grower)}
    # and two samplers on one fake clock, one without the shortcuts
    clock = _Clock()
    fast, general = Sampler(clock=clock), Sampler(clock=clock)
    general.idle_shortcuts = False
    fast.visible = general.visible = frozenset({sleepers[1].pid})
    general_reads = []
    read = fast._read_process
    fast._read_process = lambda pid, *a: general_reads.append(pid) or read(pid, *a)
    for tick in range(14):
        if tick % 4 == 3:
            assert opener.ask("open 2") == "ok"
        if tick % 5 == 4:
            assert grower.ask("grow") == "ok"
        # (both read a still machine: every child back asleep, waiting for its next command)
        wait_until(lambda: all(_state(pid) == "S" for pid in pids))
        general_reads.clear()
        a, b = fast.sample(), general.sample()
        clock.now += 2
        # THEN every child's view is equal, field by field, tick after tick
        for pid in pids:
            assert a.by_pid(pid) == b.by_pid(pid), f"tick {tick}, PID {pid}"
    # and the idle ones took the shortcut (the general path read only what changed or was due)
    assert a.by_pid(opener.pid).sample.fd_count == b.by_pid(opener.pid).sample.fd_count > 3
    assert len(pids & set(general_reads)) < len(pids)


def _state(pid: int) -> str:
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def python_child_growing(children):
    """A Python child that adds 1 MiB to its RSS on "grow"."""
    code = ("import sys\nkeep = []\nprint('READY', flush=True)\n"
            "for line in sys.stdin:\n    keep.append(b'x' * (1 << 20))\n    print('ok', flush=True)\n")
    return children.start([sys.executable, "-c", code])


SHRINKER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
/* Touch N MiB of private anonymous memory; on a line on stdin, unmap it. */
int main(int argc, char **argv) {
    size_t n = (size_t)atoi(argv[1]) << 20;
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
    printf("READY\n"); fflush(stdout);
    char line[64];
    if (fgets(line, sizeof line, stdin)) { munmap(p, n); printf("freed\n"); fflush(stdout); }
    while (fgets(line, sizeof line, stdin)) {}
    return 0;
}
"""


def test_a_rollup_left_above_the_rss_is_read_again_at_once(children, gcc):
    """The fresh-eyes report: a process that unmapped 400 MiB kept its old PSS/USS (its rollup
    not due for a while: the spacing of costly reads) and its row showed PSS far above RSS. When
    the RSS just read is below the last rollup's PSS or USS, the rollup is read at that tick."""
    child = children.start([compile_c(SHRINKER, name="shrinker"), "64"])
    now = [1000.0]
    # Rollups spaced far apart, as for a process whose read costs much; the process off screen.
    sampler = Sampler(rollup_duty=10**9, stagger=1000, idle_stagger=1000, clock=lambda: now[0])
    first = sampler.sample()
    before = _view(first, child.pid).sample
    assert before.rollup.pss >= 64 * MiB and before.rollup.uss >= 64 * MiB
    now[0] += 2.0
    time.sleep(0.03)
    sampler.sample()
    assert sampler._rollups[before.identity].tick == first.tick  # not read again: its spacing holds
    # WHEN it lets go of the 64 MiB
    assert child.ask("free") == "freed"
    now[0] += 2.0
    snapshot = sampler.sample()
    after = _view(snapshot, child.pid).sample
    # THEN its rollup was read at this tick: PSS and USS below its RSS again, the row current
    assert after.rss_bytes < 16 * MiB
    assert after.rollup.pss <= after.rss_bytes + MiB and after.rollup.uss <= after.rss_bytes + MiB
    assert sampler._rollups[after.identity].tick == snapshot.tick
