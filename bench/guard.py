"""The pressure guard's scenario: the same workload with and without ``memtop guard``.

Run by hand, as root, from the project root:

    .venv/bin/python -m bench.guard [--limit 256] [--duration 90] [--modes none,act,dry-run]

The workload, in a memory cgroup made for the run (v1 memory.limit_in_bytes = --limit MiB; and a
cgroup v2 of the same name when a cgroup2 hierarchy is mounted, whose memory.pressure counts the
stall of exactly these processes):

- 4 services (C) that spike: each allocates --spike MiB in 1000-byte chunks and frees all but the
  last one, so glibc keeps the freed memory resident (free-but-kept heap); they spike again every
  --period seconds, one after the other;
- a reader (Python) that reads a --working-set MiB file over and over through mmap (its page cache
  must stay resident to go fast: when it does not fit, it stalls on refaults);
- a grower (C) that takes --grow MiB of anonymous memory (mmap'd, in use) in 4 MiB steps over the
  first two thirds of the run and holds it.

With the defaults the anonymous memory alone (4 x 40 MiB kept + 80 MiB + the reader's ~12 MiB)
reaches the limit, so without the guard the OOM killer must act; the services spike 8 times a
minute, so the guard is allowed 10 stops a minute (--max-stops; with 6 it falls behind them).

Without the guard the kept heap crowds the reader's page cache out (refault stalls) and the
grower runs the cgroup out of memory (the OOM killer); with ``memtop guard --act`` the kept heap is
trimmed under pressure. Each run reports, from the kernel: memory stall (the cgroup's PSI ``some``
and ``full`` total delta; the system's too), OOM kills (memory.oom_control oom_kill), failcnt, the
reader's passes over its file (work done), and which processes are still alive at the end; and,
from the guard's JSON log, its trims and what they released. Swap is off on the host this was
written on; when swap is on, the cgroup's memory.swappiness is set to 0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.guard_support import GuardProcess, PressureCgroup
from tests.pressure_support import make_cold_file
from tests.support import Child, compile_c

MIB = 1 << 20

SERVICE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void *volatile pin;
static void spike(size_t mib) {
    size_t n = mib * 1024 * 1024 / 1000;
    char **v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) { v[i] = malloc(1000); memset(v[i], 5, 1000); }
    for (size_t i = 0; i + 1 < n; i++) free(v[i]);
    pin = v[n - 1];   /* the last chunk stays: the top cannot shrink, the freed memory stays resident */
    free(v);
}
int main(int argc, char **argv) {
    size_t mib = strtoul(argv[1], NULL, 10);
    unsigned period = atoi(argv[2]), offset = atoi(argv[3]);
    spike(mib);
    printf("READY\n");
    fflush(stdout);
    sleep(offset);
    for (;;) { sleep(period); spike(mib); }
}
"""

GROWER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    size_t total = strtoul(argv[1], NULL, 10), step = 4;
    unsigned interval_ms = atoi(argv[2]);
    printf("READY\n");
    fflush(stdout);
    for (size_t have = 0; have < total; have += step) {
        usleep(interval_ms * 1000);
        char *p = mmap(NULL, step << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return 1;
        memset(p, 1, step << 20);   /* in use: nothing a trim could give back */
        printf("HAVE %zu\n", have + step);
        fflush(stdout);
    }
    for (;;) pause();
}
"""

READER = r"""
import mmap, sys
f = open(sys.argv[1], 'rb')
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
print('READY', flush=True)
n, passes = len(m), 0
while True:
    for i in range(0, n, 4096):
        m[i]
    passes += 1
    print('PASS', passes, flush=True)
