"""Runs INSIDE a virtme-ng guest (tests/matrix/test_kernels.py boots it): collects, side by side,
what memtop reports and what the guest kernel's own files say, into OUTDIR/result.json.

It judges nothing: the host test compares the two sides, so a failure message shows both. Each
step's record is written as soon as it is taken (a crash or a timeout leaves the steps before it,
and OUTDIR/guest.log has the traceback).

    python tests/matrix/guest_kernel.py OUTDIR

Steps:
  cgroup   cgroup2 with the memory controller, a cgroup with memory.max, a process in it holding
           anonymous memory; ``memtop snapshot --json --pid`` between two reads of memory.current,
           memory.max, memory.events, memory.stat, memory.pressure.
  oom      the process pushed past memory.max until the kernel kills it; the snapshot's cgroup
           tree against memory.events (max, oom, oom_kill).
  psi      /proc/pressure/memory and the cgroup's memory.pressure (or their absence with psi=0)
           against the snapshot's pressure section.
  pagecache  cachestat(2) present or not; memtop's cached bytes of a tmpfs file, a file on an
           overlay mount made here, and the guest's /tmp (an overlay) against util-linux fincore.
  containers (with --containers) the host's live container tests (tests/live/test_containers_live.py,
           test_snapshot_containers.py, tests/tui/test_containers_tab.py) run by pytest in the
           guest, on cgroup v2: their JUnit report is the record.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

OUT = Path(sys.argv[1])
CONTAINER_TESTS = ["tests/live/test_containers_live.py", "tests/live/test_snapshot_containers.py",
                   "tests/tui/test_containers_tab.py"]
CG_NAME = "memtop-matrix"
LIMIT = 64 << 20
HOLD = 24 << 20
MEMTOP = [sys.executable, "-m", "memtop"]
result: dict = {"steps": {}, "errors": []}


def save() -> None:
    tmp = OUT / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True))
    os.replace(tmp, OUT / "result.json")


def step(name: str):
    def wrap(func):
        def run(*args):
            started = time.monotonic()
            try:
                result["steps"][name] = func(*args)
            except Exception:  # recorded for the host test, which fails on it with the traceback
                result["errors"].append({"step": name, "traceback": traceback.format_exc()})
                result["steps"][name] = None
            result.setdefault("seconds", {})[name] = round(time.monotonic() - started, 1)
            save()
            return result["steps"][name]
        return run
    return wrap


def read(path) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return f"<error {e.errno}: {os.strerror(e.errno or 0)}>"


def cgroup_files(cg: Path) -> dict:
    names = ("memory.current", "memory.max", "memory.high", "memory.events", "memory.stat", "memory.pressure")
    return {n: read(cg / n) for n in names}


def snapshot(*args: str) -> dict:
    done = subprocess.run(MEMTOP + ["snapshot", "--json", *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"memtop snapshot exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def cgroup2_mount() -> str:
    """The cgroup2 mount point (virtme-ng's init mounts one at /sys/fs/cgroup; mount it if not)."""
    for line in open("/proc/self/mountinfo"):
        left, _, right = line.partition(" - ")
        if right.split()[0] == "cgroup2":
            return left.split()[4]
    subprocess.run(["mount", "-t", "cgroup2", "none", "/sys/fs/cgroup"], check=True)
    return "/sys/fs/cgroup"


PUSHER = r"""
import os, sys
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
hold = [b"\x01" * (4 << 20) for _ in range(int(sys.argv[2]) >> 22)]   # touched, not calloc'd zero pages
print("READY", flush=True)
sys.stdin.readline()
while True:                                                            # past memory.max: reclaim, then the OOM killer
    hold.append(b"\x02" * (4 << 20))
"""


@step("info")
def info() -> dict:
    from memtop.procfs.cachestat import cachestat_supported

    return {
        "release": platform.release(),
        "cmdline": read("/proc/cmdline"),
        "cachestat_supported": cachestat_supported(),
        "proc_pressure_exists": os.path.isdir("/proc/pressure"),
        "python": sys.version.split()[0],
    }


@step("cgroup")
def cgroup_step(state: dict) -> dict:
    # khugepaged would change memory.current while the process waits (collapsing its pages into a
    # huge page): off, so that memtop's reading and the kernel's files can be compared exactly.
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists():
        thp.write_text("never")
    mount = cgroup2_mount()
    root = Path(mount)
    controllers = read(root / "cgroup.controllers")
    with open(root / "cgroup.subtree_control", "w") as f:
        f.write("+memory")
    cg = root / CG_NAME
    cg.mkdir(exist_ok=True)
    (cg / "memory.max").write_text(str(LIMIT))
    if (cg / "memory.swap.max").exists():
        (cg / "memory.swap.max").write_text("0")
    child = subprocess.Popen([sys.executable, "-c", PUSHER, str(cg), str(HOLD)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    state["child"] = child
    line = child.stdout.readline()
    if line.strip() != "READY":
        raise RuntimeError(f"the pusher did not start: {line!r}, exit {child.poll()}")
    before = cgroup_files(cg)
    snap = snapshot("--pid", str(child.pid))
    after = cgroup_files(cg)
    procs = [p for p in snap["processes"] if p["pid"] == child.pid]
    tree = [c for c in snap["pressure"]["cgroups"]["tree"] if c["path"] == "/" + CG_NAME]
    return {
        "mount": mount,
        "root_controllers": controllers,
        "pid": child.pid,
        "proc_cgroup": read(f"/proc/{child.pid}/cgroup"),
        "kernel_before": before,
        "kernel_after": after,
        "memtop_hierarchy": {k: snap["pressure"]["cgroups"][k] for k in ("version", "mount", "unknown_reason")},
        "memtop_process_cgroup": procs[0]["cgroup"] if procs else None,
        "memtop_process_rss": procs[0]["rss_bytes"] if procs else None,
        "memtop_tree_entry": tree[0] if tree else None,
        "memtop_pressure": {k: snap["pressure"][k] for k in ("unavailable_reason", "memory", "unknown_reasons")},
        "proc_pressure_memory": read("/proc/pressure/memory"),
    }


@step("oom")
def oom_step(state: dict) -> dict:
    child = state.get("child")
    if child is None:
        raise RuntimeError("no pusher (the cgroup step failed)")
    cg = Path(state_mount(state)) / CG_NAME
    child.stdin.write("push\n")
    child.stdin.flush()
    try:
        code = child.wait(timeout=300)
    except subprocess.TimeoutExpired:
        child.kill()
        code = f"not killed by the kernel within 300 s (killed by the test: {child.wait()})"
    # A process in the cgroup after the kill, for the per-process object (memory.stat, events and
    # memory.pressure: the OOM episode stalled the cgroup, so its pressure totals moved).
    sleeper = subprocess.Popen([sys.executable, "-c", SLEEPER, str(cg)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        if sleeper.stdout.readline().strip() != "READY":
            raise RuntimeError(f"the sleeper did not start (exit {sleeper.poll()})")
        before = cgroup_files(cg)
        system_before = read("/proc/pressure/memory")
        snap = snapshot("--pid", str(sleeper.pid))
        after = cgroup_files(cg)
        system_after = read("/proc/pressure/memory")
    finally:
        sleeper.kill()
        sleeper.wait()
    tree = [c for c in snap["pressure"]["cgroups"]["tree"] if c["path"] == "/" + CG_NAME]
    procs = [p for p in snap["processes"] if p["pid"] == sleeper.pid]
    return {
        "exit": code,
        "kernel_before": before,
        "kernel_after": after,
        "proc_pressure_before": system_before,
        "proc_pressure_after": system_after,
        "memtop_tree_entry": tree[0] if tree else None,
        "memtop_process_cgroup": procs[0]["cgroup"] if procs else None,
        "memtop_pressure": {k: snap["pressure"][k] for k in ("unavailable_reason", "memory", "unknown_reasons")},
        "dmesg_oom": [line for line in subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()
                      if "oom" in line.lower() or "killed process" in line.lower()][-6:],
    }


SLEEPER = r"""
import sys
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write("0")   # 0: the writing process itself
print("READY", flush=True)
sys.stdin.readline()
"""


def state_mount(state: dict) -> str:
    return result["steps"]["cgroup"]["mount"] if result["steps"].get("cgroup") else cgroup2_mount()


def fincore(path: str) -> int | None:
    done = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", path],
                          capture_output=True, text=True)
    return int(done.stdout.split()[0]) if done.returncode == 0 and done.stdout.strip() else None


def measure(path: str, real: str | None = None) -> dict:
    from memtop.procfs.cachestat import file_cache_stat

    first = file_cache_stat(path)
    truth = fincore(real or path)
    second = file_cache_stat(path)
    return {
        "path": path,
        "real": real or path,
        "size": os.stat(path).st_size,
        "memtop": [first.cached_bytes, second.cached_bytes],
        "method": second.method,
        "reason": second.reason,
        "fincore": truth,
        "fincore_by_name": fincore(path) if real else truth,
    }


@step("pagecache")
def pagecache_step() -> dict:
    base = Path("/dev/shm/memtop-matrix")
    base.mkdir(exist_ok=True)
    files = []
    # a tmpfs file: all of it resident (no swap in the guest)
    shm = base / "tmpfs.bin"
    shm.write_bytes(os.urandom(1 << 20) * 4)
    files.append(measure(str(shm)))
    # an overlay mount made here, lower and upper on tmpfs: a lower-only file and an upper one
    for d in ("lower", "upper", "work", "merged"):
        (base / d).mkdir(exist_ok=True)
    (base / "lower" / "lower.bin").write_bytes(os.urandom(1 << 20) * 3)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work", str(base / "merged")],
                   check=True, capture_output=True, text=True)
    try:
        (base / "merged" / "upper.bin").write_bytes(os.urandom(1 << 20) * 2)
        files.append(measure(str(base / "merged" / "lower.bin"), str(base / "lower" / "lower.bin")))
        files.append(measure(str(base / "merged" / "upper.bin"), str(base / "upper" / "upper.bin")))
    finally:
        subprocess.run(["umount", str(base / "merged")], check=True)
    # memtop's own interpreter, mapped from the host over 9p
    files.append(measure(os.path.realpath(sys.executable)))
    # a procfs file: no page cache at all, and not "0 bytes cached"
    from memtop.procfs.cachestat import file_cache_stat

    proc = file_cache_stat("/proc/self/status")
    return {"files": files, "proc_file": {"cached": proc.cached_bytes, "method": proc.method, "reason": proc.reason}}


@step("containers")
def containers_step() -> dict:
    """The live container tests on cgroup v2 (the host's memory controller is on v1)."""
    import xml.etree.ElementTree as ET

    report = OUT / "containers.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={report}", *CONTAINER_TESTS],
                          capture_output=True, text=True, timeout=1200, cwd=REPO,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    cases = []
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = child.tag
                    message = (child.get("message") or "")[:500]
                    break
            else:
                message = ""
            cases.append({"name": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                          "message": message})
    return {"returncode": done.returncode, "cases": cases, "tail": done.stdout[-3000:] + done.stderr[-1000:],
            "cgroup_v2_only_memory": not any(line.startswith("memory") and line.split()[1] != "0"
                                             for line in open("/proc/cgroups") if not line.startswith("#"))}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    result["started"] = time.time()
    save()
    state: dict = {}
    info()
    try:
        cgroup_step(state)
        oom_step(state)
    finally:
        child = state.get("child")
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
    pagecache_step()
    if "--containers" in sys.argv[2:]:
        containers_step()
    result["done"] = True
    save()


if __name__ == "__main__":
    main()
