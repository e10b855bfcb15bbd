"""Live: ``memtop guard`` against real processes in a real memory cgroup (issue 21).

Every test makes its own cgroup (tests/guard_support.py: a v1 memory cgroup with a limit, and a
v2 cgroup of the same name whose memory.pressure counts only its processes) and scopes the guard
to it with --allow-cgroup, so the guard never looks at another process on this machine. The
cgroups, their processes and the guard are removed even when a test fails.

Pressure: the first test drives real memory pressure (a reader thrashing a file 4x the cgroup's
limit), and the guard's real PSI trigger on the cgroup's memory.pressure wakes it. The others
need many precisely timed episodes, so they use the guard's documented test hook
(--inject-events-fd: each byte written is one trigger event) on a cgroup that is otherwise idle.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from memtop.procfs import PAGE_SIZE
from tests.actions_support import target_binary
from tests.guard_support import GuardProcess, PressureCgroup, status_bytes
from tests.pressure_support import THRASH_CODE, make_cold_file, v1_memory_available
from tests.support import IS_ROOT, compile_c, wait_until

pytestmark = [pytest.mark.live, pytest.mark.skipif(not IS_ROOT, reason="the guard walks and trims other processes: root")]

MIB = 1 << 20
TRIGGER = "some 100000 2000000"  # 2 s windows: what the kernel accepts without CAP_SYS_RESOURCE


@pytest.fixture
def cgroup_factory():
    reason = v1_memory_available()
    if reason:
        pytest.skip(reason)
    made: list[PressureCgroup] = []

    def make(limit: int = 1 << 30) -> PressureCgroup:
        cg = PressureCgroup(limit)
        made.append(cg)
        return cg

    yield make
    for cg in made:
        cg.close()
    for cg in made:
        assert not cg.v1.path.exists() and (cg.v2_dir is None or not cg.v2_dir.exists())


@pytest.fixture
def guards():
    started: list[GuardProcess] = []

    def start(*args, **kw) -> GuardProcess:
        g = GuardProcess(*args, **kw)
        started.append(g)
        return g

    yield start
    for g in started:
        g.close()


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


def audit_lines(state_home: Path) -> list[dict]:
    path = state_home / "memtop" / "actions.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def scoped(cg: PressureCgroup, *extra: str) -> list[str]:
    args = ["--allow-cgroup", cg.memory_path, "--trigger", TRIGGER]
    if cg.pressure_cgroup:
        args += ["--pressure-cgroup", cg.pressure_cgroup]
    return [*args, *extra]


def anon(child) -> int:
    return status_bytes(child.pid, "RssAnon")


def state_and_tracer(pid: int) -> tuple[str, int]:
    with open(f"/proc/{pid}/status", "rb") as f:  # bytes: a name need not be UTF-8
        fields = dict(line.split(b":", 1) for line in f if b":" in line)
    return fields[b"State"].split()[0].decode(), int(fields[b"TracerPid"])


def assert_running_untraced(child) -> None:
    assert child.alive()
    assert state_and_tracer(child.pid) in (("S", 0), ("R", 0))
    assert child.ask("ping") == "pong"


def choices(guard: GuardProcess) -> list[int]:
    return [e["pid"] for e in guard.events if e.get("event") in ("trim", "would-trim")]


# --- real pressure ------------------------------------------------------------------------------


def test_real_pressure_dry_run_logs_the_choices_act_makes_them_and_stops_when_pressure_is_gone(
        cgroup_factory, guards, state_home, tmp_path, gcc):
    # GIVEN a 128 MiB memory cgroup holding two processes that spiked and kept their freed heap
    # (48 and 24 MiB free-but-kept), and a reader that thrashes a file 4x the limit in it
    cg = cgroup_factory(128 * MIB)
    big = cg.start([target_binary(), "48"])
    small = cg.start([target_binary(), "24"])
    anon_before = {big.pid: anon(big), small.pid: anon(small)}
    assert anon_before[big.pid] > 46 * MIB and anon_before[small.pid] > 22 * MIB
    cold = make_cold_file(tmp_path / "cold", 512 * MIB)
    thrash = cg.start_python(THRASH_CODE, str(cold))

    # WHEN the guard runs in dry run (the default) under that real pressure
    dry = guards(*scoped(cg, "--min-release", "16M"))
    dry.wait_for(lambda events: len([e for e in events if e["event"] == "would-trim"]) >= 2, timeout=90)
    # THEN real stall woke it (at least the trigger's 100 ms within a window, in the cgroup's own
    # memory.pressure), and it chose the largest predicted release first, then the next
    pressure = dry.of("pressure")[0]
    assert pressure["read_stall_us"] >= 100_000 and pressure["injected_events"] == 0
    assert choices(dry)[:2] == [big.pid, small.pid]
    first = dry.of("would-trim")[0]
    assert abs(first["predicted_bytes"] - 48 * MIB) < 2 * MIB
    assert dry.stop() == 0
    # AND it touched nothing: anonymous RSS exactly as before, no process stopped or traced, no audit line
    assert {big.pid: anon(big), small.pid: anon(small)} == anon_before
    assert_running_untraced(big)
    assert_running_untraced(small)
    assert audit_lines(state_home) == []

    # WHEN the same guard acts, on the same processes, under the same pressure
    act = guards(*scoped(cg, "--min-release", "16M", "--act"))
    act.wait_for(lambda events: len([e for e in events if e["event"] == "trim"]) >= 2, timeout=90)
    # THEN it made the same choices, in the same order
    assert choices(act)[:2] == choices(dry)[:2]
    trims = act.of("trim")
    for event, child in zip(trims, (big, small)):
        assert event["status"] == "ok", event
        # and each released what its walk predicted: the heap pages to the page, RSS but for the few
        # pages gdb touches (as `memtop trim` is tested)
        assert abs(event["heap_released_bytes"] - event["predicted_bytes"]) <= PAGE_SIZE
        assert abs(event["released_bytes"] - event["predicted_bytes"]) <= 64 * PAGE_SIZE
        assert anon(child) < anon_before[child.pid] - event["predicted_bytes"] + 64 * PAGE_SIZE
        assert_running_untraced(child)
    # AND each trim is in the audit log as the TUI writes it, with the pressure before and after
    lines = audit_lines(state_home)
    assert [line["action"] for line in lines][:3] == ["guard", "trim", "trim"]
    for line, child in zip(lines[1:3], (big, small)):
        assert line["target"]["pid"] == child.pid and line["result"]["status"] == "ok"
        guard = line["guard"]
        assert guard["dry_run"] is False and guard["pressure_file"].endswith("memory.pressure")
        assert guard["pressure_before"]["some_total_us"] <= guard["pressure_after"]["some_total_us"]
        assert guard["stall_during_us"] == (guard["pressure_after"]["some_total_us"]
                                           - guard["pressure_before"]["some_total_us"])

    # WHEN the pressure goes away
    thrash.close()
    act.wait_event("calm", timeout=60)
    # AND a third process spikes and keeps 40 MiB: the largest candidate there is, and in no cooldown
    late = cg.start([target_binary(), "40"])
    late_anon = anon(late)
    time.sleep(12)  # six trigger windows, and one idle refresh of the ranking (10 s)
    # THEN the guard did not act on it: no pressure, no action
    assert late.pid not in choices(act), "\n".join(act.raw[-8:])
    assert anon(late) == late_anon
    assert len(act.of("pressure")) == len(act.of("calm"))  # every episode ended
    assert act.stop() == 0
    assert [e["event"] for e in act.events][-1] == "stop"
    assert audit_lines(state_home)[-1]["result"]["event"] == "stop"
    cold.unlink()


# --- limits (test hook: injected trigger events) ---------------------------------------------------


def test_cooldown_and_stops_per_minute_hold_and_metrics_count_them(cgroup_factory, guards, state_home, tmp_path, gcc):
    # GIVEN three processes with 80, 50 and 40 MiB of free-but-kept heap, in a quiet cgroup
    cg = cgroup_factory()
    a = cg.start([target_binary(), "80"])
    b = cg.start([target_binary(), "50"])
    c = cg.start([target_binary(), "40"])
    c_anon = anon(c)
    metrics_file = tmp_path / "metrics" / "guard.prom"
    metrics_file.parent.mkdir(mode=0o755)
    # AND a guard that may stop 2 processes a minute, never the same one twice in 300 s
    g = guards(*scoped(cg, "--act", "--min-release", "16M", "--max-stops-per-minute", "2", "--cooldown", "300",
                       "--metrics-listen", "127.0.0.1:0", "--metrics-file", str(metrics_file)), inject=True)
    port = g.wait_event("metrics")[0]["port"]
    g.wait_event("start")

    # WHEN pressure comes: it trims the largest
    g.inject()
    (first,) = g.wait_event("trim")
    assert first["pid"] == a.pid and first["status"] == "ok"
    # WHEN that process spikes again (80 MiB free-kept again: the largest candidate by far) and pressure lasts
    assert a.ask("spike 80", timeout=60) == "spiked"
    a_anon = anon(a)
    g.inject()
    second = g.wait_event("trim", 2)[1]
    # THEN it is passed over for its cooldown: the next one is trimmed instead
    assert second["pid"] == b.pid and second["status"] == "ok"
    # WHEN pressure lasts on: the third would be next, but 2 stops were made this minute
    g.inject()
    limit = g.wait_event("limit")[0]
    assert limit["pid"] == c.pid and limit["next_slot_s"] > 0
    g.inject()
    time.sleep(3)
    # THEN nothing more was trimmed: two stops, one per process; the others are as they were
    assert [e["pid"] for e in g.of("trim")] == [a.pid, b.pid]
    assert anon(c) == c_anon and anon(a) == a_anon
    trims = [line for line in audit_lines(state_home) if line["action"] == "trim"]
    assert [line["target"]["pid"] for line in trims] == [a.pid, b.pid]

    # AND the metrics say so, served and in the textfile
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = _samples(body)
    assert samples['memtop_guard_actions_total{action="trim",outcome="ok"}'] == 2
    released = first["released_bytes"] + second["released_bytes"]
    assert samples['memtop_guard_released_bytes_total{action="trim"}'] == released
    assert samples["memtop_guard_predicted_release_bytes_total"] == first["predicted_bytes"] + second["predicted_bytes"]
    assert samples["memtop_guard_stop_limit_hits_total"] >= 1
    assert samples['memtop_guard_pressure_events_total{source="injected"}'] >= 4
    assert samples["memtop_guard_dry_run"] == 0 and samples["memtop_guard_process_stopped_seconds_total"] > 0
    assert samples["memtop_guard_heap_walks_total"] >= 3
    head = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="HEAD"), timeout=10)
    assert head.status == 200 and head.read() == b""
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
    assert e.value.code == 404
    assert g.stop() == 0
    text = _samples(metrics_file.read_text())
    assert text['memtop_guard_actions_total{action="trim",outcome="ok"}'] == 2
    assert oct(metrics_file.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in metrics_file.parent.iterdir()] == ["guard.prom"]  # no temporary file left


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_deny_rules_are_respected(cgroup_factory, guards, state_home, tmp_path, gcc):
    # GIVEN the largest process named by a deny rule, and a smaller one that is allowed
    binary = target_binary()
    denied_bin = tmp_path / "gd-keepme"
    allowed_bin = tmp_path / "gd-trimme"
    shutil.copy(binary, denied_bin)
    shutil.copy(binary, allowed_bin)
    cg = cgroup_factory()
    denied = cg.start([denied_bin, "90"])
    allowed = cg.start([allowed_bin, "30"])
    denied_anon = anon(denied)
    g = guards(*scoped(cg, "--act", "--min-release", "16M", "--deny-name", "gd-keep*"), inject=True)
    g.wait_event("start")
    # WHEN pressure comes, and lasts
    g.inject()
    (event,) = g.wait_event("trim")
    g.inject()
    g.wait_event("nothing")
    # THEN only the allowed one was trimmed; the denied one, though larger, never
    assert event["pid"] == allowed.pid and event["status"] == "ok"
    assert choices(g) == [allowed.pid]
    assert anon(denied) == denied_anon
    assert_running_untraced(denied)
    assert g.stop() == 0
    assert [line["target"]["pid"] for line in audit_lines(state_home) if line["action"] == "trim"] == [allowed.pid]


# malloc, then a chunk's size field overwritten (as tests/live/test_trim_heap_safety.py), on a heap
# large enough to be worth a stop: 40 MB allocated, every other chunk freed.
BIG_CORRUPT = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static char inbuf[256], outbuf[256];
static char *keep[8000];
int main(void) {
    setvbuf(stdout, outbuf, _IOLBF, sizeof outbuf);
    setvbuf(stdin, inbuf, _IOLBF, sizeof inbuf);
    for (int i = 0; i < 8000; i++) { keep[i] = malloc(5000); memset(keep[i], i, 5000); }
    for (int i = 0; i < 8000; i += 2) free(keep[i]);
    ((size_t *)keep[4001])[-1] = 0x1234560;   /* a chunk header overwritten */
    printf("READY\n");
    char line[64];
    while (fgets(line, sizeof line, stdin)) printf("pong\n");
    return 0;
}
"""

