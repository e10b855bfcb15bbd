"""Per-container memory from captured cgroup files, held against the files themselves.

tests/fixtures/containers/ was captured on this machine (cgroup v1, kernel 6.18) by capture.py:
a cgroup ``memtop-test`` limited to 96 MiB with a child ``app`` (no limit of its own) holding a
process with 24 MiB of anonymous memory and one that read a 16 MiB cold file, left 4 MiB of
dirty page cache and wrote 8 MiB to /dev/shm. The v2 checks use tests/fixtures/pressure/v2tree,
which was written by hand from the kernel's cgroup-v2.rst (this machine's memory controller is on
v1; see that directory's README): they check the v2 code path, not a kernel.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from memtop.collect.sampler import Sampler
from memtop.model.containers import (
    CGROUP,
    SERVICE,
    SwapRoom,
    events_delta,
    memory_split,
    reclaim_estimate,
    swap_room,
)
from memtop.procfs.containers import ContainerCollector, name_process, parse_process_cgroups

FIX = Path(__file__).resolve().parent.parent / "fixtures"
TREE = FIX / "containers" / "tree" / "proc"
V2TREE = FIX / "pressure" / "v2tree" / "proc"
MiB = 1 << 20


def flat(path: Path) -> dict[str, int]:
    """An independent reading of a 'key value' cgroup file."""
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines() if line.strip())}


def number(path: Path) -> int:
    return int(path.read_text())


def samples(root: Path):
    return [view.sample for view in Sampler(root, stagger=1, idle_stagger=1).sample().processes]


def test_process_cgroup_lines_captured_here():
    pid = next(p for p in TREE.iterdir() if p.name.isdigit())
    cgroups = parse_process_cgroups((pid / "cgroup").read_text(), 1)
    assert cgroups.memory == "/memtop-test/app"
    assert "/" in cgroups.naming  # the name=systemd and unified lines of this host are at the root
    container, memory = name_process(cgroups)
    assert container.kind == CGROUP and container.cgroup == "/memtop-test/app" and memory == "/memtop-test/app"


def test_a_systemd_unit_names_the_process_when_the_memory_controller_has_only_its_slice():
    # A v1 host without MemoryAccounting=: the memory line stops at the slice, name=systemd has
    # the unit (the layout of /proc/PID/cgroup in man 7 cgroups).
    text = ("12:memory:/system.slice\n"
            "1:name=systemd:/system.slice/nginx.service\n"
            "0::/system.slice/nginx.service\n")
    container, memory = name_process(parse_process_cgroups(text, 1))
    assert container.kind == SERVICE and container.name == "nginx.service" and memory == "/system.slice"


def test_v1_container_figures_are_the_kernels_files():
    processes = samples(TREE)
    sample = ContainerCollector(TREE, names=False).collect(processes)
    assert sample.version == 1
    entry = sample.by_cgroup("/memtop-test/app")
    files = TREE.parent / "sys/fs/cgroup/memory/memtop-test/app"
    stat = flat(files / "memory.stat")
    assert entry.current == number(files / "memory.usage_in_bytes")
    # The limit that applies is the parent's (hierarchical_memory_limit), and it says which.
    assert entry.limit == stat["hierarchical_memory_limit"] == 96 * MiB
    assert entry.limit_from == "/memtop-test"
    assert entry.headroom == entry.limit - entry.current
    split = entry.split
    assert split["anon"] == stat["total_rss"]
    assert split["file"] == stat["total_cache"]
    assert split["shmem"] == stat["total_shmem"] == 8 * MiB  # the 8 MiB written to /dev/shm
    assert split["file_dirty"] == stat["total_dirty"] == 4 * MiB  # the 4 MiB left dirty
    assert split["active_file"] == stat["total_active_file"] and split["inactive_file"] == stat["total_inactive_file"]
    assert split["kernel"] == number(files / "memory.kmem.usage_in_bytes")
    assert split["sock"] == number(files / "memory.kmem.tcp.usage_in_bytes")
    assert split["slab_reclaimable"] is None and "no slab lines" in entry.unknown["split.slab_reclaimable"]
    assert entry.page_cache == stat["total_cache"] - stat["total_shmem"]
    # Reclaimable: the clean file pages (the 16 MiB cold file); the dirty 4 MiB only after
    # writeback; anon and shmem not at all (no swap here: SwapFree 0).
    reclaim = entry.reclaim
    assert reclaim.file_clean == stat["total_active_file"] + stat["total_inactive_file"] - stat["total_dirty"] \
        - stat["total_writeback"] == 16 * MiB
    assert reclaim.file_dirty_writeback == 4 * MiB
    assert reclaim.by_swap == 0 and "SwapFree 0" in entry.swap.reason
    assert reclaim.total == 16 * MiB
    assert reclaim.cannot == entry.current - 16 * MiB - 4 * MiB
    assert reclaim.cannot >= stat["total_rss"] + stat["total_shmem"]  # anon + tmpfs are in it
    # The members and their PSS, from their smaps_rollup files.
    pss = 0
    for pid in entry.members.pids:
        rollup = (TREE / str(pid) / "smaps_rollup").read_text()
        pss += int(next(l for l in rollup.splitlines() if l.startswith("Pss:")).split()[1]) * 1024
    assert entry.members.pss == pss and entry.members.pss_known == 2
    assert set(entry.members.pids) == {int(p.name) for p in TREE.iterdir() if p.name.isdigit()}
    assert entry.events["failcnt"] == number(files / "memory.failcnt")
    assert entry.events_delta == {}  # the first tick has nothing to compare with
    assert entry.pressure is None and "system PSI" in entry.unknown["pressure"]
    assert sample.by_pid[entry.members.pids[0]].cgroup == "/memtop-test/app"


def test_v2_container_figures_from_the_hand_written_tree():
    processes = samples(V2TREE)
    entry = ContainerCollector(V2TREE, names=False).collect(processes).by_cgroup("/system.slice/postgresql.service")
    files = V2TREE.parent / "sys/fs/cgroup/system.slice/postgresql.service"
    stat = flat(files / "memory.stat")
    assert entry.container.kind == SERVICE and entry.container.name == "postgresql.service"
    assert entry.version == 2 and entry.current == number(files / "memory.current")
    assert entry.limit == number(files / "memory.max") and entry.limit_from == "/system.slice/postgresql.service"
    assert entry.high == number(files / "memory.high")
    for key in ("anon", "file", "kernel", "kernel_stack", "pagetables", "percpu", "sock", "shmem", "file_mapped",
                "slab_reclaimable", "slab_unreclaimable", "active_file", "inactive_file"):
        assert entry.split[key] == stat[key], key
    assert entry.reclaim.file_clean == stat["active_file"] + stat["inactive_file"] - stat["file_dirty"] - stat["file_writeback"]
    assert entry.reclaim.slab_reclaimable == stat["slab_reclaimable"]
    assert entry.reclaim.total == entry.reclaim.file_clean + stat["slab_reclaimable"]  # no swap
    assert entry.pressure is not None and entry.pressure.some.total_us > 0
    assert entry.events["oom_kill"] == flat(files / "memory.events")["oom_kill"]


def test_swap_room_follows_free_swap_the_cgroup_limit_and_swappiness():
    assert swap_room(swap_free=0, swappiness=60, swap_limit=None, swap_usage=0, swap_limit_name="x").bytes == 0
    assert swap_room(swap_free=8 * MiB, swappiness=0, swap_limit=None, swap_usage=0, swap_limit_name="x").bytes == 0
    assert swap_room(swap_free=8 * MiB, swappiness=60, swap_limit=None, swap_usage=0, swap_limit_name="x").bytes == 8 * MiB
    room = swap_room(swap_free=8 * MiB, swappiness=60, swap_limit=3 * MiB, swap_usage=1 * MiB, swap_limit_name="memory.swap.max")
    assert room.bytes == 2 * MiB and room.limit == 3 * MiB and room.swappiness == 60
    assert swap_room(swap_free=None, swappiness=60, swap_limit=None, swap_usage=0, swap_limit_name="x").bytes is None


def test_reclaim_with_swap_takes_anon_up_to_the_swap_room():
    split, _why = memory_split(2, {"active_file": 10, "inactive_file": 20, "file_dirty": 5, "file_writeback": 1,
                                   "active_anon": 100, "inactive_anon": 50, "slab_reclaimable": 7})
    reclaim = reclaim_estimate(2, 300, split, SwapRoom(40, "test"))
    assert (reclaim.file_clean, reclaim.file_dirty_writeback, reclaim.by_swap, reclaim.total) == (24, 6, 40, 71)
    assert reclaim.cannot == 300 - 71 - 6
    unknown = reclaim_estimate(2, 300, split, SwapRoom(None, "SwapFree unknown"))
    assert unknown.by_swap is None and unknown.total is None and unknown.cannot is None
    assert unknown.unknown["by_swap"] == "SwapFree unknown"


def test_v1_lacks_are_named():
    split, why = memory_split(1, {"total_rss": 1, "total_cache": 2}, kmem_usage=None, tcp_usage=None)
    assert split["kernel"] is None and "kmem" in why["kernel"]
    assert split["percpu"] is None and why["percpu"] == "cgroup v1 memory.stat has no percpu line"
    assert split["anon"] == 1 and split["file"] == 2


def test_events_delta_between_ticks():
    assert events_delta(None, {"oom_kill": 3}) == {}
    assert events_delta({"oom_kill": 1, "max": 5, "under_oom": 0}, {"oom_kill": 3, "max": 5, "under_oom": 1}) == {"oom_kill": 2}
    # A counter that went down: the cgroup was made again; its whole value is new.
    assert events_delta({"oom_kill": 4}, {"oom_kill": 1}) == {"oom_kill": 1}


@pytest.mark.parametrize("root", [TREE, V2TREE])
def test_a_captured_tree_gives_no_names_from_the_host(root):
    # Names are read from the host's runtime files only for the live /proc.
    assert ContainerCollector(root).names is None


def test_findings_say_what_counts_against_the_limit_and_json_is_plain():
    import json

    from memtop.model.containers import container_findings, container_json
    from memtop.model.findings import Severity
    from memtop.text import json_dumps

    entry = ContainerCollector(V2TREE, names=False).collect(samples(V2TREE)).by_cgroup("/system.slice/postgresql.service")
    [finding] = container_findings(entry)
    assert finding.severity == Severity.CRITICAL  # 255 of 256 MiB in the hand-written tree
    assert "postgresql.service uses 255 MiB of its 256 MiB limit" in finding.text
    assert "tmpfs/shared memory 16 MiB" in finding.text and "page cache 28 MiB" in finding.text
    assert f"reclaim can still free {entry.reclaim.total / MiB:.0f} MiB" in finding.text
    assert "tmpfs leaves only by swap" in finding.next_step
    data = json.loads(json_dumps(container_json(entry)))
    assert data["current"] == entry.current and data["reclaim"]["file_clean"] == entry.reclaim.file_clean
    assert data["kind"] == "service" and data["cgroup_version"] == 2
    # Far from the limit: nothing to say.
    below = ContainerCollector(TREE, names=False).collect(samples(TREE)).by_cgroup("/memtop-test/app")
    assert container_findings(below) == []


def test_membership_is_reused_until_a_process_comes_or_goes_or_a_reading_again_differs():
    # The Processes tab redraws its rows whenever the mapping it holds is replaced: on a quiet
    # machine (most ticks) the same mapping comes back, and nothing is read or grouped again.
    now = [1000.0]
    collector = ContainerCollector(TREE, names=False, clock=lambda: now[0])
    processes = [s for s in samples(TREE) if not s.kernel_thread]
    first = collector.membership(processes)
    assert first.by_pid and set(first.by_pid) <= {s.pid for s in processes}
    now[0] += 2
    assert collector.membership(processes).by_pid is first.by_pid
    # a process gone: a new mapping without it
    fewer = collector.membership(processes[1:])
    assert fewer.by_pid is not first.by_pid and processes[0].pid not in fewer.by_pid
    assert dict(fewer.by_pid) == {pid: c for pid, c in first.by_pid.items() if pid != processes[0].pid}
    # every reading due again (1.5 times membership_s at most): read again, the same answers,
    # so the same mapping (a changed answer regroups: tests/live/test_containers_live.py)
    back = collector.membership(processes)
    due = [entry[0] for entry in collector._membership.values()]
    now[0] += 1.5 * collector.membership_s
    again = collector.membership(processes)
    assert again.by_pid is back.by_pid and dict(again.by_pid) == dict(first.by_pid)
    assert all(entry[0] > max(due) for entry in collector._membership.values())
