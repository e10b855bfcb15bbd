"""`memtop snapshot --json`'s kernel section and fd_growth_per_min, on the captured tree (fixed data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from memtop.commands.snapshot import build_snapshot
from memtop.procfs import PAGE_SIZE

TREE = Path(__file__).resolve().parent.parent / "fixtures" / "kernel" / "tree" / "proc"
REPO = Path(__file__).resolve().parent.parent.parent


def meminfo_kb(key: str) -> int:
    for line in (TREE / "meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def test_kernel_section_of_the_captured_tree():
    doc = build_snapshot(TREE)
    kernel = doc["kernel"]
    # slabs[]: every cache of the file, largest first, with slabtop's size
    lines = [line.split() for line in (TREE / "slabinfo").read_text().splitlines()[2:]]
    assert len(kernel["slabs"]) == len(lines) and kernel["slab_version"] == "2.1"
    first = kernel["slabs"][0]
    raw = next(f for f in lines if f[0] == first["name"])
    assert first["total_bytes"] == int(raw[14]) * int(raw[5]) * PAGE_SIZE == max(s["total_bytes"] for s in kernel["slabs"])
    assert first["reclaimable"] is True and kernel["slabs"][-1]["reclaimable"] is None  # only 12 flags captured
    assert kernel["slab_total_bytes"] <= meminfo_kb("Slab")
    # meminfo_categories: the meminfo lines, in bytes, plus the remainder
    cats = kernel["meminfo_categories"]
    assert cats["SUnreclaim"] == meminfo_kb("SUnreclaim") and cats["KernelStack"] == meminfo_kb("KernelStack")
    assert isinstance(cats["Unexplained"], int)
    # sockstat: one entry per network namespace, memtop's own first
    ns = {n["net_ns_inode"]: n for n in kernel["sockstat"]}
    assert list(ns) == [4026531833, 4026532246] and kernel["sockstat"][0]["own"]
    target = ns[4026532246]
    assert target["pids"] == [14665] and target["sockets_used"] == 13
    tcp = target["protocols"]["TCP"]
    assert (tcp["inuse"], tcp["mem_pages"], tcp["mem_bytes"]) == (7, 205, 205 * PAGE_SIZE)
    assert target["protocols"]["FRAG"]["mem_bytes"] == 0 and target["protocols"]["TCP6"]["mem_bytes"] is None
    assert kernel["file_nr"] == dict(zip(("allocated", "unused", "max"), map(int, (TREE / "sys/fs/file-nr").read_text().split())))
    # one sample: no growth, and the reason says why
    for proc in doc["processes"]:
        assert proc["fd_growth_per_min"] is None and "1 sample" in proc["fd_growth_reason"]


def test_snapshot_cli_with_pid_adds_the_fd_breakdown():
    out = subprocess.run([sys.executable, "-m", "memtop", "--proc", str(TREE), "snapshot", "--json", "--pid", "14670"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    kernel = json.loads(out.stdout)["kernel"]
    assert kernel["fd_breakdown"] == {"pid": 14670, "total": 12, "sockets": 9, "pipes": 3, "files": 0,
                                      "anon_inodes": 0, "other": 0, "deleted_files": 0, "anon_kinds": {},
                                      "socket_states": None,
                                      "socket_states_reason": "psutil reads the live /proc only"}
