"""malloc_trim through gdb against real C targets: the spike-and-drain case end to end, and each
dangerous case the safety recipe is there for. Every test ends with the target alive, running
(not stopped) and answering a request, or gone because it chose to exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memtop.actions import identity_of, trim
from memtop.heap import gdb
from memtop.procfs import PAGE_SIZE
from tests.actions_support import arena_address, target_binary
from tests.support import IS_ROOT, status_kb, wait_until

pytestmark = [pytest.mark.live, pytest.mark.skipif(not IS_ROOT, reason="calls into other processes with gdb: needs root")]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    """The audit log goes to a temporary XDG_STATE_HOME, never to the real one."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def audit_lines(state_home: Path) -> list[dict]:
    path = state_home / "memtop" / "actions.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def assert_alive_and_running(child) -> None:
    assert child.alive()
    assert state_of(child.pid) not in ("T", "t"), "the target was left stopped"
    assert child.ask("ping") == "pong"


def memtop_cli(*args, env_extra=None, timeout=60, user=None):
    env = dict(os.environ, **(env_extra or {}))
    argv = [sys.executable, "-m", "memtop", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_spike_and_drain_trim_releases_the_predicted_bytes(children, gcc, state_home):
    # GIVEN a target that allocated 200 MiB in 1000-byte chunks and freed all but the last one
    child = children.start([target_binary(), "200"])
    rss_before = status_kb(child.pid, "VmRSS")
    assert rss_before > 190 * 2**20
    # WHEN memtop trim runs on it
    done = memtop_cli("trim", str(child.pid), "--yes", "--json", "--timeout", "10")
    # THEN the heaps' resident memory dropped by the predicted bytes, within one page per arena
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "ok"
    predicted = doc["prediction"]["release_bytes"]
    arenas = doc["prediction"]["arenas"]
    assert predicted > 190 * 2**20
    assert abs(doc["heap_released_bytes"] - predicted) <= PAGE_SIZE * arenas
    # and RSS too, but for the few pages gdb itself touches (breakpoint copies, file pages read)
    assert abs(doc["released_bytes"] - predicted) <= 64 * PAGE_SIZE
    assert status_kb(child.pid, "VmRSS") < rss_before - 190 * 2**20  # an independent read agrees
    assert doc["stopped_ms"] > 0 and doc["malloc_trim_returned"] == 1
    # and the target keeps running and answers a request afterwards
    assert_alive_and_running(child)
    assert child.ask("alloc 1") == "allocated"
    # and one audit line says what happened
    (line,) = audit_lines(state_home)
    assert line["action"] == "trim" and line["target"]["pid"] == child.pid
    assert line["result"]["status"] == "ok" and line["prediction"]["release_bytes"] == predicted
    assert line["user"] == "root" and line["duration_s"] > 0


def test_lock_held_by_another_thread_for_3s_trim_waits_then_completes(children, gcc):
    # GIVEN a thread holding its arena's mutex for 3 s
    child = children.start([target_binary(), "16", "arena"])
    assert child.ask("hold 3") == "holding"
    identity = identity_of(child.pid)
    prediction = trim.predict(identity)
    assert arena_address(child.ready_line) in prediction.mutex_addresses
    # WHEN trimming with a 6 s timeout
    started = time.monotonic()
    result = trim.trim(identity, timeout=6, prediction=prediction)
    # THEN memtop waited for the lock without stopping the target, then trimmed
    assert result.status == "ok", result.message
    assert time.monotonic() - started >= 2.0
    assert result.stopped_s is not None and result.stopped_s < 2.0  # it waited read-only, not attached
    assert_alive_and_running(child)


def test_lock_held_longer_than_the_timeout_is_refused_cleanly(children, gcc):
    child = children.start([target_binary(), "16", "arena"])
    assert child.ask("hold 3") == "holding"
    result = trim.trim(identity_of(child.pid), timeout=0.5)
    assert result.status == "refused"
    assert "lock" in result.message and "nothing was done" in result.message
    assert result.stopped_s is None  # never attached
    assert_alive_and_running(child)


def test_calling_thread_holding_the_lock_is_refused_by_the_checks(children, gcc):
    # GIVEN the main thread (parked in read) holds an arena mutex itself
    child = children.start([target_binary(), "16", "arena"])
    assert child.ask("selflock") == "locked"
    # WHEN trimming through the whole recipe THEN the mutex check refuses: nothing is called
    result = trim.trim(identity_of(child.pid), timeout=0.5)
    assert result.status == "refused" and "lock" in result.message
    assert child.ask("unlock") == "unlocked"
    assert_alive_and_running(child)


def test_watchdog_recovers_a_call_deadlocked_on_its_own_thread(children, gcc):
    # GIVEN the checks are defeated (no arena list given), the call goes to the parked main
    # thread, which holds the arena mutex malloc_trim will wait for: a deadlock on itself
    child = children.start([target_binary(), "16", "arena"])
    assert child.ask("selflock") == "locked"
    wait_until(lambda: child.pid in gdb.parked_threads(child.pid))  # back in read(2)
    identity = identity_of(child.pid)
    stopped = gdb.open_session(identity, mutex_addresses=[], timeout=5)
    assert stopped.calling_thread.tid == child.pid
    # WHEN the call does not return within 1 s
    with pytest.raises(gdb.CallFailed) as failure:
        try:
            stopped.session.call(trim.TRIM_EXPRESSION, stopped.calling_thread, 1.0)
        finally:
            notes = gdb.finish_session(stopped.session)
    # THEN the watchdog's tgkill(SIGINT) made gdb unwind the call, and the process recovered
    assert failure.value.interrupted
    assert any("tgkill" in note for note in notes)
    assert stopped.session.stray_gdb_pid is None
    assert child.ask("unlock") == "unlocked"
    assert_alive_and_running(child)
    assert child.ask("alloc 1") == "allocated"  # its heap still works


def test_thread_inside_malloc_is_refused_by_the_stack_check(children, gcc):
    # GIVEN the arena thread blocked inside malloc (on the lock the main thread holds), and the
    # mutex check defeated (no arena list), so only the stack check stands in the way
    child = children.start([target_binary(), "4", "arena"])
    assert child.ask("selflock") == "locked"
    assert child.ask("amalloc") == "requested"
    arena_tid = next(int(t) for t in os.listdir(f"/proc/{child.pid}/task") if int(t) != child.pid)
    wait_until(lambda: arena_tid in gdb.parked_threads(child.pid))
    # WHEN a session is opened THEN it refuses, naming the allocator frame, and lets go
    with pytest.raises(gdb.Refused, match=r"thread \d+ of PID \d+ is inside the allocator \((malloc|__libc_malloc)"):
        gdb.open_session(identity_of(child.pid), mutex_addresses=[], timeout=5)
    assert child.ask("unlock") == "unlocked"  # the blocked malloc completes
    assert_alive_and_running(child)


def test_target_exiting_during_attach_is_reported(children, gcc):
    # GIVEN a target that is killed the moment a tracer appears (gdb's attach)
    child = children.start([target_binary(), "4", "arena"])
    traced = threading.Event()

    def kill_when_traced():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and child.alive():
            with open(f"/proc/{child.pid}/status") as f:
                if "TracerPid:\t0\n" not in f.read():
                    os.kill(child.pid, signal.SIGKILL)
                    traced.set()
                    return
            time.sleep(0.0005)

    killer = threading.Thread(target=kill_when_traced, daemon=True)
    killer.start()
    # WHEN memtop trims it THEN it says the process is gone, and nothing hangs
    result = trim.trim(identity_of(child.pid), timeout=5)
    killer.join(5)
    assert traced.is_set()
    assert result.status == "gone", (result.status, result.message)
    assert "exited" in result.message
    assert wait_until(lambda: child.proc.poll() is not None, timeout=5)


def test_already_stopped_target_is_refused_and_left_as_it_was(children, gcc):
    child = children.start([target_binary(), "4"])
    os.kill(child.pid, signal.SIGSTOP)
    wait_until(lambda: state_of(child.pid) == "T")
    result = trim.trim(identity_of(child.pid), timeout=2)
    assert result.status == "refused" and "stopped" in result.message and "kill -CONT" in result.message
    assert state_of(child.pid) == "T"  # memtop does not resume what someone else stopped
    os.kill(child.pid, signal.SIGCONT)
    assert_alive_and_running(child)


def test_static_target_is_refused_with_the_reason(children, gcc):
    child = children.start([target_binary(static=True), "4"])
    result = trim.trim(identity_of(child.pid), timeout=2)
    assert result.status == "refused"
    assert "static" in result.message
    assert_alive_and_running(child)


def test_reused_pid_is_refused(children, gcc):
    child = children.start([target_binary(), "4"])
    identity = identity_of(child.pid)
    stale = type(identity)(identity.pid, identity.start_ticks - 1)  # the PID's previous owner
    result = trim.trim(stale, timeout=2)
    assert result.status == "gone" and "reused" in result.message
    assert_alive_and_running(child)


def test_gdb_missing_gives_a_clear_message(children, gcc, state_home):
    child = children.start([target_binary(), "8"])
    # No gdb on PATH, none where MEMTOP_GDB says (memtop would look beside its Python otherwise).
    done = memtop_cli("trim", str(child.pid), "--yes", env_extra={"PATH": "/nonexistent", "MEMTOP_GDB": "/nonexistent/gdb"})
    assert done.returncode == 1
    assert "gdb is not installed" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert_alive_and_running(child)
    assert audit_lines(state_home)[0]["result"]["status"] == "unavailable"


def test_cli_refuses_read_only_missing_pid_and_non_root(children, gcc):
    child = children.start([target_binary(), "4"])
    ro = memtop_cli("--read-only", "trim", str(child.pid), "--yes")
    assert ro.returncode == 1 and "read-only" in ro.stderr
    gone = memtop_cli("trim", "999999999", "--yes")
    assert gone.returncode == 1 and "no process with PID" in gone.stderr
    nobody = memtop_cli("trim", str(child.pid), "--yes", user=65534)
    assert nobody.returncode == 1 and "needs root" in nobody.stderr and "Traceback" not in nobody.stderr
    assert_alive_and_running(child)


def test_fetch_malloc_info_writes_nothing_to_the_target_streams(children, gcc):
    child = children.start([target_binary(), "8", "arena"])
    identity = identity_of(child.pid)
    assert len(gdb.arena_mutexes(child.pid)) == 2  # found read-only: main arena + the thread's
    xml = gdb.fetch_malloc_info(identity, 5)
    assert xml.startswith('<malloc version="1">') and xml.rstrip().endswith("</malloc>")
    assert xml.count("<heap nr=") == 2  # main arena + the arena thread's
    assert_alive_and_running(child)
    # Nothing but the protocol's answers reached the target's stdout, nothing its stderr.
    child.proc.stdin.close()
    assert child.proc.stdout.read() == b""
    assert child.proc.stderr.read() == b""


CHURN_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    static void *slots[4096];
    unsigned x = 1;
    printf("READY\n");
    fflush(stdout);
    for (;;) { /* single-threaded: glibc skips the arena lock, so only the stack check protects it */
        x = x * 1103515245u + 12345u;
        unsigned i = (x >> 8) % 4096;
        free(slots[i]);
        size_t n = 16 + (x >> 20) % 4000;
        slots[i] = malloc(n);
        memset(slots[i], 1, n < 64 ? n : 64);
    }
}
"""


def test_single_threaded_program_busy_in_malloc_is_never_corrupted(children, gcc):
    # GIVEN a single-threaded program that spends its life in malloc and free
    from tests.support import compile_c

    child = children.start([compile_c(CHURN_SOURCE, name="actions-churn")])
    identity = identity_of(child.pid)
    # WHEN it is trimmed twice
    outcomes = [trim.trim(identity, timeout=3, log=False) for _ in range(2)]
    # THEN each trim either ran between two allocator calls or was refused, retrying first
    for result in outcomes:
        assert result.status in ("ok", "refused"), (result.status, result.message)
        if result.status == "refused":
            assert "inside the allocator" in result.message and "tried 3 times" in result.message
    # and the heap is intact: glibc's own checks would abort a corrupted heap within moments
    time.sleep(1.0)
    assert child.alive() and state_of(child.pid) in ("R", "S")


def test_follow_up_says_when_the_memory_came_straight_back(children, gcc):
    child = children.start([target_binary(), "64"])
    result = trim.trim(identity_of(child.pid), timeout=5, log=False)
    assert result.ok and result.released_bytes > 60 * 2**20
    assert child.ask("alloc 64") == "allocated"  # the program needs the memory again at once
    points = list(trim.follow(result, duration_s=1.5, interval_s=0.5))
    summary = trim.summarize_follow(result, points)
    assert len(points) >= 2 and points[-1].rss_bytes > result.rss_after + 60 * 2**20
    assert summary.came_back and "came straight back" in summary.finding
    assert summary.minflt_per_s is not None and summary.minflt_per_s > 0


def test_memtop_refuses_to_trim_itself():
    result = trim.trim(identity_of(os.getpid()), timeout=2, log=False)
    assert result.status == "refused" and "this memtop" in result.message


def _proc_copy(pid: int, root: Path, unreadable: str | None = None) -> Path:
    """A proc tree for ``pid`` made of this machine's real stat/status/maps text; ``unreadable``
    is chmod 000 (memtop then runs without CAP_DAC_OVERRIDE, as a root the kernel refuses)."""
    d = root / str(pid)
    d.mkdir(parents=True)
    for name in ("stat", "status", "maps"):
        (d / name).write_bytes(Path(f"/proc/{pid}/{name}").read_bytes())
    if unreadable:
        (d / unreadable).chmod(0)
    return root


def test_maps_refused_even_to_root_is_a_one_line_refusal(children, gcc, tmp_path, state_home):
    # GIVEN a process whose maps the kernel refuses to root (as /proc/1/maps in a container):
    # a copy of a real target's proc files, maps unreadable, memtop without DAC override
    child = children.start([target_binary(), "4"])
    root = _proc_copy(child.pid, tmp_path / "proc", unreadable="maps")
    argv = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search",
            sys.executable, "-m", "memtop", "--proc", str(root), "trim", str(child.pid)]
    # WHEN trim runs, asked for confirmation (with n) or not
    for extra in ([], ["--yes"]):
        done = subprocess.run(argv + extra, cwd=REPO, capture_output=True, text=True, timeout=60, input="n\n",
                              env=dict(os.environ))
        # THEN one line says why, exit 1, no traceback
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        out = (done.stdout + done.stderr).strip()
        assert len(out.splitlines()) == 1 and "maps" in out and "refused" in out, out
    assert_alive_and_running(child)


def test_unreadable_proc_files_become_refusals_in_predict(children, gcc, tmp_path):
    # GIVEN proc files that fail with an error read_bytes does not translate (EISDIR)
    child = children.start([target_binary(), "4"])
    root = _proc_copy(child.pid, tmp_path / "proc")
    (root / str(child.pid) / "maps").unlink()
    (root / str(child.pid) / "maps").mkdir()
    identity = identity_of(child.pid, root)
    # WHEN memtop predicts and trims THEN it refuses with the reason, never raises
    prediction = trim.predict(identity, root)
    assert prediction.refusal and "maps" in prediction.refusal
    result = trim.trim(identity, timeout=2, root=root, log=False)
    assert result.status == "refused"
    assert_alive_and_running(child)


def test_cli_says_plainly_when_nothing_would_be_released(children, gcc):
    # GIVEN a target trimmed a moment ago
    child = children.start([target_binary(), "16"])
    assert trim.trim(identity_of(child.pid), timeout=5, log=False).ok
    # WHEN memtop trim runs on it again THEN the prediction says nothing would be released
    done = memtop_cli("trim", str(child.pid), "--yes", "--follow", "0")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert "nothing would be released" in first and "predicts RSS will drop" not in first
    assert "given back already" in first and "fragmentation" not in first  # its free chunks span pages
    assert_alive_and_running(child)


FRAGMENTED_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* 200,000 chunks of 1,000 bytes, every other one freed: ~98 MiB free in holes between chunks
   in use, no whole free page among them (malloc_trim cannot give any back). */
int main(void) {
    enum { N = 200000 };
    static char *keep[N];
    for (int i = 0; i < N; i++) { keep[i] = malloc(1000); memset(keep[i], 1, 1000); }
    for (int i = 0; i < N; i += 2) { free(keep[i]); keep[i] = NULL; }
    printf("READY\n"); fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) { printf("pong\n"); fflush(stdout); }  /* answers a ping */
    return 0;
}
"""


def test_nothing_released_from_a_fragmented_heap_says_why(children, gcc):
    """A new user's trial: on a heap whose free memory is all in holes, 'nothing would be
    released (e.g. right after a trim)' gave the wrong reason; it says fragmentation now."""
    from tests.support import compile_c

    child = children.start([compile_c(FRAGMENTED_SOURCE, name="actions-fragmented")])
    prediction = trim.predict(identity_of(child.pid))
    assert prediction.refusal is None and prediction.release_bytes == 0
    assert "in holes between chunks in use" in prediction.reason and "fragmentation" in prediction.reason
    done = memtop_cli("trim", str(child.pid), "--yes", "--follow", "0")
    first = done.stdout.splitlines()[0]
    assert "nothing would be released" in first and "fragmentation" in first and "right after a trim" not in first
    assert_alive_and_running(child)
