"""How much the Pressure tab's reads cost on this machine. Run by hand:

    /work/main/.venv/bin/python -m bench.bench_pressure
"""

from __future__ import annotations

import os
import time

from memtop.procfs.cgroup import locate_memory_hierarchy, memory_cgroup_of, read_cgroup_memory, walk_memory_cgroups
from memtop.procfs.pressure import read_system_pressure


def per_call(fn, n: int) -> tuple[float, float]:
    """(wall, CPU) seconds per call; CPU time is less disturbed by other load on the machine."""
    fn()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def main() -> None:
    hierarchy = locate_memory_hierarchy()
    path = memory_cgroup_of(os.getpid(), hierarchy)
    tree_size = len(walk_memory_cgroups(hierarchy))
    rows = [
        ("read_system_pressure (3 files)", per_call(read_system_pressure, 2000)),
        ("locate_memory_hierarchy (mountinfo)", per_call(locate_memory_hierarchy, 500)),
        ("read_cgroup_memory, detail (own cgroup)", per_call(lambda: read_cgroup_memory(hierarchy, path), 500)),
        (f"walk_memory_cgroups ({tree_size} cgroups, v{hierarchy.version})", per_call(lambda: walk_memory_cgroups(hierarchy), 200)),
    ]
    print(f"{'':<48} {'wall':>9}    {'CPU':>9}")
    for name, (wall, cpu) in rows:
        print(f"{name:<48} {wall * 1e6:9.1f} µs {cpu * 1e6:9.1f} µs")


if __name__ == "__main__":
    main()
