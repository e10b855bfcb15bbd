"""Cost of the tmpfs view, run by hand (never asserted in tests):

    sudo /work/main/.venv/bin/python -m bench.bench_tmpfs [--files 50000] [--runs 5]

1. one collection pass (mountinfo per namespace, statvfs, every process's fd links and maps,
   bounded smaps): CPU seconds of this thread and wall seconds, with and without smaps;
2. the largest-files scan of a tree of N empty files in a tmpfs mounted for the run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time

from memtop.collect.tmpfs import collect_report, scan_tree
from memtop.procfs.process import list_pids


def timed(fn, runs):
    cpu, wall = [], []
    result = None
    for _ in range(runs):
        c0, w0 = time.thread_time(), time.perf_counter()
        result = fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    print(f"{len(list_pids())} processes")
    for smaps in (True, False):
        cpu, wall, report = timed(lambda: collect_report(smaps=smaps), args.runs)
        print(f"collect_report(smaps={smaps}): median {cpu * 1000:.1f} ms CPU, {wall * 1000:.1f} ms wall "
              f"({report.processes_seen} processes, smaps read {report.smaps_read})")

    with tempfile.TemporaryDirectory() as tmp:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "none", tmp]).returncode == 0
        try:
            per_dir = 1000
            for d in range(max(1, args.files // per_dir)):
                sub = os.path.join(tmp, f"d{d}")
                os.mkdir(sub)
                for i in range(per_dir):
                    os.close(os.open(os.path.join(sub, f"f{i}"), os.O_CREAT | os.O_WRONLY, 0o600))
            cpu, wall, scan = timed(lambda: scan_tree(tmp), args.runs)
            print(f"scan_tree of {scan.files} files in {scan.directories} dirs ({'tmpfs' if mounted else 'disk'}): "
                  f"median {cpu * 1000:.0f} ms CPU, {wall * 1000:.0f} ms wall, {scan.files / wall:,.0f} files/s")
        finally:
            if mounted:
                subprocess.run(["umount", tmp])


if __name__ == "__main__":
    main()
