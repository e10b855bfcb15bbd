"""Benchmark the Kernel tab's collection (run by hand; never in tests).

    .venv/bin/python bench/kernel.py [--reads 50] [--fds 5000]

1. Parsing the real /proc/slabinfo (root) and sockstat: CPU per read.
2. One KernelCollector.collect() for the processes on this machine (slabinfo, a readlink of
   /proc/PID/ns/net per process, sockstat per namespace, file-nr): thread CPU and wall time.
3. The fd breakdown (readlink of every /proc/PID/fd/N) of a process holding --fds sockets.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memtop.collect.kernel import KernelCollector  # noqa: E402
from memtop.collect.sampler import Sampler  # noqa: E402
from memtop.procfs import PROC  # noqa: E402
from memtop.procfs import kernel as kfs  # noqa: E402


def timed(fn, reads: int) -> tuple[float, float]:
    """Median thread-CPU and wall milliseconds of ``fn()`` over ``reads`` calls."""
    cpu, wall = [], []
    for _ in range(reads):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append((time.thread_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--fds", type=int, default=5000)
    args = parser.parse_args()

    try:
        caches = len(kfs.read_slabinfo(PROC).caches)
        cpu, wall = timed(lambda: kfs.read_slabinfo(PROC), args.reads)
        print(f"read+parse /proc/slabinfo ({caches} caches): {cpu:.2f} ms CPU, {wall:.2f} ms wall (median of {args.reads})")
    except kfs.AccessDenied as e:
        print(f"slabinfo: {e.reason}")
    cpu, wall = timed(lambda: kfs.read_sockstat(f"{PROC}/net"), args.reads)
    print(f"read+parse sockstat+sockstat6: {cpu:.3f} ms CPU, {wall:.3f} ms wall")

    sampler = Sampler(PROC)
    snapshot = sampler.sample()
    sampler.close()
    collector = KernelCollector(PROC)
    view = collector.collect(snapshot)
    cpu, wall = timed(lambda: collector.collect(snapshot), max(5, args.reads // 5))
    print(f"KernelCollector.collect() with {len(snapshot.processes)} processes, {len(view.namespaces)} network "
          f"namespace(s): {cpu:.1f} ms CPU, {wall:.1f} ms wall (median)")

    held = []
    try:
        for _ in range(args.fds // 2):
            held.extend(socket.socketpair())
    except OSError as e:
        print(f"stopped opening sockets at {len(held)}: {e}")
    import os

    pid = os.getpid()
    total = kfs.read_fd_breakdown(pid, PROC).total
    cpu, wall = timed(lambda: kfs.read_fd_breakdown(pid, PROC), 10)
    print(f"fd breakdown of a process with {total} fds: {cpu:.1f} ms CPU, {wall:.1f} ms wall (median of 10)")
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
