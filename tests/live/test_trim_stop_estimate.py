"""The stop a trim causes: estimated before, measured after, both in the trim report (issue 16
item 5: "estimated_stop_ms said 110 where the stop was 1,997 ms under load").

GIVEN real targets with 2 and 129 threads, WHEN `memtop trim --json` runs, THEN the prediction
carries the estimate, its upper figure (every retry) and its basis (threads, mappings, the call,
the load average), and the result the measured stop with its parts (attach, call, detach, gdb
windows) beside the estimate. The estimate's arithmetic is checked exactly; its accuracy is a
benchmark's business (bench/stop_estimate.py), so measured / estimated is recorded, not asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memtop.actions.trim import (
    STOP_BASE_S,
    STOP_PER_MAPPING_S,
    STOP_PER_THREAD_PER_QUEUE_S,
    STOP_PER_THREAD_S,
    TRIM_MAX_SLOWDOWN,
    TRIM_BASE_S,
    TRIM_PER_FREE_CHUNK_S,
    TRIM_PER_MIB_RELEASED_S,
    estimate_stop,
    run_queue,
)
from memtop.heap import gdb
from tests.support import IS_ROOT, compile_c

REPO = Path(__file__).resolve().parents[2]

IDLE_THREADS = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static void *idle(void *a) { (void)a; pthread_mutex_lock(&m); for (;;) pthread_cond_wait(&c, &m); return 0; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    for (int i = 0; i < n; i++) {
        pthread_t t; pthread_attr_t at;
        pthread_attr_init(&at); pthread_attr_setstacksize(&at, 65536);
        pthread_create(&t, &at, idle, 0);
    }
    size_t count = 32 * 1024; /* 32 MiB of 1000-byte blocks, 7 in 8 freed: pages to give back */
    void **all = malloc(count * sizeof *all);
    for (size_t i = 0; i < count; i++) { all[i] = malloc(1000); memset(all[i], 1, 1000); }
    for (size_t i = 0; i < count; i++) if (i % 8) free(all[i]);
    printf("READY\n"); fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) if (!strncmp(line, "ping", 4)) { printf("pong\n"); fflush(stdout); }
    return 0;
}
"""


def test_estimate_arithmetic_and_basis():
    # 2.5 runnable tasks per CPU besides memtop and the target
    queue = (2.5, "5.0 other runnable tasks on 2 CPUs")
    e = estimate_stop(65, 100 << 20, mappings=1000, free_chunks=200_000, queue=queue)
    per_thread = STOP_PER_THREAD_S + STOP_PER_THREAD_PER_QUEUE_S * 2.0
    window = 2.5 * (STOP_BASE_S + 1000 * STOP_PER_MAPPING_S) + 65 * per_thread
    call = TRIM_MAX_SLOWDOWN * (TRIM_BASE_S + 100 * TRIM_PER_MIB_RELEASED_S + 200_000 * TRIM_PER_FREE_CHUNK_S)
    assert e.seconds == pytest.approx(window + call)
    assert e.max_seconds == pytest.approx(gdb.ATTEMPTS * window + call)
    assert e.run_queue == 2.5
    assert "65 threads" in e.basis and "1000 mappings" in e.basis and "5.0 other runnable tasks on 2 CPUs" in e.basis
    assert f"{gdb.ATTEMPTS} tries" in e.basis
    # free CPUs: the costs as measured, per thread 0.9 ms
    idle = estimate_stop(65, 100 << 20, queue=(0.0, "none"))
    assert idle.seconds == pytest.approx(STOP_BASE_S + 65 * STOP_PER_THREAD_S + TRIM_BASE_S + 100 * TRIM_PER_MIB_RELEASED_S)
    # a walk made with the process stopped (no walk validated while it ran) adds its time
    walked = estimate_stop(65, 100 << 20, mappings=1000, free_chunks=200_000, stopped_walk_s=0.2, queue=queue)
    assert walked.seconds == pytest.approx(e.seconds + 2.5 * 0.2) and "stopped 500 ms" in walked.basis


def test_run_queue_from_proc_stat(tmp_path):
    # GIVEN a proc tree whose /proc/stat says 7 tasks are runnable, and a target with 2 of its 3
    # threads running (they stop with it), THEN 7 - memtop - 2 = 4 others share the CPUs
    cpus = os.cpu_count()
    stat = Path("/proc/stat").read_text()  # the real file's shape, with procs_running replaced
    lines = [line if not line.startswith("procs_running ") else "procs_running 7" for line in stat.splitlines()]
    (tmp_path / "stat").write_text("\n".join(lines) + "\n")
    for tid, state in ((100, "R"), (101, "S"), (102, "R")):
        task = tmp_path / "100" / "task" / str(tid)
        task.mkdir(parents=True)
        (task / "stat").write_text(f"{tid} (a (b) c) {state} 1 100 100 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 3 0 1\n")
    per_cpu, words = run_queue(100, tmp_path, interval=0)
    assert per_cpu == pytest.approx(4 / cpus) and words.startswith("4.0 other runnable tasks")
    assert run_queue(None, tmp_path, interval=0)[0] == pytest.approx(6 / cpus)
    (tmp_path / "stat").unlink()
    assert run_queue(100, tmp_path, interval=0) == (0.0, "runnable tasks unknown (/proc/stat unreadable)")
    # the real files read
    assert run_queue(os.getpid())[0] >= 0


@pytest.mark.live
@pytest.mark.skipif(not IS_ROOT, reason="calls into other processes with gdb: needs root")
@pytest.mark.parametrize("threads", [1, 128])
def test_trim_report_has_estimate_and_measured_stop(children, tmp_path, record_property, threads):
    binary = compile_c(IDLE_THREADS, name="idle_threads")
    child = children.start([binary, threads])
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    done = subprocess.run([sys.executable, "-m", "memtop", "trim", str(child.pid), "--yes", "--json", "--timeout", "20"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "ok"
    p = doc["prediction"]
    # the estimate, its upper figure and how it was made
    assert 0 < p["estimated_stop_ms"] <= p["estimated_stop_max_ms"]
    assert f"{threads + 1} threads" in p["stop_estimate_basis"] and "runnable task" in p["stop_estimate_basis"]
    # measured, beside the estimate: the stop and its parts
    assert doc["estimated_stop_ms"] == p["estimated_stop_ms"]
    assert doc["gdb_windows"] >= 1
    parts = doc["attach_ms"] + doc["call_ms"] + doc["detach_ms"]
    assert 0 < parts <= doc["stopped_ms"]
    record_property("stopped_ms", doc["stopped_ms"])
    record_property("estimated_stop_ms", p["estimated_stop_ms"])
    record_property("measured_over_estimated", doc["stopped_ms"] / p["estimated_stop_ms"])
    print(f"\n{threads + 1} threads: estimated {p['estimated_stop_ms']} ms (up to {p['estimated_stop_max_ms']}), "
          f"measured {doc['stopped_ms']} ms (attach {doc['attach_ms']}, call {doc['call_ms']}, "
          f"detach {doc['detach_ms']}, {doc['gdb_windows']} window(s)); {p['stop_estimate_basis']}")
    # the text report says both too
    assert child.ask("ping") == "pong"
    text = subprocess.run([sys.executable, "-m", "memtop", "trim", str(child.pid), "--yes", "--timeout", "20", "--follow", "0"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert "ms (estimated " in text.stdout, text.stdout
