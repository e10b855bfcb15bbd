"""Walk speed of the read-only glibc heap walk (issue 3, Deliver 8). Run by hand, as root:

    /work/main/.venv/bin/python -m bench.heap_walk [--mib 1024] [--request 24] [--repeat 3]
        [--mixed] [--pure-python] [--symbols auto|debug|heuristic]

A C target fills its main heap with `--mib` MiB of `--request`-byte allocations (chunks of
request + 8 rounded up to 16, at least 32 bytes), frees one in 64 (so the walk also finds free
chunks), then waits. memtop walks it `--repeat` times; the best walk is reported in chunks per
second and MiB per second. Goal (issue 20): at least 10 M chunks/s, and a 1 GiB heap of small
chunks walked in 1 s or less. The real programs (ruby, mariadbd) are in bench/heap_walk_real.py.
"""

from __future__ import annotations

import argparse
import time

from memtop.heap import analyze, native
from tests.support import Child, compile_c

TARGET = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static char inbuf[256], outbuf[256];
int main(int argc, char **argv) {
    setvbuf(stdout, outbuf, _IOLBF, sizeof outbuf);
    setvbuf(stdin, inbuf, _IOLBF, sizeof inbuf);
    size_t total = strtoull(argv[1], 0, 10) << 20, request = strtoull(argv[2], 0, 10);
    size_t chunk = (request + 8 + 15) & ~15UL; if (chunk < 32) chunk = 32;
    size_t n = total / chunk;
    void **v = malloc(n * sizeof(void *));  /* large: mmapped, not in the heap */
    int mixed = argc > 3 && argv[3][0] == '1';
    unsigned seed = 1;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        size_t r = mixed ? request + (rand_r(&seed) % 8) * 16 : request;
        if (mixed && used > total) { n = i; break; }
        v[i] = malloc(r); memset(v[i], 1, 8);
        used += ((r + 8 + 15) & ~15UL);
    }
    size_t every = strtoull(argv[4], 0, 10);
    if (every) for (size_t i = 0; i < n; i += every) free(v[i]);
    printf("READY %zu\n", n);
    char line[64];
    while (fgets(line, sizeof line, stdin)) printf("pong\n");
    return 0;
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--request", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--symbols", default="auto", choices=("auto", "debug", "heuristic"))
    parser.add_argument("--pure-python", action="store_true", help="force the pure-Python inner loop")
    parser.add_argument("--free-every", type=int, default=64, metavar="N",
                        help="free one chunk in N after filling (default 64; 0 frees none)")
    parser.add_argument("--mixed", action="store_true",
                        help="request sizes vary (request .. 8*request, pseudo-random) instead of all equal")
    args = parser.parse_args()
    binary = compile_c(TARGET, name="bench_heap", flags=("-O2",))
    with Child([binary, str(args.mib), str(args.request), "1" if args.mixed else "0", str(args.free_every)],
               timeout=300) as child:
        best = best_cpu = None
        for _ in range(args.repeat):
            start, start_cpu = time.perf_counter(), time.process_time()
            report = analyze(child.pid, symbols=args.symbols, native=not args.pure_python)
            seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            assert report.valid, report.reason
            best = seconds if best is None else min(best, seconds)
            best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
        heap = sum(a.system_bytes for a in report.arenas)
        loop = "pure-Python" if args.pure_python or native.load() is None else "native (C extension memtop.heap._walk)"
        print(f"inner loop: {loop}; {'mixed' if args.mixed else 'equal'} request sizes from {args.request} bytes")
        print(f"heap {heap / 2**20:.0f} MiB, {report.chunks_walked:,} chunks "
              f"({report.main_arena.free_count:,} free, {report.main_arena.tcache_count} tcache), "
              f"predicted trim release {report.trim_release_bytes / 2**20:.1f} MiB")
        print(f"best of {args.repeat}: {best:.2f} s = {report.chunks_walked / best / 1e6:.2f} M chunks/s, "
              f"{heap / 2**20 / best:.0f} MiB/s (whole analyze(): maps, symbols, walk, pagemap, prediction)")
        print(f"CPU time of this process (user+sys, the machine may be shared): {best_cpu:.2f} s = "
              f"{report.chunks_walked / best_cpu / 1e6:.2f} M chunks/s, {heap / 2**20 / best_cpu:.0f} MiB/s")


if __name__ == "__main__":
    main()
