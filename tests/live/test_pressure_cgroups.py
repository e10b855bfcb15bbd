"""Live: a v1 memory cgroup with a 32 MiB limit made for the test, children that allocate past
it, and the readers and the PSI trigger watching usage, failcnt, oom_kill and stall time move.

The cgroup is always removed (its tasks killed first), even when a test fails.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from memtop.model.pressure import cgroup_findings, events_since
from memtop.procfs.cgroup import locate_memory_hierarchy, memory_cgroup_of, read_cgroup_memory, walk_memory_cgroups
from memtop.procfs.pressure import (
    PsiTrigger,
    TriggerError,
    has_cap_sys_resource,
    parse_trigger_spec,
    read_system_pressure,
)
from tests.pressure_support import ALLOC_CODE, THRASH_CODE, V1Cgroup, make_cold_file, memory_psi_total_us, v1_memory_available
from tests.support import wait_until

pytestmark = pytest.mark.live
LIMIT = 32 << 20
FIX = Path(__file__).resolve().parent.parent / "fixtures" / "pressure"


@pytest.fixture
def v1_cgroup():
    reason = v1_memory_available()
    if reason:
        pytest.skip(reason)
    cg = V1Cgroup(LIMIT)
    try:
        yield cg
    finally:
        cg.close()
    assert not cg.path.exists()


@pytest.fixture(scope="module")
def cold_file(tmp_path_factory):
    # 4x the limit, on disk (ext4 here) and out of the page cache: reading it inside the cgroup
    # charges every page to the cgroup, which must keep reclaiming them.
    path = make_cold_file(tmp_path_factory.mktemp("pressure") / "cold", 4 * LIMIT)
    yield path
    path.unlink()


def test_v1_usage_failcnt_oom_kill_and_psi_move(v1_cgroup, cold_file):
    hierarchy = locate_memory_hierarchy()
    assert hierarchy.version == 1
    before = read_cgroup_memory(hierarchy, v1_cgroup.cgroup_path)
    assert before.max == LIMIT and before.events["failcnt"] == 0 and before.events["oom_kill"] == 0
    psi_before = read_system_pressure().resources["memory"].some.total_us

    thrash = v1_cgroup.start(THRASH_CODE, str(cold_file))
    try:
        assert memory_cgroup_of(thrash.pid, hierarchy) == v1_cgroup.cgroup_path
        # Usage climbs to the limit and the kernel fails charges (and reclaims) from then on.
        during = wait_until(lambda: (c := read_cgroup_memory(hierarchy, v1_cgroup.cgroup_path)).events["failcnt"] > 100 and c,
                            timeout=30)
        assert during.current > LIMIT // 2
        assert during.current == pytest.approx(int(v1_cgroup.read("memory.usage_in_bytes")), abs=LIMIT // 4)
        assert during.stat["file"] > 0
        # Reclaim inside the cgroup is memory stall time, system-wide PSI counts it.
        wait_until(lambda: read_system_pressure().resources["memory"].some.total_us > psi_before, timeout=30)
        assert memory_psi_total_us() > psi_before

        # An anonymous allocation past the limit cannot be reclaimed (no swap): the OOM killer.
        alloc = v1_cgroup.start(ALLOC_CODE)
        try:
            alloc.proc.stdin.write(b"64\n")
            alloc.proc.stdin.flush()
            assert alloc.proc.wait(30) == -9  # SIGKILL from the OOM killer
        finally:
            alloc.close()
        after = wait_until(lambda: (c := read_cgroup_memory(hierarchy, v1_cgroup.cgroup_path)).events["oom_kill"] >= 1 and c,
                           timeout=10)
        assert int(v1_cgroup.read("memory.oom_control").split("oom_kill ")[1].split()[0]) >= 1
        since = events_since(before.events, after.events)
        assert since["oom_kill"] >= 1 and since["failcnt"] > 100
        texts = [f.text for f in cgroup_findings(after, since)]
        assert any("since memtop started" in t for t in texts)

        tree = {c.path: c for c in walk_memory_cgroups(hierarchy)}
        assert tree[v1_cgroup.cgroup_path].max == LIMIT
        assert tree[v1_cgroup.cgroup_path].headroom == LIMIT - tree[v1_cgroup.cgroup_path].current
    finally:
        thrash.close()


def test_psi_trigger_registered_and_woken_by_a_real_stall(v1_cgroup, cold_file):
    spec = parse_trigger_spec("some 100000 1000000")  # the default
    with PsiTrigger(spec) as trigger:
        if has_cap_sys_resource():
            assert trigger.spec == spec and trigger.adjusted is None
        else:
            # This machine: root without CAP_SYS_RESOURCE; the kernel takes only 2 s windows.
            assert trigger.spec.text() == "some 200000 2000000"
            assert "CAP_SYS_RESOURCE" in trigger.adjusted
        assert os.readlink(f"/proc/self/fd/{trigger.fileno()}") == "/proc/pressure/memory"
        thrash = v1_cgroup.start(THRASH_CODE, str(cold_file))
        try:
            deadline = time.monotonic() + 30
            fired = False
            while not fired and time.monotonic() < deadline:
                fired = trigger.wait(1.0)
            assert fired, "the trigger did not fire within 30 s of thrashing a 32 MiB cgroup"
        finally:
            thrash.close()
    with pytest.raises(ValueError):
        trigger.wait(0)


def test_trigger_refuses_a_captured_tree_and_a_root_without_psi(tmp_path):
    with pytest.raises(TriggerError, match="captured tree"):
        PsiTrigger(parse_trigger_spec("some 100000 1000000"), root=FIX / "tree" / "proc")
    # The fixture's pressure file is untouched (a trigger is never written to a plain file).
    assert (FIX / "tree/proc/pressure/memory").read_text().startswith("some avg10=5.97")


def _v2_memory_mount() -> Path | None:
    # errors=: any user can mount on a name that is not UTF-8 (unshare -Urm)
    for line in Path("/proc/self/mountinfo").read_text(errors="surrogateescape").splitlines():
        left, _, right = line.partition(" - ")
        if right.startswith("cgroup2 "):
            mount = Path(left.split()[4])
            if "memory" in (mount / "cgroup.controllers").read_text().split():
                return mount
    return None


def test_v2_cgroup_live():
    """Runs where cgroup v2 has the memory controller; this machine has it on v1."""
    mount = _v2_memory_mount()
    if mount is None:
        pytest.skip("the memory controller is not on cgroup v2 here (this machine mounts it as v1 at "
                    "/sys/fs/cgroup/memory; the cgroup2 mount has no memory controller)")
    if os.geteuid() != 0:
        pytest.skip("needs root to create a cgroup")
    if "memory" not in (mount / "cgroup.subtree_control").read_text().split():
        pytest.skip(f"{mount}/cgroup.subtree_control does not enable memory for child cgroups")
    from memtop.procfs.cgroup import MemoryHierarchy

    path = mount / f"memtop-test-{os.getpid()}"
    path.mkdir()
    child = None
    try:
        (path / "memory.max").write_text(str(LIMIT))
        if (path / "memory.swap.max").exists():
            (path / "memory.swap.max").write_text("0")
        hierarchy = MemoryHierarchy(2, mount)
        cg_path = "/" + path.name
        before = read_cgroup_memory(hierarchy, cg_path)
        assert before.max == LIMIT and before.events.get("oom_kill", 0) == 0
        from tests.support import Child
        import sys

        child = Child(["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(path / "cgroup.procs"),
                       sys.executable, "-c", ALLOC_CODE])
        assert memory_cgroup_of(child.pid, hierarchy) == cg_path
        child.proc.stdin.write(b"64\n")
        child.proc.stdin.flush()
        assert child.proc.wait(30) == -9
        after = read_cgroup_memory(hierarchy, cg_path)
        assert events_since(before.events, after.events).get("oom_kill", 0) >= 1
        assert after.pressure is not None and after.pressure.some.total_us > 0
    finally:
        if child is not None:
            child.close()
        deadline = time.monotonic() + 10
        while path.exists():
            for pid in (path / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
            try:
                path.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
