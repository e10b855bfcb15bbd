"""The chunk walker and the trim arithmetic on heaps laid out here, byte by byte.

The walker reads memory through an object with ``read(address, size)``; these tests give it a
bytearray laid out exactly as glibc lays chunks out (malloc.c: prev_size, size with PREV_INUSE),
so that every path of the walk (free predecessors, galloping over identical headers, window
boundaries, tcache stops, zero sizes) is checked against what was laid out.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memtop.heap import native
from memtop.heap import walk as walk_module
from memtop.heap.walk import Inconsistent, Segment, madvise_range, merge_runs, systrim_range, walk_segment

BASE = 0x5555_0000_0000
KEY = 0x1234_5678_9ABC_DEF0


class HeapBytes:
    """A heap image at BASE: the walker's view of /proc/PID/mem for these tests."""

    def __init__(self, data: bytearray):
        self.data = data

    def read(self, address: int, size: int):
        out = bytearray(size)
        lo = address - BASE
        piece = self.data[max(0, lo):max(0, lo + size)]
        out[:len(piece)] = piece
        return out, 0


def lay_out(chunks: list[tuple[int, str]], top_size: int = 4096) -> tuple[HeapBytes, Segment, dict]:
    """chunks: (size, state) with state in 'used', 'free', 'tcache'. Free chunks are never
    adjacent (glibc coalesces them). Returns the image, its segment and what was laid out."""
    data = bytearray()
    expected = {"free": [], "tcache": [], "count": 0}
    prev_free = False
    for size, state in chunks:
        address = BASE + len(data)
        header = struct.pack("<QQ", 0, size | (0 if prev_free else 1))
        body = bytearray(size - 16)
        if state == "tcache":
            body[0:8] = (0).to_bytes(8, "little")
            body[8:16] = KEY.to_bytes(8, "little")  # tcache_entry.key at chunk + 24
            expected["tcache"].append((address, size))
        if state == "free":
            expected["free"].append((address, size))
        data += header + body
        prev_free = state == "free"
        expected["count"] += 1
    top = BASE + len(data)
    data += struct.pack("<QQ", 0, top_size | (0 if prev_free else 1)) + bytearray(top_size - 16)
    segment = Segment(BASE, len(data), BASE, top, True)
    return HeapBytes(data), segment, expected


chunk_sizes = st.sampled_from([32, 48, 64, 80, 96, 128, 256, 1040, 4112, 8208])


@st.composite
def heaps(draw):
    n = draw(st.integers(min_value=0, max_value=40))
    chunks = []
    prev = "used"
    for _ in range(n):
        size = draw(chunk_sizes)
        # Runs of identical headers are common in real heaps; make them common here too.
        repeat = draw(st.integers(min_value=1, max_value=30))
        for _ in range(repeat):
            state = draw(st.sampled_from(["used", "used", "used", "free", "tcache"]))
            if state == "free" and prev == "free":
                state = "used"
            chunks.append((size, state))
            prev = state
    if chunks and chunks[-1][1] == "free":  # a free chunk next to top merges into it (glibc)
        chunks[-1] = (chunks[-1][0], "used")
    return chunks


NATIVE = native.load() is not None
BOTH_LOOPS = pytest.mark.parametrize("use_native", [
    False, pytest.param(True, marks=pytest.mark.skipif(not NATIVE, reason=f"no native loop: {native.build_error}"))],
    ids=["python", "native"])


@BOTH_LOOPS
@settings(max_examples=25, deadline=None)
@given(chunks=heaps(), window=st.sampled_from([1024, 4096, 1 << 22]))
def test_walk_finds_exactly_what_was_laid_out(chunks, window, use_native):
    original = walk_module.WINDOW
    walk_module.WINDOW = window  # small windows exercise the window boundaries
    try:
        mem, segment, expected = lay_out(chunks)
        result = walk_segment(mem, segment, tcache_keys={KEY}, use_native=use_native)
    finally:
        walk_module.WINDOW = original
    assert result.chunks == expected["count"]
    assert sorted(result.free) == expected["free"]
    assert sorted(result.tcache) == expected["tcache"]


def test_the_native_loop_grows_its_buffers_past_many_free_chunks():
    if not NATIVE:
        pytest.skip(f"no native loop: {native.build_error}")
    # 2,500 free chunks and 1,500 tcache hits in one window: the C side's lists grow from 1,024.
    chunks = [(64, "free" if i % 2 else "used") for i in range(4999)] + [(64, "tcache")] * 1500 + [(64, "used")]
    mem, segment, expected = lay_out(chunks)
    result = walk_segment(mem, segment, tcache_keys={KEY}, use_native=True)
    python = walk_segment(mem, segment, tcache_keys={KEY}, use_native=False)
    assert result.chunks == expected["count"] == python.chunks
    assert sorted(result.free) == expected["free"] == sorted(python.free)
    assert sorted(result.tcache) == expected["tcache"] == sorted(python.tcache)


@BOTH_LOOPS
def test_gallop_over_a_long_run_of_identical_chunks(use_native):
    chunks = [(48, "used")] * 100_000 + [(48, "free")] + [(48, "used")] * 50_000
    mem, segment, expected = lay_out(chunks)
    result = walk_segment(mem, segment, tcache_keys=set(), use_native=use_native)
    assert result.chunks == 150_001
    assert result.free == expected["free"]


