"""What one tick of the containers and OOM readers costs. Run by hand, as root:

    .venv/bin/python -m bench.containers [CGROUPS]

Makes CGROUPS (default 50) memory cgroups with one small process each (a stand-in for a host with
that many containers), then times, per tick, on this machine's real process list:
ContainerCollector.collect (membership cached), read_oom_tick (oom_score, oom_score_adj and status
of every process, vmstat, meminfo, /dev/kmsg) and OomWatch.update. Everything made is removed.
"""

from __future__ import annotations

import sys
import time

from memtop.collect.sampler import Sampler
from memtop.model.oom import OomWatch, oom_sample
from memtop.procfs.containers import ContainerCollector
from memtop.procfs.oom import KernelLog, read_oom_tick
from tests.containers_support import TestCgroup, memory_hierarchy_or_reason

IDLE = "print('READY', flush=True)\nimport sys\nsys.stdin.readline()\n"


def per_tick(fn, n: int) -> tuple[float, float]:
    fn()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    hierarchy, reason = memory_hierarchy_or_reason()
    if hierarchy is None:
        sys.exit(reason)
    cgroups, children = [], []
    try:
        for _ in range(count):
            cg = TestCgroup(hierarchy, limit=256 << 20)
            cgroups.append(cg)
            children.append(cg.start(IDLE))
        processes = [v.sample for v in Sampler().sample().processes]
        collector = ContainerCollector()
        log = KernelLog()
        watch = OomWatch()
        containers = collector.collect(processes)
        rows = [
            (f"ContainerCollector.collect ({len(containers.containers)} containers)",
             per_tick(lambda: collector.collect(processes), 50)),
            (f"read_oom_tick ({len(processes)} processes)",
             per_tick(lambda: read_oom_tick(processes, containers, kernel_log=log), 50)),
        ]
        tick = read_oom_tick(processes, containers, kernel_log=log)
        rows.append(("OomWatch.update + oom_sample", per_tick(lambda: (watch.update(tick), oom_sample(watch)), 50)))
        log.close()
        print(f"{'':<52} {'wall':>9}    {'CPU':>9}")
        for name, (wall, cpu) in rows:
            print(f"{name:<52} {wall * 1e3:9.2f} ms {cpu * 1e3:9.2f} ms")
    finally:
        for child in children:
            child.close()
        for cg in cgroups:
            cg.close()


if __name__ == "__main__":
    main()
