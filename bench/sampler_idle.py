"""The sampler's steady-state cost per tick against the raw syscalls it cannot avoid (run by hand).

    .venv/bin/python bench/sampler_idle.py [--ticks 20] [--procs 0]

Starts --procs sleepers (bench/compare.py's spawner) besides what runs on the machine, brings a
Sampler to its steady state (40 ticks, its clock advanced 2 s per tick so every process has a
known ΔRSS/min and the idle shortcuts apply), then prints the median CPU of one tick against one
pread(2) of every held stat file plus one fstat(2) of every held fd directory plus listdir(/proc):
the difference is the Python work per tick (and the rollups due that tick).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compare import Population  # noqa: E402
from memtop.collect.sampler import Sampler  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=20)
    ap.add_argument("--procs", type=int, default=0)
    args = ap.parse_args()
    pop = Population()
    try:
        pop.grow_to(args.procs)
        s = Sampler()
        clock = [0.0]
        s._clock = lambda: clock[0]
        for _ in range(40):
            clock[0] += 2.0
            snap = s.sample()
        cpu, rollups = [], []
        for _ in range(args.ticks):
            clock[0] += 2.0
            t0 = time.thread_time()
            snap = s.sample()
            cpu.append(time.thread_time() - t0)
            rollups.append(snap.rollups_read)
        stat_fds = list(s._stat_files._fds.values())
        dir_fds = list(s._fd_dirs._fds.values()) if s._fd_dirs is not None else []
        raw = []
        for _ in range(args.ticks):
            t0 = time.thread_time()
            for fd in stat_fds:
                try:
                    os.pread(fd, 4096, 0)
                except OSError:  # gone since
                    pass
            for fd in dir_fds:
                try:
                    os.fstat(fd)
                except OSError:
                    pass
            os.listdir("/proc")
            raw.append(time.thread_time() - t0)
        n = len(snap.processes)
        med, rmed = statistics.median(cpu), statistics.median(raw)
        print(f"{n} processes: sampler {med * 1000:.1f} ms CPU per tick (median of {args.ticks}; "
              f"{statistics.mean(rollups):.0f} rollups read per tick), raw syscalls {rmed * 1000:.1f} ms; "
              f"Python and rollups {(med - rmed) / n * 1e6:.1f} µs per process; at 2 s: {med / 2 * 100:.2f} % of a core")
        s.close()
    finally:
        pop.close()


if __name__ == "__main__":
    main()
