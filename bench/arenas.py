"""What the Arenas tab costs (issue 5). Run by hand, as root:

    /work/main/.venv/bin/python -m bench.arenas [--threads 16] [--mappings 20000] [--repeat 5]

1. The 16-thread arena-explosion target (tests/live/arenas_target.c): time of the whole
   analysis (heap walk + smaps census + environ), of the census alone, and of parsing its
   malloc_info XML.
2. The census of a process with ``--mappings`` separate anonymous mappings (the "hundreds or
   thousands of similarly sized regions" case): full smaps is read and classified.
Best of ``--repeat`` for each figure.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from memtop.heap.arena_advice import analyze_arenas
from memtop.heap.census import read_census
from memtop.heap.malloc_info import parse_malloc_info
from tests.support import Child, compile_c

ROOT = Path(__file__).resolve().parent.parent
MANY_MAPPINGS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    for (long i = 0; i < n; i++) {
        /* alternate protections so that the kernel cannot merge neighbours into one VMA */
        char *p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 1; }
        p[0] = 1;
        mprotect(p + 4096, 4096, PROT_READ);
    }
    printf("READY\n"); fflush(stdout);
    getchar();
    return 0;
}
"""


def best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--mappings", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    target = compile_c((ROOT / "tests" / "live" / "arenas_target.c").read_text(), name="arenas16")
    with Child([target, str(args.threads)]) as child:
        whole, analysis = best(lambda: analyze_arenas(child.pid), args.repeat)
        census_s, census = best(lambda: read_census(child.pid), args.repeat)
        heap = analysis.heap
        print(f"arena target: {len(heap.arenas)} arenas, {heap.chunks_walked:,} chunks, "
              f"{len(census.arena_heaps)} arena heaps in {census.mappings} mappings")
        print(f"  whole analysis (walk + census + environ): {whole * 1000:.0f} ms")
        print(f"  census alone (full smaps):                {census_s * 1000:.1f} ms")
    xml = (ROOT / "tests" / "fixtures" / "arenas" / "malloc_info_16threads.xml").read_text()
    parse_s, _ = best(lambda: parse_malloc_info(xml), args.repeat * 20)
    print(f"  parse malloc_info ({len(xml):,} chars, 16 arenas): {parse_s * 1000:.2f} ms")

    many = compile_c(MANY_MAPPINGS, name="arenas_many_mappings")
    with Child([many, str(args.mappings)], timeout=120) as child:
        census_s, census = best(lambda: read_census(child.pid), args.repeat)
        print(f"{census.mappings:,} mappings: census {census_s * 1000:.0f} ms; "
              f"largest group {census.size_groups[0].count:,} x {census.size_groups[0].size_bytes} B")


if __name__ == "__main__":
    main()
