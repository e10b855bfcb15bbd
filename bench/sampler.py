"""Benchmark the sampler and the idle TUI with many real processes (run by hand; never in tests).

    .venv/bin/python bench/sampler.py [--procs 1000] [--ticks 30] [--tui-seconds 60] [--warmup 5] [--rss-ticks 1000]

1. Starts N real processes (a small C program that touches 1 MiB and sleeps).
2. Sampler CPU per tick (thread CPU time, steady state, 40 rows "on screen") against a bare Python
   loop that reads stat + smaps_rollup + fd count for every process, in the same run.
3. The real TUI in tmux at the default 2 s refresh: its CPU over --tui-seconds as % of one core,
   and its RSS, from --warmup seconds after its start (5: the first minute, with its start-up
   work; 65: the steady state, once the chart's 5-minute window is a minute wide).
4. The sampler's own RSS over --rss-ticks back-to-back ticks (flat = no growth).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memtop.collect.sampler import Sampler  # noqa: E402
from tests.support import compile_c  # noqa: E402

SLEEPER = r"""
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
char *volatile kept;  /* with the pointer unused, gcc -O1 removed malloc and memset */
int main(void) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); kept = p; for (;;) pause(); }
"""
CLK = os.sysconf("SC_CLK_TCK")


def bare_loop() -> None:
    """What a naive monitor does each tick: stat + smaps_rollup + fd count for every process."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                f.read()
            with open(f"/proc/{name}/smaps_rollup", "rb") as f:
                f.read()
            os.stat(f"/proc/{name}/fd").st_size
        except OSError:
            pass


def cpu_of(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.thread_time()
        fn()
        out.append(time.thread_time() - t0)
    return out


def proc_cpu_s(pid: int, tid: int | None = None) -> float:
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def thread_cpu_s(pid: int) -> dict[int, float]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = proc_cpu_s(pid, int(tid))
        except OSError:
            pass
    return out


def rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=1000)
    ap.add_argument("--ticks", type=int, default=30)
    ap.add_argument("--tui-seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--rss-ticks", type=int, default=1000)
    args = ap.parse_args()

    binary = compile_c(SLEEPER, name="bench-sleeper")
    kids = [subprocess.Popen([binary], start_new_session=True) for _ in range(args.procs)]
    try:
        time.sleep(2)
        total = len([n for n in os.listdir("/proc") if n.isdigit()])
        print(f"processes on the machine: {total} ({args.procs} started by the benchmark)")

        sampler = Sampler()
        sampler.visible = frozenset(k.pid for k in kids[:40])
        first = cpu_of(sampler.sample, 1)[0]
        for _ in range(5):  # reach steady state (every staggered slot visited)
            sampler.sample()
        sampler_cpu = []
        loop_cpu = []
        for _ in range(args.ticks):  # interleave, so both see the same machine
            sampler_cpu += cpu_of(sampler.sample, 1)
            loop_cpu += cpu_of(bare_loop, 1)
        s_med, l_med = statistics.median(sampler_cpu), statistics.median(loop_cpu)
        print(f"first tick (reads every smaps_rollup): {first * 1000:.1f} ms CPU")
        print(f"sampler per tick, median of {args.ticks}: {s_med * 1000:.1f} ms CPU "
              f"(mean {statistics.mean(sampler_cpu) * 1000:.1f})")
        print(f"bare loop stat+smaps_rollup+fd per tick, median: {l_med * 1000:.1f} ms CPU")
        print(f"ratio sampler / loop: {s_med / l_med:.2f}x (goal <= 1.0x)")
        print(f"at a 2 s tick the sampler alone costs {s_med / 2 * 100:.2f} % of one core")

        if args.tui_seconds > 0 and shutil.which("tmux"):
            session = f"memtop-bench-{os.getpid()}"
            subprocess.run(["tmux", "new", "-d", "-s", session, "-x", "120", "-y", "40",
                            f"{sys.executable} -m memtop"], cwd=ROOT, check=True)
            try:
                time.sleep(args.warmup)  # start-up and first ticks
                pane_pid = int(subprocess.check_output(["tmux", "display", "-p", "-t", session, "#{pane_pid}"]).strip())
                c0, t0, th0 = proc_cpu_s(pane_pid), time.monotonic(), thread_cpu_s(pane_pid)
                time.sleep(args.tui_seconds)
                c1, t1, th1 = proc_cpu_s(pane_pid), time.monotonic(), thread_cpu_s(pane_pid)
                print(f"memtop TUI idle, 2 s refresh, {args.tui_seconds:.0f} s in tmux 120x40 from {args.warmup:.0f} s "
                      "after start: "
                      f"{(c1 - c0) / (t1 - t0) * 100:.2f} % of one core (goal <= 3 %), RSS {rss_mib(pane_pid):.1f} MiB")
                busy = sorted(((th1[t] - th0.get(t, 0.0), t) for t in th1), reverse=True)
                print("  per thread: " + ", ".join(
                    f"{'UI (main)' if t == pane_pid else f'thread {t}'} {c / (t1 - t0) * 100:.2f} %"
                    for c, t in busy if c > 0))
            finally:
                subprocess.run(["tmux", "kill-session", "-t", session])

        if args.rss_ticks > 0:
            sampler = Sampler()
            sampler.visible = frozenset(k.pid for k in kids[:40])
            marks = {}
            for tick in range(1, args.rss_ticks + 1):
                sampler.sample()
                if tick in (10, 100, args.rss_ticks // 2, args.rss_ticks):
                    marks[tick] = rss_mib()
            print("benchmark process RSS (sampler only, no UI) at tick: "
                  + ", ".join(f"{t}: {m:.1f} MiB" for t, m in marks.items()))
    finally:
        for k in kids:
            try:
                os.killpg(k.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for k in kids:
            k.wait()


if __name__ == "__main__":
    main()
