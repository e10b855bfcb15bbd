"""Benchmark `memtop record` / `memtop replay` (run by hand as root; never in tests).

    .venv/bin/python bench/record.py [--ticks 20] [--big 3000]

1. Records --ticks real ticks of this machine in-process (the Recorder `memtop record` uses):
   CPU and wall time of one capture, time of one write, compressed bytes per tick by section,
   and bytes of file per tick.
2. Writes --big ticks (the real captures again, with their clocks moved forward) into a file
   with the default bound, then opens it as `memtop replay` does: time to open (quick_check and
   the tick list), to load the newest tick, to step one tick, to jump to a random tick, and to
   rank the largest RSS changes of one process over the whole file (the `c` key).

3. --huge N (default 20): N processes with command lines of --cmdline-kib KiB each (1024: 1 MiB,
   as any user can start), then the real `memtop record FILE --max-size 1M` for 6 ticks: the size
   of FILE (and of anything beside it) against the bound. `--huge-only` runs this part alone.

For ~300 processes with a fixed count, run it in a PID namespace with a workload, e.g.
`unshare --pid --fork --mount-proc sh -c 'for i in $(seq 300); do sleep 1000 & done; .venv/bin/python bench/record.py'`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memtop.format import fmt_bytes  # noqa: E402
from memtop.collect.record import Recorder  # noqa: E402
from memtop.output.record import DEFAULT_MAX_BYTES, RecordReader, RecordWriter  # noqa: E402


def shifted(capture, dt: float):
    """The same capture ``dt`` seconds later (wall and monotonic clocks)."""
    snap = capture.snapshot
    system = replace(snap.system, wall_time=snap.system.wall_time + dt, monotonic=snap.system.monotonic + dt)
    return replace(capture, snapshot=replace(snap, system=system))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--big", type=int, default=2000)
    parser.add_argument("--huge", type=int, default=20, help="processes with huge command lines (0: skip)")
    parser.add_argument("--cmdline-kib", type=int, default=1024)
    parser.add_argument("--huge-only", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="memtop-bench-record-"))
    try:
        if not args.huge_only:
            run(args, workdir)
        if args.huge:
            huge_cmdlines(args.huge, args.cmdline_kib, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def huge_cmdlines(n: int, kib: int, workdir: Path) -> None:
    """`memtop record --max-size 1M` while ``n`` processes have ``kib`` KiB command lines."""
    # One argument is at most 128 KiB (MAX_ARG_STRLEN): the command line is made of several.
    chunk = 120 * 1024
    args = [("x" * min(chunk, kib * 1024 - i)) for i in range(0, kib * 1024, chunk)]
    kids = []
    for k in range(n):
        # The shell holds the command line (`sh -c SCRIPT NAME ARGS...`) while it waits on sleep.
        kids.append(subprocess.Popen(["sh", "-c", "sleep 600; : $#", f"huge-{k}", *args], start_new_session=True))
    path = workdir / "huge.db"
    try:
        time.sleep(1)
        sizes = [len(open(f"/proc/{kid.pid}/cmdline", "rb").read()) for kid in kids]
        result = subprocess.run([sys.executable, "-m", "memtop", "record", str(path), "--max-size", "1M",
                                 "--interval", "1", "--duration", "5"], cwd=ROOT, capture_output=True, text=True,
                                timeout=300)
        beside = {p.name: p.stat().st_size for p in workdir.iterdir() if p.name.startswith("huge.db")}
        ticks = "?"
        if path.exists():
            import sqlite3
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            ticks = conn.execute("SELECT count(*) FROM ticks").fetchone()[0]
            conn.close()
        print(f"\n{n} processes with {statistics.mean(sizes) / 1024:.0f} KiB command lines; "
              f"`memtop record --max-size 1M --interval 1 --duration 5` exit {result.returncode}: "
              + ", ".join(f"{name} {fmt_bytes(size)}" for name, size in sorted(beside.items()))
              + f"; {ticks} ticks in the file")
        if result.returncode:
            print("  stderr:", result.stderr.strip())
    finally:
        for kid in kids:
            os.killpg(kid.pid, signal.SIGKILL)
        for kid in kids:
            kid.wait()


def run(args, workdir: Path) -> None:
    recorder = Recorder()
    small = workdir / "small.db"
    writer = RecordWriter(small, recorder.meta(2.0, DEFAULT_MAX_BYTES))
    captures, cpu, wall, write = [], [], [], []
    for _ in range(args.ticks):
        c0, w0 = time.thread_time(), time.perf_counter()
        capture = recorder.capture()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
        w1 = time.perf_counter()
        writer.write(capture)
        write.append(time.perf_counter() - w1)
        captures.append(capture)
    writer.close()
    processes = statistics.mean(len(c.snapshot.processes) for c in captures)
    print(f"{args.ticks} ticks, {processes:.0f} processes on average")
    print(f"capture: {statistics.median(cpu) * 1000:.0f} ms CPU, {statistics.median(wall) * 1000:.0f} ms wall (median); "
          f"write {statistics.median(write) * 1000:.1f} ms")
    reader = RecordReader(small)
    by_section: dict[str, list[int]] = {}
    for name, size in reader.conn.execute("SELECT name, length(data) FROM sections"):
        by_section.setdefault(name, []).append(size)
    reader.close()
    total = sum(sum(v) for v in by_section.values()) / args.ticks
    print(f"compressed data per tick: {fmt_bytes(total)} = " +
          ", ".join(f"{name} {fmt_bytes(sum(v) / len(v))}" for name, v in sorted(by_section.items())))
    print(f"file: {fmt_bytes(os.path.getsize(small))} for {args.ticks} ticks "
          f"({fmt_bytes(os.path.getsize(small) / args.ticks)} per tick, the empty tables included)")

    big = workdir / "big.db"
    writer = RecordWriter(big, recorder.meta(2.0, DEFAULT_MAX_BYTES))
    w0 = time.perf_counter()
    for i in range(args.big):
        writer.write(shifted(captures[i % len(captures)], 2.0 * (i // len(captures) + 1) * len(captures)))
    writer.close()
    recorder.close()
    print(f"\n{args.big} ticks written in {time.perf_counter() - w0:.1f} s; file {fmt_bytes(os.path.getsize(big))}, "
          f"{writer.ticks_evicted} dropped by the bound")
    t0 = time.perf_counter()
    reader = RecordReader(big)
    print(f"open (quick_check, tick list): {(time.perf_counter() - t0) * 1000:.0f} ms for {len(reader)} ticks")
    t0 = time.perf_counter()
    tick = reader.load(len(reader) - 1)
    print(f"load the newest tick (150 ticks of RSS history, 60 of slab chart, 300 of PSI): "
          f"{(time.perf_counter() - t0) * 1000:.0f} ms")
    for parts, tab in ((frozenset(), "Processes"), (frozenset({"kernel"}), "Kernel"),
                       (frozenset({"pressure"}), "Pressure")):
        steps = []
        for i in range(len(reader) - 2, len(reader) - 22, -1):
            t0 = time.perf_counter()
            reader.load(i, parts)
            steps.append(time.perf_counter() - t0)
        print(f"one step back on the {tab} tab: {statistics.median(steps) * 1000:.0f} ms (median of 20)")
    jumps = []
    for i in random.Random(1).sample(range(len(reader)), 10):
        t0 = time.perf_counter()
        reader.load(i, frozenset())
        jumps.append(time.perf_counter() - t0)
    print(f"jump to a random tick (Processes tab): {statistics.median(jumps) * 1000:.0f} ms (median of 10)")
    view = max(tick.snapshot.processes, key=lambda v: v.sample.rss_bytes or 0)
    t0 = time.perf_counter()
    reader.largest_changes(reader.rss_series(view.pid, view.sample.identity.start_ticks))
    print(f"rank RSS changes of one process over the file (`c`): {(time.perf_counter() - t0) * 1000:.0f} ms")
    t0 = time.perf_counter()
    reader.verify()
    print(f"verify every tick (`replay --check`): {(time.perf_counter() - t0):.1f} s")
    reader.close()


if __name__ == "__main__":
    main()
