"""The anonymous-mapping census from smaps: the 16-thread target's real smaps, and made-up
layouts for the edge cases (merged heaps, a heap tail merged with a stack guard, non-glibc)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memtop.heap.census import HEAP_MAX_SIZE, census_from_mappings, detect_allocator
from memtop.procfs import ParseError
from memtop.procfs.smaps_mappings import SmapsMapping, parse_smaps_mappings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "arenas"
MIB = 1 << 20


def test_census_of_the_sixteen_thread_target():
    # GIVEN the smaps of the 16-thread target (15 thread arenas + main, 16 thread stacks)
    mappings = parse_smaps_mappings((FIXTURES / "smaps_16threads.txt").read_text())
    census = census_from_mappings(mappings)
    # THEN: glibc, the brk heap, 15 arena heaps of ~3.2 MiB each, 16 8-MiB stacks
    assert census.allocator == "glibc" and census.allocator_evidence == "libc.so.6"
    assert census.mappings == len(mappings) == 86
    assert census.brk_heap is not None and census.brk_heap.mapped_bytes == 0x56526e228000 - 0x56526dea0000
    assert len(census.arena_heaps) == 15
    assert all(h.start % HEAP_MAX_SIZE == 0 and h.reserved_bytes == HEAP_MAX_SIZE for h in census.arena_heaps)
    assert all(3 * MIB < h.mapped_bytes < 4 * MIB for h in census.arena_heaps)
    assert census.arena_heap_mapped_bytes == sum(h.mapped_bytes for h in census.arena_heaps)
    assert 0 < census.arena_heap_rss_bytes <= census.arena_heap_mapped_bytes
    assert census.thread_stacks.count == 16 and census.thread_stacks.mapped_bytes == 16 * 8 * MIB
    assert census.reserved_only.count == 0
    assert census.can_tell and census.cannot_tell


def test_parse_smaps_values_in_bytes():
    text = (FIXTURES / "smaps_16threads.txt").read_text()
    heap = next(m for m in parse_smaps_mappings(text) if m.path == "[heap]")
    assert heap.rss == 3556 * 1024 and heap.private_dirty == 3556 * 1024 and heap.swap == 0


def test_both_parsers_agree_on_real_smaps():
    # smaps with VmFlags lines goes the fast way (str.find per mapping); without, line by line
    from memtop.procfs.smaps_mappings import _parse_lines

    text = (FIXTURES / "smaps_16threads.txt").read_text()
    assert parse_smaps_mappings(text) == _parse_lines(text, "smaps")
    own = Path("/proc/self/smaps").read_text()
    assert parse_smaps_mappings(own) == _parse_lines(own, "smaps")


def test_parse_maps_without_values():
    maps = parse_smaps_mappings("7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n")
    assert maps[0].rss is None and maps[0].is_anonymous and maps[0].size == 4096


@pytest.mark.parametrize("text", [
    "Rss: 4 kB\n",
    "0z-yy rw-p 0 00:00 0\n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0\nRss: x kB\n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0\nRss: x kB\nVmFlags: rd wr\n",
    "Size: 4 kB\nVmFlags: rd wr\n",
])
def test_bad_smaps_is_a_parse_error(text):
    with pytest.raises(ParseError):
        parse_smaps_mappings(text)


def _m(start, end, perms="rw-p", path="", inode=0, rss=None):
    return SmapsMapping(start, end, perms, 0, inode, path, rss=rss if rss is not None else end - start, private_dirty=0, swap=0)


BASE = 0x7F0000000000  # a multiple of 64 MiB


def test_full_heaps_merged_into_one_vma_count_separately():
    maps = [_m(BASE, BASE + 2 * HEAP_MAX_SIZE), _m(0x1000, 0x2000, "r-xp", "/usr/lib/x86_64-linux-gnu/libc.so.6", 7)]
    census = census_from_mappings(maps)
    assert len(census.arena_heaps) == 2
    assert sum(h.rss_bytes for h in census.arena_heaps) == 2 * HEAP_MAX_SIZE


def test_heap_tail_merged_with_a_stack_guard_is_split():
    # heap rw 1 MiB, its PROT_NONE tail merged by the kernel with the guard page of a stack above
    end_tail = BASE + HEAP_MAX_SIZE
    maps = [
        _m(BASE, BASE + MIB),
        _m(BASE + MIB, end_tail + 4096, "---p", rss=0),
        _m(end_tail + 4096, end_tail + 4096 + 8 * MIB),
    ]
    census = census_from_mappings(maps)
    assert len(census.arena_heaps) == 1 and census.arena_heaps[0].reserved_bytes == HEAP_MAX_SIZE
    assert census.thread_stacks.count == 1
    assert census.reserved_only.count == 0 and census.other_anon.count == 0


def test_aligned_region_without_reservation_is_not_a_heap():
    maps = [_m(BASE, BASE + MIB), _m(BASE + 4 * MIB, BASE + 5 * MIB, "---p", rss=0)]
    census = census_from_mappings(maps)
    assert census.arena_heaps == ()
    assert census.other_anon.count == 1 and census.reserved_only.count == 1


def test_similar_regions_are_grouped():
    maps = [_m(BASE + i * 3 * MIB + MIB, BASE + i * 3 * MIB + 2 * MIB) for i in range(300)]
    maps += [_m(0x10000000 + i * 0x10000, 0x10000000 + i * 0x10000 + 0x3000) for i in range(5)]
    census = census_from_mappings(maps)
    assert census.size_groups[0].size_bytes == MIB and census.size_groups[0].count == 300
    assert census.size_groups[1].size_bytes == 0x3000 and census.size_groups[1].count == 5
    assert census.allocator == "unknown"


@pytest.mark.parametrize("paths, expected", [
    (["/usr/lib/x86_64-linux-gnu/libc.so.6"], "glibc"),
    (["/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"], "jemalloc"),
    (["/usr/lib/libtcmalloc_minimal.so.4", "/lib/libc.so.6"], "tcmalloc"),
    (["/lib/ld-musl-x86_64.so.1"], "musl"),
    (["/usr/local/bin/server"], "unknown"),
])
def test_detect_allocator(paths, expected):
    maps = [_m(0x1000 * (i + 1), 0x1000 * (i + 2), "r-xp", p, inode=i + 1) for i, p in enumerate(paths)]
    assert detect_allocator(maps)[0] == expected
    census = census_from_mappings(maps)
    if expected != "glibc":
        assert any("not glibc arenas" in line for line in census.cannot_tell)
