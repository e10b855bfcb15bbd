"""`memtop snapshot --json`: the `pressure` section and per-process `cgroup`, on the captured tree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from memtop.commands.snapshot import build_snapshot

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "pressure"
TREE = FIX / "tree" / "proc"
REPO = Path(__file__).resolve().parents[2]


def test_pressure_section_from_the_captured_tree():
    doc = build_snapshot(TREE)
    p = doc["pressure"]
    assert p["unavailable_reason"] is None
    assert p["memory"] == {"some": {"avg10": 5.97, "avg60": 1.08, "avg300": 0.27, "total_us": 1791302},
                           "full": {"avg10": 1.81, "avg60": 0.32, "avg300": 0.11, "total_us": 941159}}
    assert p["cpu"]["full"]["total_us"] == 0
    assert p["cgroups"]["version"] == 1
    assert p["cgroups"]["mount"] == "/sys/fs/cgroup/memory"  # as mountinfo names it
    test_cg = next(c for c in p["cgroups"]["tree"] if c["path"] == "/memtop-test")
    assert test_cg["max_bytes"] == 32 << 20 and test_cg["max_unlimited"] is False
    assert test_cg["events"]["oom_kill"] == 1
    root = p["cgroups"]["tree"][0]
    assert root["path"] == "/" and root["max_bytes"] is None and root["max_unlimited"] is True
    texts = [f["text"] for f in p["findings"]]
    assert any("cgroup /memtop-test uses 100% of its limit" in t for t in texts)
    assert any("full avg10" in t for t in texts)


def test_per_process_cgroup_fields():
    doc = build_snapshot(TREE)
    by_cgroup = {proc["cgroup"]["path"]: proc["cgroup"] for proc in doc["processes"]}
    cg = by_cgroup["/memtop-test"]
    assert cg["version"] == 1
    assert cg["current_bytes"] == int((FIX / "tree/sys/fs/cgroup/memory/memtop-test/memory.usage_in_bytes").read_text())
    assert cg["max_bytes"] == 32 << 20
    assert cg["events"] == {"failcnt": cg["events"]["failcnt"], "memsw_failcnt": 0, "oom_kill": 1, "under_oom": 0}
    assert cg["stat_bytes"]["anon"] > 0 and cg["pressure"] is None
    assert "memory.pressure" in cg["unknown_reasons"]["pressure"]
    other = next(v for k, v in by_cgroup.items() if k.startswith("/process_api/"))
    assert other["max_bytes"] is None and other["max_unlimited"] is True


def test_v2_tree_process_cgroup():
    doc = build_snapshot(FIX / "v2tree" / "proc")
    tree = {c["path"]: c for c in doc["pressure"]["cgroups"]["tree"]}
    assert doc["pressure"]["cgroups"]["version"] == 2
    assert tree["/system.slice/postgresql.service"]["events"]["oom_kill"] == 1
    assert tree["/"]["current_bytes"] is None and "root cgroup" in tree["/"]["unknown_reasons"]["current"]
    (proc,) = doc["processes"]
    cg = proc["cgroup"]
    assert (cg["version"], cg["path"], cg["current_bytes"], cg["max_bytes"]) == (
        2, "/system.slice/postgresql.service", 267386880, 256 << 20)
    assert cg["high_bytes"] == 240 << 20 and cg["swap_max_bytes"] is None
    assert cg["events"] == {"low": 0, "high": 1843, "max": 340, "oom": 2, "oom_kill": 1, "oom_group_kill": 0}
    assert cg["pressure"]["full"]["avg10"] == 1.10 and cg["unknown_reasons"] == {}
    assert doc["pressure"]["unavailable_reason"].startswith(str(FIX / "v2tree" / "proc" / "pressure"))


def test_root_without_pressure_or_cgroups(tmp_path):
    doc = build_snapshot(tmp_path)
    p = doc["pressure"]
    assert "CONFIG_PSI" in p["unavailable_reason"]
    assert p["memory"] is None and "CONFIG_PSI" in p["unknown_reasons"]["memory"]
    assert p["cgroups"]["version"] is None and p["cgroups"]["unknown_reason"]


def test_cli_json_and_bad_trigger_option():
    out = subprocess.run([sys.executable, "-m", "memtop", "--proc", str(TREE), "snapshot", "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["pressure"]["memory"]["some"]["total_us"] == 1791302
    assert all("cgroup" in proc for proc in doc["processes"])
    bad = subprocess.run([sys.executable, "-m", "memtop", "--psi-trigger", "some 5 50"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "--psi-trigger: the window must be" in bad.stderr and "Traceback" not in bad.stderr
