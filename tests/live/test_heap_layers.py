"""The layers of one process (memtop.collect.layers.explain), as the Layers tab and `memtop explain`
show them, on targets built here: every parent row is the sum of its children, findings speak of
resident memory, and without a valid walk nothing is claimed about in use / free."""

from __future__ import annotations

from dataclasses import replace

import pytest

from memtop.commands.explain import render_text
from memtop.heap import analyze
from memtop.collect.layers import explain, split_unknown_reason
from memtop.output.layers import report_json
from memtop.model.findings import Severity
from memtop.tui.layers import bar_values
from tests.heap_targets import HEAP_TARGET
from tests.support import IS_ROOT, compile_c

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not IS_ROOT, reason="reading another process's heap needs root (or CAP_SYS_PTRACE)"),
]

MiB = 1 << 20


@pytest.fixture(scope="module")
def heap_target():
    return compile_c(HEAP_TARGET, name="heap_target")


def children_of(report, parent: str) -> dict[str, int]:
    return {layer.key: layer.bytes for layer in report.heap_split if layer.parent == parent}


def test_each_heap_place_is_split_under_its_own_row(children, heap_target):
    # GIVEN a main arena with small chunks and a thread arena with a large resident top
    child = children.start([heap_target, "thread_top"])
    report = explain(child.pid)
    assert report.heap.valid and len(report.heap.arenas) == 2
    anon = {layer.key: layer.bytes for layer in report.anon_split}
    brk, thread = children_of(report, "brk"), children_of(report, "thread_heaps")
    # THEN each parent equals the sum of its children (no arena counted twice)
    assert set(brk) == set(thread) == {"in_use", "free", "top"}
    assert sum(brk.values()) == anon["brk"]
    assert sum(thread.values()) == anon["thread_heaps"]
    # ... and the thread arena's top sits under the thread-arena heaps, not under [heap]
    assert thread["top"] > 20 * MiB and brk["top"] < MiB
    # The bar shows the same places: brk through its split, thread heaps whole.
    bar = dict(bar_values(report))
    assert bar["in_use"] + bar["free"] + bar["top"] == anon["brk"]
    assert bar["thread_heaps"] == anon["thread_heaps"] and bar["brk"] == 0
    doc = report_json(report)["allocator"]
    assert doc["heap_split_by_layer"]["thread_heaps"] == thread
    assert doc["heap_split"]["top"] == brk["top"] + thread["top"]
    # The text puts the split under its parent, indented one level deeper, and the main
    # arena's address whole.
    lines = render_text(report).splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("thread-arena heaps"))
    assert [line.split()[0] for line in lines[at + 1:at + 4]] == ["pages", "free", "top"]
    assert all(line.startswith(" " * 8) and not line.startswith(" " * 9) for line in lines[at + 1:at + 4])
    assert not any("resident," in line for line in lines)
    main = report.heap.main_arena
    assert any(line.split()[:2] == ["main", f"0x{main.address:x}"] for line in lines)


def test_after_a_trim_findings_speak_of_resident_memory(children, heap_target):
    # GIVEN 12 MiB of free chunks pinned below a live chunk, resident
    child = children.start([heap_target, "pinned"])
    before = explain(child.pid)
    warnings = [f.text for f in before.findings if f.severity is Severity.WARNING]
    assert any("free memory resident" in t for t in warnings)
    assert any("pins the brk heap" in t for t in warnings)
    # WHEN the program trims (the free pages stop being resident, the chunks stay free)
    assert child.ask("trim") == "trimmed"
    after = explain(child.pid)
    assert after.heap.trim_release_bytes == 0 and after.heap.free_bytes > 10 * MiB
    # THEN nothing warns about memory that no longer costs RAM; one info line says why
    assert not [f for f in after.findings if f.severity is not Severity.INFO], after.findings
    assert any("not RAM" in f.text for f in after.findings)
    assert after.heap.pin is not None and after.heap.pin.pinned_resident_bytes == 0


def test_without_a_valid_walk_no_split_is_claimed(children, heap_target):
    # GIVEN a thread arena spread over several 64 MiB heaps
    child = children.start([heap_target, "thread_heaps"])
    walked = explain(child.pid)
    thread_bytes = next(layer.bytes for layer in walked.anon_split if layer.key == "thread_heaps")
    assert thread_bytes > 64 * MiB
    # WHEN the walk is not valid (as when the heap changes under every try)
    failed = replace(analyze(child.pid), valid=False, status="changing", reason="the heap changed during 3 walks",
                     arenas=(), pin=None, trim_release_bytes=None)
    report = explain(child.pid, heap=failed)
    # THEN the thread heaps are still found, from the 64 MiB-aligned mappings, not "other"
    layers = {layer.key: layer for layer in report.anon_split}
    assert layers["thread_heaps"].bytes == thread_bytes
    assert "64 MiB-aligned" in layers["thread_heaps"].source
    # ... and no in use / free / top is claimed: the bar shows the brk heap whole
    assert report.heap_split == ()
    assert "changing" in split_unknown_reason(report)
    bar = dict(bar_values(report))
    assert bar["in_use"] == bar["free"] == bar["top"] == 0
    assert bar["brk"] == layers["brk"].bytes and bar["thread_heaps"] == thread_bytes
    text = render_text(report)
    row = next(line for line in text.splitlines() if "in use / free / top" in line)
    assert " ? " in row and "changing" in row
