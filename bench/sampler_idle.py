"""The sampler's steady-state cost per tick against the raw syscalls it cannot avoid (run by hand).

    .venv/bin/python bench/sampler_idle.py [--ticks 20] [--procs 0] [--files]

Starts --procs sleepers (bench/compare.py's spawner) besides what runs on the machine, brings a
Sampler to its steady state (40 ticks, its clock advanced 2 s per tick so every process has a
known ΔRSS/min and the idle shortcuts apply), then prints the median CPU of one tick against one
pread(2) of every held stat file plus one fstat(2) of every held fd directory plus listdir(/proc):
the difference is the Python work per tick (and the rollups due that tick).

--files: what the kernel offers instead, per process: one pread of a held /proc/PID/stat,
statm, schedstat, status and smaps_rollup; open+read+close by path and relative to a held
/proc/PID directory; fstat of a held fd directory and fstatat relative to /proc/PID. And what a
held proc file costs in kernel memory: a probe memory cgroup (v1 memory.kmem.usage_in_bytes, or
v2 memory.stat "kernel") holding only this process, before and after opening and reading one file
per process (a read /proc file keeps its 4 KiB seq_file buffer until it is closed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compare import Population  # noqa: E402
from memtop.collect.sampler import Sampler  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=20)
    ap.add_argument("--procs", type=int, default=0)
    ap.add_argument("--files", action="store_true", help="per-file read costs and kernel memory per held file")
    args = ap.parse_args()
    pop = Population()
    try:
        pop.grow_to(args.procs)
        if args.files:
            files()
        s = Sampler()
        clock = [0.0]
        s._clock = lambda: clock[0]
        for _ in range(40):
            clock[0] += 2.0
            snap = s.sample()
        cpu, rollups = [], []
        for _ in range(args.ticks):
            clock[0] += 2.0
            t0 = time.thread_time()
            snap = s.sample()
            cpu.append(time.thread_time() - t0)
            rollups.append(snap.rollups_read)
        stat_fds = list(s._stat_files._fds.values())
        dir_fds = list(s._fd_dirs._fds.values()) if s._fd_dirs is not None else []
        raw = []
        for _ in range(args.ticks):
            t0 = time.thread_time()
            for fd in stat_fds:
                try:
                    os.pread(fd, 4096, 0)
                except OSError:  # gone since
                    pass
            for fd in dir_fds:
                try:
                    os.fstat(fd)
                except OSError:
                    pass
            os.listdir("/proc")
            raw.append(time.thread_time() - t0)
        n = len(snap.processes)
        med, rmed = statistics.median(cpu), statistics.median(raw)
        print(f"{n} processes: sampler {med * 1000:.1f} ms CPU per tick (median of {args.ticks}; "
              f"{statistics.mean(rollups):.0f} rollups read per tick), raw syscalls {rmed * 1000:.1f} ms; "
              f"Python and rollups {(med - rmed) / n * 1e6:.1f} µs per process; at 2 s: {med / 2 * 100:.2f} % of a core")
        s.close()
    finally:
        pop.close()


def _per_process_us(pids: list, fn, reps: int = 7) -> float:
    times = []
    for _ in range(reps):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return statistics.median(times) / max(1, len(pids)) * 1e6


def _open_all(pids: list, name: str, flags: int = os.O_RDONLY, dir_fds: dict | None = None) -> dict:
    out = {}
    for pid in pids:
        try:
            out[pid] = (os.open(name, flags, dir_fd=dir_fds[pid]) if dir_fds is not None
                        else os.open(f"/proc/{pid}/{name}", flags))
        except (OSError, KeyError):
            pass
    return out


def _close_all(fds: dict) -> None:
    for fd in fds.values():
        os.close(fd)


def _pread_all(fds: dict) -> None:
    for fd in fds.values():
        try:
            os.pread(fd, 4096, 0)
        except OSError:
            pass


def files() -> None:
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    print(f"{len(pids)} processes: µs per process (median of 7 passes over all of them)")
    for name in ("stat", "statm", "schedstat", "status", "smaps_rollup"):
        fds = _open_all(pids, name)
        print(f"  pread of a held /proc/PID/{name:13s} {_per_process_us(pids, lambda: _pread_all(fds)):6.2f}")
        _close_all(fds)

    dirs = _open_all(pids, "", os.O_RDONLY | os.O_DIRECTORY)
    fd_dirs = _open_all(pids, "fd", os.O_RDONLY | os.O_DIRECTORY)

    def each(calls) -> None:
        """Run every call, ignoring the errors of processes gone meanwhile."""
        for call in calls:
            try:
                call()
            except OSError:
                pass

    def open_read_close(opener) -> None:
        fd = opener()
        try:
            os.read(fd, 4096)
        finally:
            os.close(fd)

    cases = (
        ("open+read+close of /proc/PID/stat by path",
         lambda: each(lambda pid=pid: open_read_close(lambda: os.open(f"/proc/{pid}/stat", os.O_RDONLY)) for pid in pids)),
        ("the same relative to a held /proc/PID",
         lambda: each(lambda d=d: open_read_close(lambda: os.open("stat", os.O_RDONLY, dir_fd=d)) for d in dirs.values())),
        ("fstat of a held /proc/PID/fd", lambda: each(lambda fd=fd: os.fstat(fd) for fd in fd_dirs.values())),
        ('fstatat(/proc/PID, "fd")', lambda: each(lambda d=d: os.stat("fd", dir_fd=d) for d in dirs.values())),
    )
    for label, fn in cases:
        print(f"  {label:42s} {_per_process_us(pids, fn):6.2f}")
    _close_all(dirs)
    _close_all(fd_dirs)
    print(f"  kernel memory per held, read proc file: {_kernel_bytes_per_held_file(pids)}")


def _kernel_bytes_per_held_file(pids: list) -> str:
    """Bytes of kernel memory one held and read /proc/PID/stat costs, from a probe cgroup holding
    only this process (moved back to its own cgroup after)."""
    v1 = Path("/sys/fs/cgroup/memory")
    lines = [line.split(":", 2) for line in Path("/proc/self/cgroup").read_text().splitlines()]
    if v1.is_dir():
        base, own = v1, next((path for _, ctl, path in lines if "memory" in ctl.split(",")), "/")

        def kernel(cg: Path) -> int:
            return int((cg / "memory.kmem.usage_in_bytes").read_text())
    else:
        base, own = Path("/sys/fs/cgroup"), next((path for hid, _, path in lines if hid == "0"), "/")

        def kernel(cg: Path) -> int:
            stat = dict(line.split() for line in (cg / "memory.stat").read_text().splitlines())
            return int(stat["kernel"])
    probe = base / f"memtop-bench-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as e:
        return f"unknown (cannot make a probe cgroup in {base}: {e})"
    try:
        (probe / "cgroup.procs").write_text(str(os.getpid()))
        before = kernel(probe)
        fds = _open_all(pids, "stat")
        opened = kernel(probe)
        _pread_all(fds)
        read = kernel(probe)
        _close_all(fds)
        n = max(1, len(fds))
        return (f"{(opened - before) / n:.0f} B when opened, {(read - before) / n:.0f} B once read "
                f"({len(fds)} files: {(read - before) / 2**20:.1f} MiB)")
    except (OSError, KeyError, ValueError) as e:
        return f"unknown ({e})"
    finally:
        (base / own.lstrip("/") / "cgroup.procs").write_text(str(os.getpid()))
        probe.rmdir()


if __name__ == "__main__":
    main()
