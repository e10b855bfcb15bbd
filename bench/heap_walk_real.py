"""The read-only heap walk on real programs (issue 20, item 4). Run by hand, as root:

    /work/main/.venv/bin/python -m bench.heap_walk_real [--case ruby|mariadb|c|all] [--repeat 3]
        [--pure-python] [--check] [--profile] [--ruby-threads 8] [--ruby-objects 400000] [--mariadb-clients 16] [--c-mib 1024]

Cases (each target is started here and stopped by its PID afterwards; temp dirs are removed):

- ruby: ``--ruby-threads`` Ruby threads, each allocating ``--ruby-objects`` strings of 24..120
  bytes and small arrays and keeping most of them (one glibc arena per thread: main + threads).
- mariadb: a mariadbd on its own datadir and socket under a fresh temp dir (no networking), with
  ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432`` so that the blocks of MEMORY tables
  (a few MiB each) come from the arenas instead of mmap; ``--mariadb-clients`` connections at
  once, each filling a MEMORY table of ``--mariadb-rows`` rows, left connected (one server
  thread, and its arena, per client): ~16 arenas, ~700 MiB of heap in few, large chunks.
- c: bench/heap_walk.py's target, ``--c-mib`` MiB of ``--c-request``-byte requests (24), one in
  ``--c-free-every`` (64) freed; ``--c-request 200 --c-free-every 2`` leaves millions of chunks
  free in the bins (the most free chunks a heap can have: free chunks are never adjacent).

For each: chunks walked, arenas, heap bytes (system_mem summed), best wall time of ``--repeat``
whole analyze() calls, chunks/s and MiB/s, the peak RSS memtop reached during a walk above its
RSS before it (VmHWM after ``echo 5 > /proc/self/clear_refs``, which resets the peak), and the
longest pause a 2 ms ticker thread saw while the walk ran (what a UI thread would see: the walk
runs in a worker thread and must not hold the GIL for long).

Figures, this machine (2 vCPUs, Debian 12, glibc 2.36; shared: load average 3.8-5.3 during these
runs), best of 3 whole analyze() calls, before (77a7166) -> after (issue 20 item 4):

    case                                   time            memtop peak RSS (later walk)  longest tick gap
    c 1 GiB, 24-byte requests (33.5 M)     3.32 -> 0.57 s  +150 -> +4 MiB               271 -> 24 ms
      (quiet machine: 2.40 -> 0.45-0.50 s)
    c 1 GiB, 200-byte, every other free    7.93 -> 0.61 s  +875 -> +39 MiB              676 -> 49 ms
      (2.58 M free chunks)
    ruby 8 threads (3.9 M chunks, 9 ar.)   0.59-1.01 -> 0.16-0.25 s, and before often "changing"
                                           (0.36 -> 0.17-0.22 s on a quiet machine; RSS +28 -> +0.5 MiB)
    mariadbd 16 clients (688 MiB, 16 ar.)  0.22 -> 0.08 s  +12 -> +23 MiB (*)           11 -> 7 ms
    c 1 GiB, pure-Python loop              4.53 -> 3.22 s  +157 -> +39 MiB              135 -> 61 ms

(*) not the walk: memtop.heap.detect._go_note reads the whole executable (mariadbd: 25 MiB)
on every analyze() of a native program.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from memtop.heap import analyze, native
from tests.support import Child, compile_c

RUBY = r"""
threads = Integer(ARGV[0]); per = Integer(ARGV[1])
keep = []
lock = Mutex.new
ts = (1..threads).map do |t|
  Thread.new do
    mine = []
    r = Random.new(t)
    per.times do |i|
      s = "x" * (24 + r.rand(97))   # longer than an embedded string: its bytes are malloc'd
      mine << s
      mine << [i, s, i + 1, s, i] if i % 4 == 0  # heap-allocated array storage
      mine[r.rand(mine.size)] = nil if i % 16 == 0  # some garbage, so some chunks are free
    end
    lock.synchronize { keep << mine }
  end
