"""The JVM's figures from its hsperfdata file, held against the JVM's own tools.

GIVEN a real JVM (java 17, G1, -Xmx256m) holding 48 MiB of arrays,
WHEN memtop reads its PerfData file (no attach, no stop),
THEN heap used/committed, metaspace, class space and GC counts equal `jstat -gc`, the heap's
address range and size equal `jcmd PID GC.heap_info` (the VM's own structures, through the
attach socket: the test may attach to its own JVM, memtop never does) and Runtime.maxMemory().
One JVM is shared by the module (starting one takes about a second).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from memtop.collect.layers import explain
from memtop.output.layers import report_json
from tests.support import IS_ROOT, Child

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(not IS_ROOT, reason="reading another process's memory needs root (or CAP_SYS_PTRACE)")]

HOLD_JAVA = r"""
import java.util.*;
public class Hold {
  static List<Object> keep = new ArrayList<>();
  public static void main(String[] a) throws Exception {
    for (int i = 0; i < 48; i++) keep.add(new byte[1 << 20]);
    for (int i = 0; i < 200000; i++) keep.add(Integer.toString(i));
    System.gc();
    Runtime r = Runtime.getRuntime();
    System.out.println("READY " + r.maxMemory() + " " + r.totalMemory());
    System.out.flush();
    Scanner in = new Scanner(System.in);
    while (in.hasNextLine()) { in.nextLine(); System.out.println("ok"); System.out.flush(); }
  }
}
"""

MiB = 1 << 20


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: `make test` installs openjdk-17-jdk-headless (as root)")
    return path


@pytest.fixture(scope="module")
def java_class(tmp_path_factory):
    javac = _need("javac")
    _need("java")
    out = tmp_path_factory.mktemp("java")
    (out / "Hold.java").write_text(HOLD_JAVA)
    subprocess.run([javac, "-d", str(out), str(out / "Hold.java")], check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def jvm(java_class):
    child = Child(["java", "-Xmx256m", "-Xms32m", "-XX:+UseG1GC", "-cp", str(java_class), "Hold"], timeout=60)
    try:
        yield child
    finally:
        child.close()


def _jstat(pid: int) -> dict[str, float]:
    out = subprocess.run([_need("jstat"), "-gc", str(pid)], capture_output=True, text=True, timeout=60, check=True).stdout
    head, values = out.strip().splitlines()[-2:]
    return dict(zip(head.split(), (float(v) for v in values.split())))


def _heap_info(pid: int) -> dict:
    out = subprocess.run([_need("jcmd"), str(pid), "GC.heap_info"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    m = re.search(r"total (\d+)K, used (\d+)K \[(0x[0-9a-f]+), (0x[0-9a-f]+)\)", out)
    assert m, out
    meta = re.search(r"Metaspace\s+used (\d+)K, committed (\d+)K", out)
    return {"total": int(m[1]) << 10, "used": int(m[2]) << 10, "start": int(m[3], 16), "end": int(m[4], 16),
            "meta_used": int(meta[1]) << 10, "meta_committed": int(meta[2]) << 10}


def _close(a, b, rel=0.03, slack=0):
    return abs(a - b) <= rel * max(abs(a), abs(b)) + slack


def test_jvm_figures_match_jstat_and_the_vms_own_heap_info(jvm):
    max_memory = int(jvm.ready_line.split()[1])
    _heap_info(jvm.pid)  # the first attach loads classes (metaspace grows): done before reading
    report = explain(jvm.pid)
    rr = report.runtime_report
    assert rr is not None and rr.kind == "jvm" and rr.status == "ok", (rr and rr.reason)
    assert rr.version and rr.version.startswith("17"), rr.version
    assert re.fullmatch(r"/tmp/hsperfdata_[^/]+/\d+", rr.source)
    truth = _jstat(jvm.pid)
    info = _heap_info(jvm.pid)
    v = rr.value
    k = 1024
    committed = (truth["S0C"] + truth["S1C"] + truth["EC"] + truth["OC"]) * k
    used = (truth["S0U"] + truth["S1U"] + truth["EU"] + truth["OU"]) * k
    assert _close(v("heap_committed"), committed, slack=4 * k), (v("heap_committed"), committed)
    assert _close(v("heap_used"), used, slack=64 * k), (v("heap_used"), used)
    assert v("heap_used") >= 48 * MiB
    assert _close(v("metaspace_committed"), truth["MC"] * k, slack=4 * k)
    assert _close(v("metaspace_used"), truth["MU"] * k, slack=16 * k)
    assert _close(v("class_space_committed"), truth["CCSC"] * k, slack=4 * k)
    assert v("gc0_count") == truth["YGC"] and v("gc1_count") == truth["FGC"] >= 1  # System.gc() is a full GC in G1
    assert _close(v("gc0_seconds"), truth["YGCT"], slack=0.002)
    # The VM's own view (attach): the heap's range, committed size, metaspace.
    heap = next(r for r in rr.regions if r.key == "java_heap")
    assert (heap.start, heap.end) == (info["start"], info["end"])
    assert v("heap_max") == info["end"] - info["start"] == max_memory == 256 * MiB
    assert _close(v("heap_committed"), info["total"], slack=4 * k)
    assert _close(v("heap_used"), info["used"], slack=256 * k)
    # (Metaspace is not compared with GC.heap_info: the attach itself loads classes, and the
    # PerfData metaspace counters are updated at GCs only, as jstat shows them.)
    # What is resident of the heap is at least the live arrays, and at most what is committed.
    assert 48 * MiB <= v("heap_resident") <= v("heap_committed") + MiB
    # native = RSS - heap - metaspace - code, split with the glibc walk.
    assert v("native") == report.rss_bytes - v("heap_resident") - v("metaspace_committed") - v("code_cache_resident")
    parts = [v("native_malloc"), v("native_stacks"), v("native_files"), v("native_other")]
    assert None not in parts[1:] and sum(p or 0 for p in parts) == v("native")
    assert v("code_cache_resident") > 0 and v("code_cache_reserved") >= 48 * MiB  # ReservedCodeCacheSize
    # The Layers' runtime row holds the heap's resident anonymous pages: not two glibc arena heaps.
    layers = {layer.key: layer for layer in report.anon_split}
    assert "Java heap" in layers["runtime"].note
    split = {layer.key: layer.bytes for layer in report.runtime_split}
    assert split["java_heap"] >= 48 * MiB
    doc = report_json(report)["runtime"]["report"]
    assert doc["kind"] == "jvm" and doc["figures"]["heap_used"]["value"] == v("heap_used")
    assert doc["figures"]["heap_used"]["source"].startswith("hsperfdata")


def test_jvm_without_perfdata_says_why(java_class, children):
    child = children.start(["java", "-Xmx128m", "-XX:-UsePerfData", "-cp", str(java_class), "Hold"], timeout=60)
    rr = explain(child.pid).runtime_report
    assert rr.kind == "jvm" and rr.status == "unavailable"
    assert "UsePerfData" in rr.reason and rr.figures == ()


def test_explain_cli_shows_the_jvm_section(jvm):
    import json
    import sys

    out = subprocess.run([sys.executable, "-m", "memtop", "explain", str(jvm.pid)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "JVM 17" in out.stdout and "Java heap used" in out.stdout and "native (RSS - heap - metaspace - code)" in out.stdout
    out = subprocess.run([sys.executable, "-m", "memtop", "explain", "--json", str(jvm.pid)], capture_output=True,
                         text=True, timeout=120)
    doc = json.loads(out.stdout)["runtime"]
    assert doc["kind"] == "jvm" and doc["report"]["figures"]["heap_max"]["value"] == 256 * MiB
    assert os.path.basename(doc["report"]["source"]) == str(jvm.pid)
