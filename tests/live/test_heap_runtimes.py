"""Runtimes recognised on real processes (the ones installed on this machine)."""

from __future__ import annotations

import shutil

import pytest

from memtop.heap import analyze
from memtop.collect.layers import explain
from tests.support import IS_ROOT

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(not IS_ROOT, reason="reading another process's heap needs root (or CAP_SYS_PTRACE)")]

NODE_HOLD = ("const keep = []; for (let i = 0; i < 100000; i++) keep.push({i}); "
             "console.log('READY'); process.stdin.on('data', () => {});")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_is_recognised_with_its_v8_pages_and_glibc_arenas(children):
    child = children.start(["node", "-e", NODE_HOLD])
    report = explain(child.pid)
    runtime = report.runtime
    assert runtime.kind == "node"
    assert runtime.regions and all(r.start % (256 << 10) == 0 for r in runtime.regions)
    assert any("--trace-gc" in advice for advice in runtime.advice)
    layers = {layer.key: layer for layer in report.anon_split}
    assert layers["runtime"].bytes > 0
    # node's own threads may allocate now and then: a walk is valid or says it is changing.
    heap = analyze(child.pid)
    assert heap.status in ("valid", "changing"), heap.reason
    if heap.valid:
        assert len(heap.arenas) >= 2  # V8's worker threads have their own glibc arenas


def test_cpython_is_recognised(children):
    import sys

    child = children.start([sys.executable, "-c", "import sys; print('READY', flush=True); sys.stdin.read()"])
    runtime = analyze(child.pid).runtime
    assert runtime.kind == "cpython" and runtime.version == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert any("_debugmallocstats" in advice for advice in runtime.advice)