end
ts.each(&:join)
GC.start
$stdout.puts "READY"; $stdout.flush
while (line = $stdin.gets)
  $stdout.puts "pong"; $stdout.flush
end
"""


def status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class Ticker(threading.Thread):
    """Wakes every 2 ms and records the longest gap between wake-ups (a stand-in for the UI)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.longest = 0.0

    def run(self):
        last = time.perf_counter()
        while not self.stop.is_set():
            time.sleep(0.002)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now


def measure(name: str, pid: int, repeat: int, pure: bool, check: bool = False, profile: bool = False) -> None:
    best = None
    hwm: list[int] = []
    longest = 0.0
    report = None
    for _ in range(repeat):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS (Documentation/admin-guide/mm/soft-dirty.rst)
        rss_before = status_kib("VmRSS")
        ticker = Ticker()
        ticker.start()
        started = time.perf_counter()
        report = analyze(pid, native=not pure)
        seconds = time.perf_counter() - started
        ticker.stop.set()
        ticker.join()
        if not report.valid:
            print(f"{name}: walk not valid: {report.status}: {report.reason}")
            continue
        hwm.append(status_kib("VmHWM") - rss_before)
        longest = max(longest, ticker.longest)
        best = seconds if best is None else min(best, seconds)
    if best is None or report is None or not report.valid:
        return
    heap = sum(a.system_bytes for a in report.arenas)
    fast = sum(a.fastbin_count for a in report.arenas)
    free = sum(a.free_count for a in report.arenas)
    tcache = sum(a.tcache_count for a in report.arenas)
    loop = "pure-Python" if pure or native.load() is None else "native"
    print(f"{name} (PID {pid}, {loop} loop): {report.chunks_walked:,} chunks ({free:,} free, {fast:,} fastbin, "
          f"{tcache:,} tcache), {len(report.arenas)} arenas, heap {heap / 2**20:.0f} MiB")
    print(f"  best of {repeat}: {best:.2f} s = {report.chunks_walked / best / 1e6:.2f} M chunks/s, "
          f"{heap / 2**20 / best:.0f} MiB/s; memtop peak RSS +{hwm[0] / 1024:.1f} MiB during the first walk "
          f"(symbols loaded), +{max(hwm[1:], default=hwm[0]) / 1024:.1f} MiB during a later one "
          f"(RSS now {status_kib('VmRSS') / 1024:.0f} MiB); longest 2 ms-ticker gap {longest * 1000:.0f} ms",
          flush=True)
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(analyze, pid, native=not pure)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
    if check:
        for _ in range(5):  # a heap that changes now and then (ruby's) needs two valid walks in a row
            other = analyze(pid, native=pure)
            again = analyze(pid, native=not pure)  # the heap may have changed since the timed walks
            if other.valid and again.valid:
                break
        if not (other.valid and again.valid):
            print(f"  no two valid walks in a row to compare ({other.status}, {again.status})")
            return
        same = other.arenas == again.arenas and other.pin == again.pin
        differ = sorted({f.name for x, y in zip(other.arenas, again.arenas) for f in dataclasses.fields(x)
                         if getattr(x, f.name) != getattr(y, f.name)})
        print(f"  {'pure-Python' if not pure else 'native'} walk gives the same report: {same}"
              + (f" (differ: {', '.join(differ)}; valid {other.valid}, pin {other.pin == again.pin})" if not same else ""))


def case_c(args) -> None:
    from bench.heap_walk import TARGET

    binary = compile_c(TARGET, name="bench_heap", flags=("-O2",))
    with Child([binary, str(args.c_mib), str(args.c_request), "0", str(args.c_free_every)], timeout=300) as child:
        measure(f"c {args.c_mib} MiB of {args.c_request}-byte requests, one in {args.c_free_every} freed", child.pid,
                args.repeat, args.pure_python, args.check, args.profile)


