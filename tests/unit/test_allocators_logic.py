"""The allocator readers' pure rules, on bytes captured from real processes (tests/fixtures/
allocators) and on maps lines: which allocator is named, the shapes the readers look for, the
mimalloc release rules, the findings' words, and what the text and JSON outputs do with hostile
strings."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from memtop.heap import jemalloc, tcmalloc
from memtop.heap.allocator_advice import allocator_findings
from memtop.heap.allocators import allocator_json
from memtop.heap.census import detect_allocator as census_allocator
from memtop.heap.detect import detect_allocator
from memtop.heap.memory import parse_maps_file
from memtop.heap.mimalloc import collect_release
from memtop.model.allocator import AllocatorReport, AllocatorSetting
from memtop.output.allocator import allocator_lines

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "allocators"
MiB = 1 << 20


def maps_with(*paths: str):
    text = "".join(f"7f00{i:02x}000000-7f00{i:02x}001000 r-xp 00000000 fe:00 {i + 1} {p}\n" for i, p in enumerate(paths))
    return parse_maps_file(text)


@pytest.mark.parametrize("paths, kind", [
    (["/usr/lib/x86_64-linux-musl/libc.so"], "musl"),  # Debian's musl: once called "glibc"
    (["/lib/ld-musl-x86_64.so.1"], "musl"),  # Alpine
    (["/usr/lib/x86_64-linux-gnu/libc.so.6"], "glibc"),
    (["/lib/libc-2.31.so"], "glibc"),
    (["/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"], "jemalloc"),
    (["/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2.0"], "mimalloc"),
    (["/opt/app/lib/libc.so"], "unknown"),  # a bare libc.so is not glibc's runtime name
])
def test_the_allocator_is_named_by_the_paths_mapped(paths, kind):
    guess = detect_allocator(maps_with(*paths), None)
    assert guess.kind == kind
    if kind != "unknown":
        assert guess.library in paths
    # The Arenas census uses the same rule.
    assert census_allocator(maps_with(*paths))[0] == kind


def test_jemalloc_size_table_is_found_in_captured_bss():
    data = (FIXTURES / "jemalloc-5.3.0-size-table.bin").read_bytes()
    table = jemalloc.size_table(data)
    assert len(table) == 232  # SC_NSIZES with LG_VADDR 48
    assert table[:13] == jemalloc.SIZE_TABLE_START
    assert jemalloc.SMALL_MAXCLASS in table and table.index(jemalloc.SMALL_MAXCLASS) == 35  # SC_NBINS - 1
    assert table[36] == 16384  # SC_LARGE_MINCLASS
    with pytest.raises(jemalloc.ReaderError):
        jemalloc.size_table(bytes(4096))


def test_jemalloc_leaf_words_decode_to_extents_and_states():
    for line in (FIXTURES / "jemalloc-5.3.0-leaf-words.txt").read_text().split("\n"):
        if not line:
            continue
        _index, word = line.split()
        edata, state, slab, szind = jemalloc.decode_leaf(int(word, 16))
        if not edata:  # rtree_clear: no extent, szind SC_NSIZES (the walk skips these)
            assert (state, slab, szind) == (0, 0, 232)
            continue
        assert edata % jemalloc.EDATA_ALIGNMENT == 0 and edata < 1 << 47
        assert state <= jemalloc.STATE_RETAINED and slab in (0, 1) and szind <= 232
        if slab:
            assert state == jemalloc.STATE_ACTIVE and szind < 36


def test_tcmalloc_stats_are_found_by_their_identities_only():
    window = (FIXTURES / "tcmalloc-2.10-pageheap-window.bin").read_bytes()
    assert tcmalloc.find_stats(window) == [10024]
    system, free, unmapped, committed = struct.unpack_from("<QQQQ", window, 10024)
    assert unmapped + committed == system and free <= committed
    # One broken identity and it is not taken.
    broken = bytearray(window)
    struct.pack_into("<Q", broken, 10024 + 16, unmapped + tcmalloc.TC_PAGE)
    assert tcmalloc.find_stats(bytes(broken)) == []


@pytest.mark.parametrize("pending, empty, live, expire, now, owned, expected", [
    (10, [], 5, 1000, 5000, True, 0),  # collect frees no page: the pending mask stays (idle thread)
    (10, [3, 2], 5, 1000, 5000, True, 12),  # an old request expired: it all goes, with one page
    (10, [3, 2], 5, 5000, 5000, True, 0),  # the request expires now, within the extend delay: only delayed
    (10, [3, 2], 5, 0, 5000, True, 0),  # no earlier request: the first free only schedules one
    (10, [3], 0, 0, 5000, True, 100),  # the last page freed: the segment goes whole
    (10, [], 0, 0, 5000, False, 10),  # an abandoned segment: its pending mask is forced
])
def test_mimalloc_collect_release_rules(pending, empty, live, expire, now, owned, expected):
    assert collect_release(100, pending, empty, live, expire, now, owned) == expected


def _report(kind: str, **kw) -> AllocatorReport:
    base = dict(kind=kind, version="x", library=f"/usr/lib/lib{kind}.so", static=False, status="valid", reason=None,
                method="test", allocated_bytes=10 * MiB, active_bytes=20 * MiB, mapped_bytes=200 * MiB,
                resident_bytes=150 * MiB, free_kept_bytes=120 * MiB, retained_bytes=50 * MiB, release_bytes=100 * MiB)
    base.update(kw)
    return AllocatorReport(**base)


@pytest.mark.parametrize("report", [
    _report("jemalloc", details=(("dirty_resident_bytes", 100 * MiB), ("muzzy_resident_bytes", 0),
                                 ("slab_free_bytes", 10 * MiB)),
            settings=(AllocatorSetting("dirty_decay_ms", "10000", "default"),
                      AllocatorSetting("background_threads_running", "0", "comm"))),
    _report("tcmalloc", details=(("central_cache_free_bytes", 30 * MiB), ("transfer_cache_free_bytes", 0),
                                 ("thread_cache_free_bytes", 0)),
            settings=(AllocatorSetting("release_rate", "0", "flag"),)),
    _report("mimalloc", details=(("pending_decommit_resident_bytes", 100 * MiB),)),
    _report("musl", release_bytes=None, retained_bytes=None, notes=("musl keeps no free pool",)),
])
def test_findings_speak_of_the_allocator_never_of_glibc(report):
    findings = allocator_findings(report, 160 * MiB, 42)
    words = " ".join(f.text + " " + (f.next_step or "") for f in findings)
    assert report.kind in words
    assert "MALLOC_ARENA_MAX" not in words and "arena cap" not in words
    assert ("malloc_trim" not in words) or report.kind == "musl"  # musl says it has none


def test_jemalloc_without_background_threads_is_told_with_its_numbers():
    report = _report("jemalloc", details=(("dirty_resident_bytes", 100 * MiB), ("muzzy_resident_bytes", 0)),
                     settings=(AllocatorSetting("dirty_decay_ms", "10000", "default"),
                               AllocatorSetting("background_threads_running", "0", "comm")))
    text = allocator_findings(report, 160 * MiB, 42)[0].text
    assert "no background thread runs" in text and "dirty_decay_ms = 10000" in text and "100 MiB" in text


def test_tcmalloc_release_rate_zero_is_named():
    report = _report("tcmalloc", settings=(AllocatorSetting("release_rate", "0", "flag"),))
    assert "TCMALLOC_RELEASE_RATE is 0" in allocator_findings(report, 160 * MiB, 42)[0].text


def test_hostile_strings_are_escaped_in_text_and_json():
    evil = "/tmp/\x1b]52;c;ZXZpbA==\x07lib\udcffjemalloc.so"
    report = _report("jemalloc", library=evil, settings=(AllocatorSetting("dirty_decay_ms", "1\x1b[2J", "MALLOC_CONF\x07"),))
    text = "\n".join(allocator_lines(report))
    assert "\x1b" not in text and "\x07" not in text and "\\e" in text and "\\xff" in text
    doc = allocator_json(report)
    dumped = json.dumps(doc, ensure_ascii=False)
    json.loads(dumped)  # valid JSON: the byte that is not UTF-8 is a list of bytes
    assert isinstance(doc["library"], list) and doc["settings"][0]["value"] == "1\x1b[2J"


def test_unknown_figures_are_null_with_the_reason():
    report = _report("musl", release_bytes=None, retained_bytes=None,
                     unknown=(("release_bytes", "musl has no call that gives memory back"),))
    doc = allocator_json(report)
    assert doc["release_bytes"] is None and doc["trim_release_bytes"] is None
    assert doc["unknown"]["release_bytes"].startswith("musl has no call")
    assert any("musl has no call" in line for line in allocator_lines(report))
    failed = _report("jemalloc", status="unsupported", reason="jemalloc 5.2.1: not read")
    doc = allocator_json(failed)
    assert doc["valid"] is False and doc["allocated_bytes"] is None and doc["in_use_bytes"] is None
