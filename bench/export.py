"""Benchmark `memtop export` (run by hand as root from the project root; never in tests).

    .venv/bin/python bench/export.py [--procs 1000] [--ticks 20] [--scrapes 1000] [--concurrency 10]

1. Starts N real processes (a small C program that touches 1 MiB and sleeps).
2. One exporter tick in-process (memtop.collect.export + rendering): CPU and wall time, median
   of --ticks, after the first tick (which reads every smaps_rollup once).
3. The real exporter (`python -m memtop export --interval 2`) under --scrapes scrapes at
   --concurrency: latency p50/p95/p99, scrapes per second, the exporter's CPU per scrape (its
   process CPU minus what its sampling thread reported), its RSS before and after.
4. --idle N (default 3000): the real exporter with N idle connections held open (half of them
   silent, half with a request cut in the middle), as any local user can make: its RSS and
   thread count before and with them, and the time a scrape takes meanwhile.
   `--idle-only` runs this part alone.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memtop.collect.export import ExportSampler, HeapWalker  # noqa: E402
from memtop.output.prometheus import MemtopCollector  # noqa: E402
from tests.support import compile_c  # noqa: E402

SLEEPER = r"""
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
char *volatile kept;  /* with the pointer unused, gcc -O1 removed malloc and memset */
int main(void) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); kept = p; for (;;) pause(); }
"""
CLK = os.sysconf("SC_CLK_TCK")

# --heap cost: a heap of HEAP_MIB MiB in 256-byte chunks, every other one freed.
HEAP_TARGET = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]) * (1L << 20) / 256;
    char **blocks = malloc(n * sizeof *blocks);
    for (long i = 0; i < n; i++) { blocks[i] = malloc(240); blocks[i][0] = 1; }
    for (long i = 0; i < n; i += 2) free(blocks[i]);
    printf("READY\n"); fflush(stdout);
    for (;;) pause();
}
"""


def proc_cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scrape(port: int) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"status {response.status}")
    return time.perf_counter() - t0, body


def sample_cpu(body: bytes) -> float:
    match = re.search(rb"^memtop_exporter_sample_cpu_seconds_total (\S+)$", body, re.M)
    return float(match.group(1))


def heap_cost(mib: int) -> None:
    """One tick with --heap and the target among the walked processes, against one without."""
    target = subprocess.Popen([compile_c(HEAP_TARGET, name="bench-export-heap"), str(mib)],
                              stdout=subprocess.PIPE, start_new_session=True)
    try:
        target.stdout.readline()
        plain = ExportSampler(top=20)
        walking = HeapWalker(Path('/proc'), period_s=60)
        plain.sample()
        c0 = time.thread_time()
        plain.sample()
        base = time.thread_time() - c0
        row = next(s for s in plain.sample().processes if s.pid == target.pid)
        cpu0 = proc_cpu_s(os.getpid())
        walking.want((row,))
        while not walking.results()[0] and not walking.results()[1]:
            time.sleep(0.05)
        walk_cpu = proc_cpu_s(os.getpid()) - cpu0
        heaps, failures = walking.results()
        plain.close()
        walking.close()
        if not heaps:
            print(f"--heap: the {mib} MiB target could not be walked: {failures}")
            return
        figures = next(iter(heaps.values()))
        print(f"--heap, one walk of a {mib} MiB heap of 256-byte chunks (~{mib * 4096} chunks), in its own thread: "
              f"{walk_cpu * 1000:.0f} ms CPU, {figures.walk_seconds * 1000:.0f} ms wall (a tick without it: "
              f"{base * 1000:.0f} ms CPU); in use {figures.in_use_bytes >> 20} MiB, free {figures.free_bytes >> 20} MiB")
    finally:
        target.kill()
        target.wait()