"""


def swap_on() -> bool:
    lines = Path("/proc/swaps").read_text().splitlines()
    return len(lines) > 1


def system_stall_us() -> tuple[int, int]:
    out = [0, 0]
    for line in Path("/proc/pressure/memory").read_text().splitlines():
        kind, *fields = line.split()
        out[0 if kind == "some" else 1] = int(dict(f.split("=") for f in fields)["total"])
    return out[0], out[1]


def dmesg_oom_lines(cgroup_name: str) -> int | None:
    """OOM-killer reports naming this cgroup in the kernel log, or None when it cannot be read."""
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return sum(1 for line in out.stdout.splitlines() if "oom-kill" in line and cgroup_name in line)


class StallSampler(threading.Thread):
    """The cgroup's stall total every 0.5 s, for a per-interval profile of where the stall was."""

    def __init__(self, cg: PressureCgroup):
        super().__init__(daemon=True)
        self.cg = cg
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.samples.append((time.monotonic(), self.cg.stall_us()[0]))
            except OSError:
                return
            self.done.wait(0.5)

    def profile(self, started: float, step: float = 5.0) -> list[float]:
        """Stall seconds in each ``step`` seconds from ``started``."""
        out: list[float] = []
        prev_t, prev_v = None, None
        for t, v in self.samples:
            if prev_t is not None and t >= started:
                index = int((t - started) // step)
                while len(out) <= index:
                    out.append(0.0)
                out[index] += (v - prev_v) / 1e6
            prev_t, prev_v = t, v
        return [round(x, 2) for x in out]


class PassCounter(threading.Thread):
    """Counts the reader's ``PASS n`` lines as they come (the reader's work done)."""

    def __init__(self, child: Child):
        super().__init__(daemon=True)
        self.child = child
        self.passes = 0
        self.start()

    def run(self) -> None:
        for raw in self.child.proc.stdout:
            parts = raw.split()
            if len(parts) == 2 and parts[0] == b"PASS":
                self.passes = int(parts[1])


def run_once(mode: str, args, binaries: dict, working_set: Path) -> dict:
    """One run of the scenario; ``mode``: none (no guard), act, dry-run."""
    fd = os.open(working_set, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # every run starts cold
    os.close(fd)
    with PressureCgroup(args.limit * MIB) as cg:
        if swap_on():
            (cg.v1.path / "memory.swappiness").write_text("0")
        oom_start = cg.oom_kills()
        dmesg_start = dmesg_oom_lines(cg.name)
        sys_start = system_stall_us()
        guard = None
        children: dict[str, Child] = {}
        try:
            if mode != "none":
                guard = GuardProcess(
                    "--act" if mode == "act" else "--dry-run", "--allow-cgroup", cg.memory_path,
                    *(["--pressure-cgroup", cg.pressure_cgroup] if cg.pressure_cgroup else []),
                    "--trigger", args.trigger, "--min-release", "16M", "--cooldown", str(args.cooldown),
                    "--max-stops-per-minute", str(args.max_stops))
                guard.wait_event("start", timeout=30)
            cg_start = cg.stall_us()
            started = time.monotonic()
            sampler = StallSampler(cg)
            for i in range(args.services):
                children[f"service{i + 1}"] = cg.start(
                    [binaries["service"], str(args.spike), str(args.period), str(i * args.period // args.services)])
            grow_window_ms = int(args.duration * 2 / 3 * 1000)
            children["grower"] = cg.start([binaries["grower"], str(args.grow), str(grow_window_ms * 4 // args.grow)])
            children["reader"] = cg.start_python(READER, str(working_set))
            counter = PassCounter(children["reader"])
            while time.monotonic() - started < args.duration:
                time.sleep(1)
            passes = counter.passes
            cg_end = cg.stall_us()
            sampler.done.set()
            sampler.join(5)
            sys_end = system_stall_us()
            alive = {name: child.alive() for name, child in children.items()}
            result = {
                "mode": mode,
                "seconds": round(time.monotonic() - started, 1),
                "cgroup_stall_some_s": (cg_end[0] - cg_start[0]) / 1e6,
                "cgroup_stall_full_s": (cg_end[1] - cg_start[1]) / 1e6,
                "system_stall_some_s": (sys_end[0] - sys_start[0]) / 1e6,
                "oom_kills": cg.oom_kills() - oom_start,
                "failcnt": int(cg.read("memory.failcnt")),
                "max_usage_mib": int(cg.read("memory.max_usage_in_bytes")) / MIB,
                "reader_passes": passes,
                "alive": alive,
                "stall_per_5s": sampler.profile(started),
                "stall_source": "cgroup v2 memory.pressure" if cg.pressure_cgroup else "system /proc/pressure/memory",
            }
            dmesg_end = dmesg_oom_lines(cg.name)
            result["dmesg_oom"] = None if dmesg_start is None or dmesg_end is None else dmesg_end - dmesg_start
            if guard is not None:
                assert guard.stop() == 0, "the guard did not stop cleanly"
                trims = guard.of("trim")
                result["trims_ok"] = sum(e["status"] == "ok" for e in trims)
                result["trims_other"] = [e["status"] for e in trims if e["status"] != "ok"]
                result["released_mib"] = sum(e["released_bytes"] or 0 for e in trims if e["status"] == "ok") / MIB
                result["would_trim"] = len(guard.of("would-trim"))
                result["max_stop_ms"] = max((e["stopped_ms"] or 0 for e in trims), default=None)
                result["episodes"] = len(guard.of("pressure"))
                result["episode_stall_s"] = [(round(e["seconds"], 1), round(e["stall_some_us"] / 1e6, 2))
                                             for e in guard.of("calm")]
                if args.verbose:
                    for line in guard.raw:
                        print("   ", line[:300])
                result["choices"] = [(e["pid"], e.get("comm")) for e in guard.events
                                     if e.get("event") in ("trim", "would-trim")][:8]
                pid_names = {child.pid: name for name, child in children.items()}
                result["choices"] = [pid_names.get(pid, str(pid)) for pid, _ in result["choices"]]
            return result
        finally:
            if guard is not None:
                guard.close()
            for child in children.values():
                child.close()


def _trims(result: dict) -> str:
    if result["mode"] == "dry-run":
        return f"({result['would_trim']})"  # chosen, not done
    return str(result.get("trims_ok", "-"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=256, help="the cgroup's memory limit, MiB (default 256)")
    parser.add_argument("--duration", type=int, default=90, help="seconds per run (default 90)")
    parser.add_argument("--services", type=int, default=4)
    parser.add_argument("--spike", type=int, default=40, help="MiB each service spikes to and keeps (default 40)")
    parser.add_argument("--period", type=int, default=30, help="seconds between a service's spikes (default 30)")
    parser.add_argument("--grow", type=int, default=80, help="MiB the grower takes (default 80)")
    parser.add_argument("--working-set", type=int, default=112, help="MiB of file the reader cycles over (default 112)")
    parser.add_argument("--cooldown", type=int, default=20, help="the guard's per-process cooldown, s (default 20)")
    parser.add_argument("--max-stops", type=int, default=10,
                        help="the guard's stops per minute (default 10: the services spike 8 times a minute)")
    parser.add_argument("--trigger", default="some 100000 2000000")
    parser.add_argument("--modes", default="none,act,dry-run")
    parser.add_argument("--verbose", action="store_true", help="print the guard's log")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root (a memory cgroup, and the guard trims other processes)", file=sys.stderr)
        return 2
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="memtop-bench-guard-")  # keep the real log clean
    binaries = {"service": compile_c(SERVICE, name="bench-guard-service"),
                "grower": compile_c(GROWER, name="bench-guard-grower")}
    with tempfile.TemporaryDirectory(prefix="memtop-bench-guard-", dir="/var/tmp") as tmp:
        working_set = make_cold_file(Path(tmp) / "working-set", args.working_set * MIB)
        print(f"cgroup limit {args.limit} MiB; {args.services} services spiking to {args.spike} MiB every "
              f"{args.period} s (kept); grower {args.grow} MiB; reader over {args.working_set} MiB; "
              f"{args.duration} s per run; swap {'on (swappiness 0)' if swap_on() else 'off'}", flush=True)
        results = []
        for mode in args.modes.split(","):
            result = run_once(mode, args, binaries, working_set)
            results.append(result)
            print(result, flush=True)
    print()
    header = f"{'guard':<8} {'stall some':>10} {'stall full':>10} {'sys some':>9} {'OOM kills':>9} {'failcnt':>9} " \
             f"{'passes':>6} {'trims':>5} {'released':>9}  alive at the end"
    print(header)
    for r in results:
        dead = [name for name, ok in r["alive"].items() if not ok]
        print(f"{r['mode']:<8} {r['cgroup_stall_some_s']:9.2f}s {r['cgroup_stall_full_s']:9.2f}s "
              f"{r['system_stall_some_s']:8.2f}s {r['oom_kills']:9d} {r['failcnt']:9d} {r['reader_passes']:6d} "
              f"{_trims(r):>5} "
              f"{r.get('released_mib', 0):8.0f}M  {'all' if not dead else 'killed: ' + ', '.join(dead)}")
    print("(dry-run: trims chosen, in parentheses, none done; "
          f"stall: {results[0]['stall_source']}; dmesg OOM reports: "
          f"{', '.join(str(r['dmesg_oom']) for r in results)})")
    for r in results:
        if r.get("choices"):
            print(f"{r['mode']} choices: {' '.join(r['choices'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
