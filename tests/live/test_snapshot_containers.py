"""`memtop snapshot --json` on a real memory cgroup the test makes: the containers section holds
the kernel's figures for it, the kill order, and each process names its container."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.containers_support import HOLD_ANON, TestCgroup, memory_hierarchy_or_reason

pytestmark = pytest.mark.live
REPO = Path(__file__).resolve().parents[2]
MiB = 2**20


def test_the_snapshot_names_the_container_and_holds_its_figures():
    hierarchy, reason = memory_hierarchy_or_reason()
    if hierarchy is None:
        pytest.skip(reason)
    with TestCgroup(hierarchy, limit=80 * MiB) as cg:
        holder = cg.start(HOLD_ANON, "16")
        try:
            before = cg.usage()
            done = subprocess.run([sys.executable, "-m", "memtop", "snapshot", "--json"], cwd=REPO,
                                  capture_output=True, text=True, timeout=120)
            after = cg.usage()
            assert done.returncode == 0, done.stderr
            doc = json.loads(done.stdout)
            [proc] = [p for p in doc["processes"] if p["pid"] == holder.pid]
            assert proc["container"]["cgroup"] == cg.cgroup_path
            [entry] = [c for c in doc["containers"]["containers"] if c["cgroup"] == cg.cgroup_path]
            assert min(before, after) - 2 * MiB <= entry["current"] <= max(before, after) + 2 * MiB
            assert entry["limit"] == 80 * MiB and entry["split"]["anon"] >= 16 * MiB
            assert holder.pid in entry["members"]["pids"]
            oom = doc["containers"]["oom"]
            assert oom["events"] == []  # one sample: no kill can be seen
            order = oom["cgroup_kill_order"][cg.cgroup_path]["ranked"]
            assert [r["pid"] for r in order] == [holder.pid]
        finally:
            holder.close()
