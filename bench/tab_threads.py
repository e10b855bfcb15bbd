"""Where one tab's idle CPU goes: memtop's threads and parts, each on its own (run by hand).

    .venv/bin/python bench/tab_threads.py --procs 100 --tab 4             # Page cache, first 40 s
    .venv/bin/python bench/tab_threads.py --procs 1000 --tab 7 --settle 90 --window 60

bench/compare.py --tabs gives a tab's whole cost; this splits it. N sleepers (compare.py's
population), memtop at 120x40 in tmux (--interval 2), the tab's digit pressed 5 s after start;
--settle s later, for --window s: the CPU of each of memtop's threads (/proc/self/task/TID/stat,
utime + stime, as % of one core: MainThread is the UI, asyncio_0 the sampler, memtop-part_N the
Collector's workers) and, per part, its runs and the CPU they took (Part.collect wrapped to count
thread_time). memtop runs inside this script (``--inner``), so its code is the tree this script
is in, or MEMTOP_ROOT's. Run it in a PID namespace (``unshare --pid --fork --mount-proc``) to
leave other load's processes out; a tab's first minute costs more than its steady state (charts
drawn while their history fills), hence --settle.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(os.environ.get("MEMTOP_ROOT", Path(__file__).resolve().parent.parent))


def _thread_cpu() -> dict[str, float]:
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for t in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue  # a thread that ended meanwhile
        out[t.name] = (int(fields[11]) + int(fields[12])) / tick
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    out["all threads"] = (int(fields[11]) + int(fields[12])) / tick
    return out


def inner(log: str, skip_s: float, window_s: float, memtop_args: list[str]) -> int:
    """memtop's TUI in this process, with a probe thread that writes the split to ``log``."""
    sys.path.insert(0, str(ROOT))
    from memtop.collect.collector import Part

    runs: collections.Counter = collections.Counter()
    cpu: collections.Counter = collections.Counter()

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    def wrap(cls) -> None:
        collect = cls.collect

        def counted(self, job, _collect=collect):
            start = time.thread_time()
            try:
                return _collect(self, job)
            finally:
                runs[self.name] += 1
                cpu[self.name] += time.thread_time() - start

        cls.collect = counted

    def probe() -> None:
        import memtop.collect.parts  # noqa: F401 -- every Part subclass defined before wrapping

        for cls in set(subclasses(Part)):
            if "collect" in vars(cls):
                wrap(cls)
        time.sleep(skip_s)
        before, runs0, cpu0, t0 = _thread_cpu(), runs.copy(), cpu.copy(), time.monotonic()
        time.sleep(window_s)
        after, elapsed = _thread_cpu(), time.monotonic() - t0
        with open(log, "w") as f:
            for name, value in after.items():
                f.write(f"{name:<20} {100 * (value - before.get(name, 0.0)) / elapsed:5.2f} %\n")
            for name in sorted(runs):
                n = runs[name] - runs0[name]
                if n:
                    f.write(f"part {name:<15} {n:3d} runs, {1000 * (cpu[name] - cpu0[name]):6.0f} ms of CPU"
                            f" ({100 * (cpu[name] - cpu0[name]) / elapsed:.2f} %)\n")

    threading.Thread(target=probe, daemon=True, name="bench-probe").start()
    from memtop.cli import main

    return main(memtop_args)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        log, skip_s, window_s = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
        sys.exit(inner(log, skip_s, window_s, sys.argv[5:]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=100, help="sleepers started")
    ap.add_argument("--tab", default="1", help="the tab's digit")
    ap.add_argument("--settle", type=float, default=8.0, help="seconds on the tab before the window")
    ap.add_argument("--window", type=float, default=40.0)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.compare import Population, Tmux, Tools, machine_procs

    press_at = 5.0
    pop, tm = Population(), None
    log = Path(tempfile.mkdtemp()) / "split.txt"
    try:
        if args.procs:
            pop.grow_to(args.procs)
        tm = Tmux(Tools(log.parent).env)
        tm.run([sys.executable, str(Path(__file__).resolve()), "--inner", str(log), str(press_at + args.settle),
                str(args.window), "--interval", "2"], ROOT)
        time.sleep(press_at)
        tm.keys(args.tab)
        deadline = time.monotonic() + args.settle + args.window + 30
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        print(f"tab {args.tab}, {machine_procs()} processes, {args.settle:.0f} s after showing it, {args.window:.0f} s:")
        print(log.read_text() if log.exists() else "no figures: memtop ended before the window did")
    finally:
        if tm is not None:
            tm.close()
        pop.close()


if __name__ == "__main__":
    main()