# The main thread exits (pthread_exit): the process is a zombie leader, while a thread keeps 48 MiB
# of free-but-kept heap in its arena and answers on stdin.
ZOMBIE_LEADER = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static void *body(void *unused) {
    size_t n = 48UL * 1024 * 1024 / 1000;
    char **v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) { v[i] = malloc(1000); memset(v[i], 1, 1000); }
    for (size_t i = 0; i + 1 < n; i++) free(v[i]);
    printf("READY\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) { printf("pong\n"); fflush(stdout); }
    return NULL;
}
int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, body, NULL);
    pthread_exit(NULL);
}
"""


def test_a_corrupt_heap_and_a_zombie_are_never_touched(cgroup_factory, guards, state_home, gcc):
    # GIVEN a process whose heap memtop calls corrupt (the largest), a zombie leader whose live thread
    # keeps 48 MiB of freed heap, and a sound process with 24 MiB free-kept
    cg = cgroup_factory()
    corrupt = cg.start([compile_c(BIG_CORRUPT, name="guard_corrupt")])
    zombie = cg.start([compile_c(ZOMBIE_LEADER, name="guard_zombie")])
    sound = cg.start([target_binary(), "24"])
    wait_until(lambda: state_and_tracer(zombie.pid)[0] == "Z", timeout=10)
    assert anon(corrupt) > 30 * MIB
    g = guards(*scoped(cg, "--act", "--min-release", "16M"), inject=True)
    g.wait_event("start")
    # WHEN pressure comes and lasts
    g.inject()
    (event,) = g.wait_event("trim")
    g.inject()
    nothing = g.wait_event("nothing")[0]
    # THEN only the sound process was trimmed; the corrupt heap was refused by trim's walk (never
    # attached to), and the zombie was never a candidate
    assert event["pid"] == sound.pid and event["status"] == "ok"
    assert choices(g) == [sound.pid]
    assert "1 refused by trim" in nothing["reasons"][0]
    assert_running_untraced(corrupt)
    assert state_and_tracer(zombie.pid) == ("Z", 0)
    assert zombie.ask("ping") == "pong"  # its thread runs on, untouched
    assert g.stop() == 0
    pids = [line["target"]["pid"] for line in audit_lines(state_home) if line["action"] == "trim"]
    assert pids == [sound.pid]


def test_evict_pass_drops_the_configured_files_and_never_follows_a_link(cgroup_factory, guards, state_home, tmp_path):
    from memtop.procfs.cachestat import file_cache_stat

    # GIVEN a directory of one-pass logs, cached, and a symbolic link in it to another cached file
    logs = tmp_path / "logs"
    logs.mkdir()
    elsewhere = tmp_path / "precious.db"
    for path in (logs / "a.log", logs / "b.log", elsewhere):
        with open(path, "wb") as f:
            f.write(os.urandom(4 * MIB))
            f.flush()
            os.fsync(f.fileno())  # clean pages: DONTNEED drops only clean pages
    os.symlink(elsewhere, logs / "c.log")

    def cached(path):
        return file_cache_stat(path).cached_bytes

    assert cached(logs / "a.log") == 4 * MIB and cached(elsewhere) == 4 * MIB
    cg = cgroup_factory()  # no process: no trim candidate, so the guard goes on to evict
    # WHEN a dry-run guard sees pressure
    dry = guards(*scoped(cg, "--evict", f"{logs}/*.log"), inject=True)
    dry.wait_event("start")
    dry.inject()
    would = dry.wait_event("would-evict")[0]
    assert dry.stop() == 0
    # THEN it says what it would drop, and drops nothing
    assert would["files"] == 2 and would["cached_bytes"] == 8 * MIB
    assert cached(logs / "a.log") == 4 * MIB
    # WHEN a guard that acts sees pressure
    g = guards(*scoped(cg, "--act", "--evict", f"{logs}/*.log"), inject=True)
    g.wait_event("start")
    g.inject()
    event = g.wait_event("evict")[0]
    assert g.stop() == 0
    # THEN the two logs left the page cache; the file behind the link stayed (never followed)
    assert event["files"] == 2 and event["dropped_bytes"] == 8 * MIB
    assert any("symbolic link" in s for s in event["skipped"])
    assert cached(logs / "a.log") == 0 and cached(logs / "b.log") == 0
    assert cached(elsewhere) == 4 * MIB
    (line,) = [line for line in audit_lines(state_home) if line["action"] == "evict"]
    assert line["result"]["dropped_bytes"] == 8 * MIB and line["guard"]["pressure_before"] is not None
    assert sorted(f["path"] for f in line["result"]["per_file"]) == [str(logs / "a.log"), str(logs / "b.log")]


def test_sigterm_during_a_trim_lets_it_finish_then_stops(cgroup_factory, guards, state_home, gcc):
    from tests.actions_support import arena_address

    # GIVEN a process with 64 MiB free-kept whose other arena's lock is held for 5 s
    cg = cgroup_factory()
    child = cg.start([target_binary(), "64", "arena"])
    assert arena_address(child.ready_line)
    g = guards(*scoped(cg, "--act", "--min-release", "16M", "--timeout", "15", "--no-idle-walks"), inject=True)
    g.wait_event("start")
    assert child.ask("hold 5") == "holding"
    held_at = time.monotonic()
    # WHEN pressure comes (the trim waits for the lock), and SIGTERM arrives while it waits
    g.inject()
    time.sleep(2.5)
    assert g.proc.poll() is None and not g.of("trim")
    os.kill(g.proc.pid, signal.SIGTERM)
    rc = g.proc.wait(60)
    stopped_at = time.monotonic()
    g.stop()
    # THEN the trim finished (after the lock was released) before the guard stopped, cleanly
    assert rc == 0
    (event,) = g.of("trim")
    assert event["status"] == "ok", event
    assert stopped_at - held_at >= 5
    assert [e["event"] for e in g.events][-2:] == ["calm", "stop"]
    assert_running_untraced(child)


def test_an_unsafe_audit_log_stops_the_guard_from_acting(cgroup_factory, guards, tmp_path, monkeypatch):
    # GIVEN a state directory others can write (the audit log would not be safe there)
    state = tmp_path / "shared-state"
    state.mkdir()
    os.chmod(state, 0o777)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    cg = cgroup_factory()
    # WHEN the guard is asked to act
    g = guards(*scoped(cg, "--act"))
    rc = g.proc.wait(60)
    err = g.proc.stderr.read().decode()
    # THEN it refuses to start, in one line, and writes nothing there
    assert rc == 1
    assert "does not act without its audit log" in err and "writable by" in err and len(err.splitlines()) == 1
    assert list(state.iterdir()) == []
    # AND a dry run, which writes no audit line, runs
    dry = guards(*scoped(cg, "--duration", "1"))
    assert dry.proc.wait(60) == 0


def test_hostile_process_names_reach_neither_the_terminal_nor_the_json_raw(cgroup_factory, state_home, tmp_path, gcc):
    import subprocess
    import sys

    # GIVEN a process whose name (comm) carries a terminal escape and a byte that is not UTF-8
    name = b"g\x1b]0;X\x07\xff"
    directory = tmp_path / "bin"
    directory.mkdir()
    binary = os.path.join(os.fsencode(directory), name)
    shutil.copy(target_binary(), binary)
    cg = cgroup_factory()
    child = cg.start([os.fsdecode(binary), "40"])
    with open(f"/proc/{child.pid}/comm", "rb") as f:
        assert f.read().rstrip(b"\n") == name
    for mode in ("text", "json"):
        read_fd, write_fd = os.pipe()
        argv = [sys.executable, "-m", "memtop", "guard", "--act", "--min-release", "16M", "--cooldown", "1",
                "--duration", "4", "--inject-events-fd", str(read_fd), *scoped(cg)] + (["--json"] if mode == "json" else [])
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(read_fd,),
                                cwd=Path(__file__).resolve().parents[2])
        os.close(read_fd)
        time.sleep(1)
        os.write(write_fd, b"x")
        out, err = proc.communicate(timeout=60)
        os.close(write_fd)
        assert proc.returncode == 0, err
        # WHEN the guard trims it and logs it
        assert b"\x1b" not in out and b"\x07" not in out and b"\xff" not in out
        if mode == "text":
            assert b"trimmed PID" in out and b"g\\e]0;X\\a\\xff" in out
        else:
            trims = [json.loads(line) for line in out.splitlines() if b'"event":"trim"' in line]
            assert trims and trims[0]["comm"] == list(name)  # exact, as the list of its bytes
        assert_running_untraced(child)
        assert child.ask("spike 40", timeout=60) == "spiked"
    # AND the audit log is valid JSON for a strict parser, the name exact
    for line in (state_home / "memtop" / "actions.log").read_bytes().splitlines():
        record = json.loads(line)
        assert "\\udc" not in line.decode()
        if record["action"] == "trim":
            assert record["target"]["comm"] == list(name)


def test_the_guard_stops_with_one_line_when_its_pressure_cgroup_is_removed(cgroup_factory, guards):
    cg = cgroup_factory()
    if cg.v2_dir is None:
        pytest.skip("no cgroup2 hierarchy here: no cgroup memory.pressure to watch")
    g = guards("--pressure-cgroup", cg.pressure_cgroup, "--trigger", TRIGGER)
    g.wait_event("start")
    cg.v2_dir.rmdir()  # nothing runs in it
    assert g.proc.wait(30) == 1
    (error,) = g.wait_event("error")
    assert "memory.pressure" in error["error"]
    assert [e["event"] for e in g.events][-1] == "stop"
