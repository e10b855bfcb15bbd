"""cgroup v2 text captured from a real kernel: Debian trixie's 6.12.118 booted under virtme-ng
(tests/fixtures/containers/capture_v2_guest.py, run in the guest; this machine's own memory
controller is on v1). A cgroup ``memtop-capture`` with memory.max 64 MiB and a process holding
24 MiB (before/), then a second process OOM-killed in it (kmsg-oom.json, after/).
"""

from __future__ import annotations

import json
from pathlib import Path

from memtop.model.containers import container_of
from memtop.model.oom import CgroupCounters, OomTick, OomWatch, ProcessBrief, rank_kernel_tasks
from memtop.procfs.cgroup import MemoryHierarchy, parse_mountinfo_cgroups
from memtop.procfs.containers import name_process, parse_process_cgroups, read_container_memory
from memtop.procfs.oom import OomReportParser, parse_kmsg_record

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "containers" / "v2-guest"
MiB = 1 << 20
PAGE = 4096


def flat(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines() if line.strip())}


def entry_of(state: str):
    hierarchy = MemoryHierarchy(2, FIX / state)
    container = container_of("/memtop-capture")
    return read_container_memory(hierarchy, container, "/memtop-capture", [], {"SwapFree": 0})


def test_the_guests_proc_files_name_the_cgroup_and_the_mount():
    cgroups = parse_process_cgroups((FIX / "proc-pid-cgroup").read_text(), 2)
    assert cgroups.memory == "/memtop-capture"
    container, memory = name_process(cgroups)
    assert container.cgroup == "/memtop-capture" and memory == "/memtop-capture"
    [mount] = [m for m in parse_mountinfo_cgroups((FIX / "proc-self-mountinfo").read_text()) if m.fstype == "cgroup2"]
    assert mount.mount_point == "/sys/fs/cgroup"


def test_v2_figures_are_the_kernels_files():
    entry = entry_of("before")
    files = FIX / "before" / "memtop-capture"
    stat = flat(files / "memory.stat")
    assert entry.version == 2 and entry.current == int((files / "memory.current").read_text())
    assert entry.limit == 64 * MiB == int((files / "memory.max").read_text()) and entry.limit_from == "/memtop-capture"
    assert entry.high is None  # "max"
    assert entry.peak == int((files / "memory.peak").read_text())
    for key in ("anon", "file", "kernel", "kernel_stack", "pagetables", "percpu", "sock", "vmalloc", "shmem",
                "file_mapped", "file_dirty", "file_writeback", "active_anon", "inactive_anon", "active_file",
                "inactive_file", "unevictable", "slab_reclaimable", "slab_unreclaimable", "anon_thp"):
        assert entry.split[key] == stat[key], key
    assert entry.split["anon"] >= 24 * MiB  # the holder's bytearray
    assert entry.reclaim.file_clean == stat["active_file"] + stat["inactive_file"] - stat["file_dirty"] - stat["file_writeback"]
    assert entry.reclaim.slab_reclaimable == stat["slab_reclaimable"]
    assert entry.reclaim.cannot == entry.current - entry.reclaim.total - entry.reclaim.file_dirty_writeback
    assert entry.page_cache == stat["file"] - stat["shmem"]
    assert dict(entry.events) == flat(files / "memory.events")
    assert entry.pressure is not None and entry.pressure.some.total_us == 0
    assert not any(key.startswith("split.") for key in entry.unknown)  # 6.12 writes every line


def test_the_v2_kill_the_kernel_report_and_the_watch():
    parser = OomReportParser()
    reports = [r for raw in json.loads((FIX / "kmsg-oom.json").read_text())
               if (r := parser.feed(parse_kmsg_record(raw.encode("latin-1")))) is not None]
    victim = int((FIX / "kmsg-oom.victim").read_text())
    [report] = reports
    assert report.pid == victim and report.constraint == "CONSTRAINT_MEMCG"
    assert report.oom_memcg == report.task_memcg == "/memtop-capture"
    assert rank_kernel_tasks(report, 64 * MiB // PAGE, PAGE)[0][1] == victim
    before, after = entry_of("before"), entry_of("after")
    events_after = flat(FIX / "after" / "memtop-capture" / "memory.events")
    assert after.events["oom_kill"] == events_after["oom_kill"] == 1 and after.events["oom"] == 1
    counters = lambda e: {"/memtop-capture": CgroupCounters(  # noqa: E731
        "/memtop-capture", 2, e.events["oom_kill"], oom=e.events["oom"], max_events=e.events["max"],
        current=e.current, limit=64 * MiB, oom_totalpages=64 * MiB // PAGE)}
    holder = ProcessBrief(victim - 1, 1, "python3", "/memtop-capture", 24 * MiB, 24 * MiB, 0, "S", 666, 0, 0)
    grower = ProcessBrief(victim, 2, "python3", "/memtop-capture", 30 * MiB, 30 * MiB, 0, "R", 666, 0, 0)
    watch = OomWatch()
    watch.update(OomTick(1.0, 1.0, 0, None, 500_000, PAGE, counters(before), {holder.pid: holder, grower.pid: grower}))
    [event] = watch.update(OomTick(3.0, 3.0, 1, None, 500_000, PAGE, counters(after), {holder.pid: holder}, (report,)))
    assert event.cgroup == "/memtop-capture" and event.counters["oom"] == 1 and event.counters["max_events"] > 0
    assert [(v.pid, v.source) for v in event.victims] == [(victim, "kernel log")] and event.scope == "cgroup"
