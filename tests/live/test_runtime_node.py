"""Node 20's V8 heap spaces read from V8's page headers, held against the child's own
v8.getHeapSpaceStatistics() and process.memoryUsage().

GIVEN a node child holding 300k small objects (old and new space) and a few large arrays,
WHEN memtop reads the 256 KiB-aligned V8 page headers (no inspector, no signal),
THEN each space's size equals space_size, heapTotal equals memoryUsage().heapTotal, and the
used bytes of the old, code and large-object spaces are within 3 % of space_used_size; new
space's used part is unknown, with the reason.
"""

from __future__ import annotations

import json
import shutil

import pytest

from memtop.collect.layers import explain
from memtop.output.layers import report_json
from tests.support import IS_ROOT

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(not IS_ROOT, reason="reading another process's memory needs root (or CAP_SYS_PTRACE)")]

CHILD = r"""
const v8 = require('v8');
const keep = [];
for (let i = 0; i < 300000; i++) keep.push({i, s: 'x' + i});
for (let i = 0; i < 4; i++) keep.push(new Array(200000).fill(i));
gc(); gc();
console.log('READY');
process.stdin.on('data', () => {
  const spaces = {};
  for (const s of v8.getHeapSpaceStatistics()) spaces[s.space_name] = [s.space_size, s.space_used_size];
  console.log(JSON.stringify({usage: process.memoryUsage(), spaces}));
});
"""


def test_v8_spaces_match_the_isolates_own_statistics(children, tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: this machine's image has Node 20 (nodejs); install it to run this test")
    script = tmp_path / "child.js"
    script.write_text(CHILD)
    child = children.start([node, "--expose-gc", str(script)])
    # V8 sweeps and marks on background threads: read when the isolate's own figures are the
    # same before and after memtop's read (a few tries under load).
    for _ in range(5):
        before = json.loads(child.ask("stats"))
        report = explain(child.pid)
        truth = json.loads(child.ask("stats"))
        if truth["spaces"] == before["spaces"]:
            break
    rr = report.runtime_report
    assert rr is not None and rr.kind == "node" and rr.status == "ok", rr and rr.reason
    v = rr.value
    assert v("heap_total") == truth["usage"]["heapTotal"]
    for name, (size, used) in truth["spaces"].items():
        if size == 0:
            assert v(f"{name}_size") in (None, 0)
            continue
        assert v(f"{name}_size") == size, name
        if name == "new_space":
            assert v("new_space_used") is None and "allocation top" in rr.figure("new_space_used").reason
        else:
            assert abs(v(f"{name}_used") - used) <= 0.03 * used, (name, v(f"{name}_used"), used)
    assert truth["spaces"]["old_space"][1] >= 8 << 20 and truth["spaces"]["large_object_space"][0] > 0
    # The V8 pages' resident bytes are the Layers' runtime row (not every 256 KiB-aligned mapping).
    split = {layer.key: layer.bytes for layer in report.runtime_split}
    assert abs(split["v8_heap"] - v("heap_resident")) <= 256 << 10
    assert sum(r.size for r in rr.regions) == v("heap_total")
    doc = report_json(report)["runtime"]["report"]
    assert doc["figures"]["old_space_size"]["value"] == truth["spaces"]["old_space"][0]