def case_ruby(args) -> None:
    with tempfile.TemporaryDirectory(prefix="memtop-bench-ruby-") as tmp:
        script = Path(tmp, "alloc.rb")
        script.write_text(RUBY)
        with Child(["ruby", script, str(args.ruby_threads), str(args.ruby_objects)], timeout=300) as child:
            measure(f"ruby {args.ruby_threads} threads x {args.ruby_objects:,} objects", child.pid, args.repeat,
                    args.pure_python, args.check, args.profile)


def _mariadb(socket: Path, sql: str, timeout: float = 300) -> subprocess.Popen:
    return subprocess.Popen(["mariadb", "--no-defaults", f"--socket={socket}", "-uroot", "-N", "-e", sql],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def case_mariadb(args) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="memtop-bench-mariadb-"))
    server = None
    clients: list[subprocess.Popen] = []
    try:
        datadir, socket = tmp / "data", tmp / "mysqld.sock"
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=120)
        server = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={socket}", "--skip-networking",
             "--user=root", f"--pid-file={tmp / 'mysqld.pid'}", f"--log-error={tmp / 'error.log'}",
             "--innodb-buffer-pool-size=64M", "--max-heap-table-size=256M", "--tmp-table-size=256M",
             "--thread-cache-size=64"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=33554432"})
        deadline = time.monotonic() + 60
        while subprocess.run(["mariadb", "--no-defaults", f"--socket={socket}", "-uroot", "-e", "select 1"],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"mariadbd did not start: {(tmp / 'error.log').read_text()[-2000:]}")
            time.sleep(0.2)
        _mariadb(socket, "create database bench").wait()
        rows = args.mariadb_rows
        # Each client fills its own MEMORY table (blocks allocated by that connection's thread,
        # in its arena), then stays connected (SLEEP) while memtop walks.
        for k in range(args.mariadb_clients):
            sql = (f"use bench; set max_heap_table_size=67108864;"
                   f"create table t{k} (id int, s varchar(200)) engine=memory;"
                   f"insert into t{k} select seq, repeat(char(65 + seq % 26), 20 + seq % 150) from seq_1_to_{rows};"
                   f"select sleep(3600);")
            clients.append(_mariadb(socket, sql))
        # Wait until every client sleeps (its table is full).
        deadline = time.monotonic() + 120
        while True:
            out = subprocess.run(["mariadb", "--no-defaults", f"--socket={socket}", "-uroot", "-N", "-e",
                                  "select count(*) from information_schema.processlist where info like 'select sleep%'"],
                                 capture_output=True, text=True).stdout.strip()
            if out == str(args.mariadb_clients):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {out} of {args.mariadb_clients} clients got to their SLEEP")
            time.sleep(0.5)
        time.sleep(1)
        measure(f"mariadbd {args.mariadb_clients} clients x {rows:,} rows", server.pid, args.repeat,
                args.pure_python, args.check, args.profile)
    finally:
        for c in clients:
            if c.poll() is None:
                os.kill(c.pid, signal.SIGTERM)
                c.wait(timeout=30)
        if server is not None and server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="all", choices=("ruby", "mariadb", "c", "all"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pure-python", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one more walk of each case")
    parser.add_argument("--check", action="store_true", help="walk once more with the other loop and compare the reports")
    parser.add_argument("--ruby-threads", type=int, default=8)
    parser.add_argument("--ruby-objects", type=int, default=400_000)
    parser.add_argument("--mariadb-clients", type=int, default=16)
    parser.add_argument("--mariadb-rows", type=int, default=200_000)
    parser.add_argument("--c-mib", type=int, default=1024)
    parser.add_argument("--c-request", type=int, default=24)
    parser.add_argument("--c-free-every", type=int, default=64)
    args = parser.parse_args()
    for case in ("ruby", "mariadb", "c") if args.case == "all" else (args.case,):
        globals()[f"case_{case}"](args)


if __name__ == "__main__":
    main()
