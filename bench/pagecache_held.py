"""What the Page cache tab's "any process" source costs per run (run by hand).

    .venv/bin/python bench/pagecache_held.py [--procs 1000] [--runs 5]

Starts --procs sleepers (bench/compare.py's spawner) besides what runs on the machine, then
prints the median thread CPU of the two steps of source (b): listing who holds which file (every
process's maps and fds) and measuring the listed files' cached bytes (cachestat), and how often
HeldFilesCache lists again at that cost (HELD_DUTY times the listing's CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compare import Population  # noqa: E402
from memtop.collect.pagecache import HELD_DUTY  # noqa: E402
from memtop.procfs import PROC  # noqa: E402
from memtop.procfs.filesources import held_files, measure_held  # noqa: E402
from memtop.procfs.process import list_pids  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    pop = Population()
    try:
        pop.grow_to(args.procs)
        listing, measuring = [], []
        for _ in range(args.runs):
            cpu0 = time.thread_time()
            held = held_files(list_pids(PROC), PROC)
            cpu1 = time.thread_time()
            measure_held(held)
            listing.append(cpu1 - cpu0)
            measuring.append(time.thread_time() - cpu1)
        lst, mea = statistics.median(listing), statistics.median(measuring)
        print(f"{held.processes_seen} processes, {len(held.files)} files held")
        print(f"listing who holds what: {lst * 1e3:.1f} ms CPU ({lst / max(held.processes_seen, 1) * 1e6:.0f} µs per process)")
        print(f"measuring the files:    {mea * 1e3:.1f} ms CPU")
        print(f"listed again every {max(2.0, HELD_DUTY * lst):.1f} s at a 2 s tick "
              f"(listing ≤ {100 / HELD_DUTY:.0f} % of a core); measured every tick: {mea / 2 * 100:.2f} % of a core")
    finally:
        pop.close()


if __name__ == "__main__":
    main()