def threads(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def start_exporter(*extra: str) -> tuple[subprocess.Popen, int]:
    exporter = subprocess.Popen([sys.executable, "-m", "memtop", "export", "--listen", "127.0.0.1:0", *extra],
                                cwd=ROOT, stdout=subprocess.PIPE, start_new_session=True)
    line = exporter.stdout.readline().decode()
    return exporter, int(re.search(r":(\d+)/metrics", line).group(1))


def idle_connections(n: int) -> None:
    """The exporter's RSS and threads with ``n`` idle connections, and a scrape meanwhile."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:  # the exporter (a child) inherits it: it must be able to accept them all
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))
    exporter, port = start_exporter("--interval", "2")
    held: list[socket.socket] = []
    try:
        time.sleep(3)
        scrape(port)
        rss0, threads0 = rss_mib(exporter.pid), threads(exporter.pid)
        t0 = time.perf_counter()
        refused = 0
        for i in range(n):
            s = socket.socket()
            s.settimeout(10)
            try:
                s.connect(("127.0.0.1", port))
                if i % 2:
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            except OSError:
                refused += 1
                s.close()
                continue
            held.append(s)
        opened = time.perf_counter() - t0
        time.sleep(3)
        rss1, threads1 = rss_mib(exporter.pid), threads(exporter.pid)
        try:
            latency, _ = scrape(port)
            during = f"{latency * 1000:.1f} ms"
        except Exception as e:  # noqa: BLE001 - what the user would see
            during = f"failed ({type(e).__name__}: {e})"
        alive = sum(1 for s in held if _still_open(s))
        print(f"{n} idle connections ({refused} refused at connect, opened in {opened:.1f} s; "
              f"{alive} still open after 3 s): exporter RSS {rss0:.1f} -> {rss1:.1f} MiB, "
              f"threads {threads0} -> {threads1}; a scrape meanwhile: {during}")
        time.sleep(12)
        alive = sum(1 for s in held if _still_open(s))
        print(f"after 15 s: {alive} of them still open; exporter RSS {rss_mib(exporter.pid):.1f} MiB, "
              f"threads {threads(exporter.pid)}")
    finally:
        for s in held:
            s.close()
        exporter.send_signal(signal.SIGTERM)
        print(f"exporter exit status after SIGTERM: {exporter.wait(timeout=30)}")


def _still_open(s: socket.socket) -> bool:
    """False once the server closed the connection (recv returns b'' or fails)."""
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=1000)
    ap.add_argument("--ticks", type=int, default=20)
    ap.add_argument("--scrapes", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--heap-mib", type=int, default=256, help="heap size of the --heap target (0: skip)")
    ap.add_argument("--idle", type=int, default=3000, help="idle connections held open (0: skip)")
    ap.add_argument("--idle-only", action="store_true", help="only the idle-connections measurement")
    args = ap.parse_args()
    if args.idle_only:
        idle_connections(args.idle)
        return

    binary = compile_c(SLEEPER, name="bench-sleeper")
    kids = [subprocess.Popen([binary], start_new_session=True) for _ in range(args.procs)]
    exporter = None
    try:
        time.sleep(2)
        total = len([n for n in os.listdir("/proc") if n.isdigit()])
        print(f"processes on the machine: {total} ({args.procs} started by the benchmark)")

        sampler = ExportSampler(top=20)
        collector = MemtopCollector()
        t0, c0 = time.perf_counter(), time.thread_time()
        collector.publish(sampler.sample())
        print(f"first tick: {(time.thread_time() - c0) * 1000:.0f} ms CPU, {(time.perf_counter() - t0) * 1000:.0f} ms wall")
        cpu, wall, render = [], [], []
        for _ in range(args.ticks):
            t0, c0 = time.perf_counter(), time.thread_time()
            sample = sampler.sample()
            c1 = time.thread_time()
            collector.publish(sample)
            render.append(time.thread_time() - c1)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - t0)
        sampler.close()
        print(f"tick, median of {args.ticks}: {statistics.median(cpu) * 1000:.0f} ms CPU "
              f"({statistics.median(wall) * 1000:.0f} ms wall), of which building + rendering the "
              f"exposition {statistics.median(render) * 1000:.1f} ms; {len(collector.exposition.text)} bytes, "
              f"{len(collector.exposition.gzip)} gzipped")

        if args.heap_mib:
            heap_cost(args.heap_mib)

        exporter, port = start_exporter("--interval", "2")
        time.sleep(3)
        _, body = scrape(port)
        rss_before = rss_mib(exporter.pid)
        cpu_before, sampling_before = proc_cpu_s(exporter.pid), sample_cpu(body)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            results = list(pool.map(lambda _: scrape(port), range(args.scrapes)))
        elapsed = time.perf_counter() - t0
        cpu_after, sampling_after = proc_cpu_s(exporter.pid), sample_cpu(results[-1][1])
        rss_after = rss_mib(exporter.pid)
        latencies = sorted(r[0] for r in results)

        def pct(p):
            return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

        scrape_cpu = (cpu_after - cpu_before) - (sampling_after - sampling_before)
        print(f"{args.scrapes} scrapes at concurrency {args.concurrency}: {elapsed:.2f} s, "
              f"{args.scrapes / elapsed:.0f}/s; latency p50 {pct(50):.1f} ms, p95 {pct(95):.1f} ms, "
              f"p99 {pct(99):.1f} ms, max {latencies[-1] * 1000:.1f} ms")
        print(f"exporter CPU for the scrapes (process CPU minus sampling CPU): {scrape_cpu:.2f} s = "
              f"{scrape_cpu / args.scrapes * 1000:.2f} ms per scrape; sampling meanwhile: "
              f"{sampling_after - sampling_before:.2f} s")
        print(f"exporter RSS: {rss_before:.1f} MiB before, {rss_after:.1f} MiB after the scrapes")
        exporter.send_signal(signal.SIGTERM)
        print(f"exporter exit status after SIGTERM: {exporter.wait(timeout=30)}")
        exporter = None
        if args.idle:
            idle_connections(args.idle)
    finally:
        if exporter is not None:
            exporter.send_signal(signal.SIGTERM)
            exporter.wait(timeout=30)
        for kid in kids:
            kid.kill()
        for kid in kids:
            kid.wait()


if __name__ == "__main__":
    main()