@BOTH_LOOPS
def test_a_zero_size_stops_the_walk_and_says_where(use_native):
    mem, segment, _ = lay_out([(64, "used")] * 10)
    bad = BASE + 5 * 64
    mem.data[bad - BASE + 8:bad - BASE + 16] = (0).to_bytes(8, "little")
    with pytest.raises(Inconsistent) as info:
        walk_segment(mem, segment, tcache_keys=set(), use_native=use_native)
    assert info.value.address == bad


def test_a_walk_that_misses_top_is_inconsistent():
    mem, segment, _ = lay_out([(64, "used")] * 10)
    bad = BASE + 3 * 64
    mem.data[bad - BASE + 8:bad - BASE + 16] = (64 * 200 | 1).to_bytes(8, "little")  # runs past top
    with pytest.raises(Inconsistent, match="not at top"):
        walk_segment(mem, segment, tcache_keys=set())


def test_a_stale_key_inside_a_chunk_is_not_a_tcache_chunk():
    mem, segment, _ = lay_out([(256, "used"), (64, "used")])
    # The key appears 16-aligned + 8 inside the first chunk's user data, not at a chunk start.
    mem.data[64 + 8:64 + 16] = KEY.to_bytes(8, "little")
    result = walk_segment(mem, segment, tcache_keys={KEY})
    assert result.tcache == []


def test_madvise_range_follows_mtrim():
    page = 4096
    assert madvise_range(0x1000, 0x1000 + 4143) is None  # not larger than pagesize - 1 + 48
    # A chunk at a page boundary + 16: the first 48 bytes are kept, then whole pages.
    start = 0x10010
    assert madvise_range(start, start + 3 * page) == (0x11000, 0x11000 + 2 * page)
    assert madvise_range(0x10000, 0x10000 + 2 * page) == (0x11000, 0x12000)


def test_systrim_range_keeps_minsize_plus_one():
    page = 4096
    top = 0x20000
    assert systrim_range(top, page) is None  # top_size - 33 rounds down to 0 pages
    assert systrim_range(top, 2 * page) == (top + 2 * page - page, top + 2 * page)
    assert systrim_range(top, 10 * page + 100, pad=3 * page) == (top + 10 * page + 100 - 7 * page, top + 10 * page + 100)


def test_merge_runs_joins_neighbours_and_rejects_overlaps():
    assert merge_runs([(100, 16), (64, 32), (96, 4), (200, 8)]) == [[64, 116], [200, 208]]
    with pytest.raises(Inconsistent):
        merge_runs([(0, 64), (32, 64)])


def test_resident_pages_leave_out_the_zero_page_only():
    from memtop.heap.memory import Pagemap

    zero_pfn = 0x3B32
    entries = [
        (1 << 63) | zero_pfn,  # the shared zero page: present, not exclusive, not a file page
        (1 << 63) | (1 << 56) | 0x169FDD,  # an ordinary anonymous page
        (1 << 63) | 0x22222,  # anonymous, shared after fork (not exclusive), not the zero page
        (1 << 63) | (1 << 61) | 0x33333,  # a file page
        (1 << 62) | 0x1234,  # swapped out: not resident
        0,  # never touched
    ]
    raw = b"".join(e.to_bytes(8, "little") for e in entries)
    pagemap = Pagemap(100, raw, zero_pfn)
    assert pagemap.resident_pages(100, 106) == 3
    assert pagemap.present_mask() == bytes([1, 1, 1, 1, 0, 0])
    assert pagemap.swapped_pages() == 1
    assert Pagemap(100, raw, None).resident_pages(100, 106) == 4  # PFNs hidden: cannot tell


@pytest.mark.parametrize("use_native", [False, True])
def test_merge_runs_packed_lists_the_big_runs_and_the_run_below_an_address(use_native):
    if use_native and native.merge_runs() is None:
        pytest.skip(f"no native loop: {native.build_error}")
    from array import array

    from memtop.heap.walk import merge_runs_packed

    # GIVEN bin-free chunks and fastbin chunks, packed, some adjacent
    fast = array("Q", [96, 4, 200, 8, 5000, 32]).tobytes()
    free = array("Q", [64, 32, 100, 16, 208, 4792]).tobytes()
    # WHEN merged, THEN the runs of 4096 bytes or more (or ending at top) are listed, and the
    # length of the run ending at an address is told
    assert merge_runs_packed(free, fast, 4096, 5032, end_at=116, use_native=use_native) == ([[200, 5032]], 52)
    assert merge_runs_packed(free, fast, 4096, 0, end_at=117, use_native=use_native) == ([[200, 5032]], 0)
    assert merge_runs_packed(free, fast, 10, 0, end_at=5032, use_native=use_native) == ([[64, 116], [200, 5032]], 4832)
    assert merge_runs_packed(b"", b"", 10, 0, use_native=use_native) == ([], 0)
    with pytest.raises(Inconsistent):
        merge_runs_packed(array("Q", [96, 32]).tobytes(), fast, 4096, 0, use_native=use_native)
