"""Parsers of kernel memory files, on text captured from this machine (tests/fixtures/kernel/),
header variants, and fuzzed garbage (which must raise ParseError, never anything else)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memtop.model.kernel import meminfo_categories, unexplained_bytes
from memtop.procfs import ParseError
from memtop.procfs.kernel import (
    classify_fd_link,
    fd_breakdown_from_links,
    parse_file_nr_file,
    parse_slabinfo_file,
    parse_sockstat_file,
)
from memtop.procfs.system import parse_meminfo_file

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kernel"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def raw_slab_lines(text: str) -> list[list[str]]:
    """An independent reading of the capture: whitespace fields of each data line."""
    return [line.split() for line in text.splitlines()[2:] if line.strip()]


# --- slabinfo ---------------------------------------------------------------------------------


def test_slabinfo_capture_parses_every_cache_with_slabtop_sizes():
    text = fixture("slabinfo")
    info = parse_slabinfo_file(text, page_size=4096)
    raw = raw_slab_lines(text)
    assert info.version == "2.1" and not info.statistics
    assert len(info.caches) == len(raw) > 100
    for cache, fields in zip(info.caches, raw):
        assert cache.name == fields[0]
        assert (cache.active_objs, cache.num_objs, cache.objsize) == (int(fields[1]), int(fields[2]), int(fields[3]))
        # fields: name a n size perslab pages : tunables l b s : slabdata active num shared
        assert cache.total_bytes == int(fields[14]) * int(fields[5]) * 4096
        assert cache.active_bytes == int(fields[1]) * int(fields[3])


def test_slabinfo_capture_total_is_close_to_meminfo_slab():
    """The caches hold most of meminfo's Slab (large kmallocs are the rest): within 20 %."""
    info = parse_slabinfo_file(fixture("slabinfo"), page_size=4096)
    meminfo = parse_meminfo_file(fixture("meminfo"))
    assert 0.8 * meminfo["Slab"] <= info.total_bytes <= meminfo["Slab"]


HEADER_LINE = ("# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> "
               "<batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>")
SLUB_LINE = "dentry             59724  59724    192   21    1 : tunables    0    0    0 : slabdata   2844   2844      0"


@pytest.mark.parametrize(
    "header, version, statistics",
    [
        ("slabinfo - version: 2.1", "2.1", False),
        ("slabinfo - version: 2.1 (statistics)", "2.1", True),
        ("slabinfo - version: 2.0", "2.0", False),
        ("slabinfo - version: 2.1   ", "2.1", False),
    ],
)
def test_slabinfo_header_variants(header, version, statistics):
    info = parse_slabinfo_file(f"{header}\n{HEADER_LINE}\n{SLUB_LINE}\n", page_size=4096)
    assert (info.version, info.statistics) == (version, statistics)
    (dentry,) = info.caches
    assert (dentry.name, dentry.num_objs, dentry.objsize, dentry.num_slabs) == ("dentry", 59724, 192, 2844)
    assert dentry.total_bytes == 2844 * 4096


def test_slabinfo_statistics_columns_and_slab_tunables():
    """A CONFIG_DEBUG_SLAB kernel (SLAB allocator) appends globalstat/cpustat; tunables non-zero."""
    line = ("size-64            2790   2891     64   59    1 : tunables  120   60    8 : slabdata     49     49      0"
            " : globalstat    4013   2868    49     0    0    0    0    0    0 : cpustat   3364    287   1014    161")
    info = parse_slabinfo_file(f"slabinfo - version: 2.1 (statistics)\n{line}\n", page_size=4096)
    assert info.statistics
    assert (info.caches[0].active_objs, info.caches[0].num_slabs) == (2790, 49)


def test_slabinfo_without_column_title_and_with_blank_lines():
    info = parse_slabinfo_file(f"slabinfo - version: 2.1\n\n{SLUB_LINE}\n\n", page_size=4096)
    assert [c.name for c in info.caches] == ["dentry"]


def test_slabinfo_empty_cache_has_unknown_use():
    line = "btrfs_delayed_node      0      0    312   13    1 : tunables    0    0    0 : slabdata      0      0      0"
    (cache,) = parse_slabinfo_file(f"slabinfo - version: 2.1\n{line}\n").caches
    assert cache.active_fraction is None and cache.total_bytes == 0
    # the Kernel tab's USE: "-" (nothing to use), not "?" (unknown); and the name keeps to its width
    from memtop.model.kernel import SlabRow
    from memtop.tui.kernel import NAME_MAX_WIDTH, SLAB_COLUMNS_BY_KEY, SlabTable
    assert SLAB_COLUMNS_BY_KEY["use"].text(SlabRow(cache, None, None)) == "-"
    assert dict((c.key, w) for c, w in SlabTable.layout(None, 180))["name"] == NAME_MAX_WIDTH
    assert dict((c.key, w) for c, w in SlabTable.layout(None, 60))["name"] < NAME_MAX_WIDTH


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("slabinfo - version: 1.1\n", "version 1.1 is not supported"),
        ("name active num\n", "not a 'slabinfo - version: 2.1' header"),
        ("slabinfo - version: 2.1\ndentry 1 2 3\n", "line 2: expected a name and 5 counts"),
        ("slabinfo - version: 2.1\ndentry 1 2 x 4 5 : slabdata 1 1 0\n", "objsize is 'x'"),
        ("slabinfo - version: 2.1\ndentry 1 2 3 4 5 : tunables 0 0 0\n", "no ': slabdata"),
        ("slabinfo - version: 2.1\ndentry 1 2 3 4 5 : slabdata -1 1 0\n", "active_slabs is '-1'"),
    ],
)
def test_slabinfo_bad_input_names_the_problem(text, message):
    with pytest.raises(ParseError, match=message) as excinfo:
        parse_slabinfo_file(text, "/proc/slabinfo")
    assert str(excinfo.value).startswith("cannot parse /proc/slabinfo: ")


# --- sockstat -----------------------------------------------------------------------------------


def test_sockstat_capture_mem_bytes_are_pages_times_page_size():
    text = fixture("sockstat")
    stat = parse_sockstat_file(text, page_size=4096)
    raw = {line.split(":")[0]: line.split()[1:] for line in text.splitlines()}
    assert stat.sockets_used == int(raw["sockets"][1])
    tcp = stat.protocol("TCP")
    tcp_fields = dict(zip(raw["TCP"][::2], raw["TCP"][1::2]))
    assert {k: tcp.get(k) for k in ("inuse", "orphan", "tw", "alloc")} == {
        k: int(tcp_fields[k]) for k in ("inuse", "orphan", "tw", "alloc")
    }
    assert tcp.mem_bytes == int(tcp_fields["mem"]) * 4096
    assert stat.protocol("UDP").mem_bytes == int(raw["UDP"][raw["UDP"].index("mem") + 1]) * 4096
    assert stat.protocol("RAW").mem_bytes is None  # no memory figure on that line
    # FRAG's "memory" is bytes already (ip_frag_mem), not pages.
    assert stat.protocol("FRAG").mem_bytes == int(raw["FRAG"][raw["FRAG"].index("memory") + 1])


def test_sockstat6_capture_has_no_sockets_line():
    stat = parse_sockstat_file(fixture("sockstat6"))
    assert stat.sockets_used is None
    assert [p.name for p in stat.protocols] == ["TCP6", "UDP6", "UDPLITE6", "RAW6", "FRAG6"]


def test_sockstat_page_size_is_a_parameter():
    stat = parse_sockstat_file("TCP: inuse 3 orphan 0 tw 2 alloc 5 mem 7\n", page_size=65536)
    assert stat.protocol("TCP").mem_bytes == 7 * 65536


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no lines"),
        ("TCP inuse 3\n", "expected 'NAME: key value"),
        ("TCP: inuse\n", "key/value pairs"),
        ("TCP: inuse three\n", "TCP inuse is 'three'"),
        ("TCP: inuse 1\nTCP: inuse 2\n", "TCP appears twice"),
    ],
)
def test_sockstat_bad_input_names_the_problem(text, message):
    with pytest.raises(ParseError, match=message):
        parse_sockstat_file(text, "/proc/net/sockstat")


# --- file-nr, fd links, meminfo categories ----------------------------------------------------------


def test_file_nr_capture():
    raw = fixture("file-nr").split()
    nr = parse_file_nr_file(fixture("file-nr"))
    assert (nr.allocated, nr.unused, nr.maximum) == tuple(int(x) for x in raw)
    with pytest.raises(ParseError, match="three non-negative integers"):
        parse_file_nr_file("12 0\n")


def test_fd_links_are_classified():
    links = ["socket:[123]", "socket:[124]", "pipe:[9]", "anon_inode:[eventfd]", "anon_inode:[eventpoll]",
             "anon_inode:[eventfd]", "/dev/null", "/tmp/x (deleted)", "/memfd:heap (deleted)", "net:[4026531833]", None]
    b = fd_breakdown_from_links(42, links)
    assert (b.total, b.sockets, b.pipes, b.anon_inodes, b.files, b.other, b.unreadable) == (10, 2, 1, 3, 3, 1, 1)
    assert b.deleted_files == 2
    assert dict(b.anon_kinds) == {"eventfd": 2, "eventpoll": 1}
    assert classify_fd_link("anon_inode:inotify") == "anon_inode"


def test_meminfo_categories_and_remainder_on_capture():
    meminfo = parse_meminfo_file(fixture("meminfo"))
    cats = {c.key: c.bytes for c in meminfo_categories(meminfo)}
    for key in ("SReclaimable", "SUnreclaim", "KernelStack", "PageTables", "SecPageTables", "Percpu",
                "VmallocUsed", "Shmem", "Buffers"):
        assert cats[key] == meminfo[key]
    expected = (meminfo["MemTotal"] - meminfo["MemFree"]
                - sum(meminfo[k] for k in ("AnonPages", "Cached", "Buffers", "SwapCached", "Hugetlb", "Zswap"))
                - sum(meminfo[k] for k in ("Slab", "KernelStack", "PageTables", "SecPageTables", "Percpu", "VmallocUsed")))
    assert cats["Unexplained"] == expected
    assert 0 <= expected < meminfo["MemTotal"] - meminfo["MemFree"]
    assert unexplained_bytes({"MemTotal": 1}) is None  # missing lines: unknown, not 0


# --- fuzzing: garbage raises ParseError, never anything else -------------------------------------

_slab_alphabet = st.sampled_from(list("0123456789 :-#.\n\tabslabdatunevrioç١") + ["slabdata", "tunables", "\x00"])
_slab_garbage = st.lists(_slab_alphabet, max_size=200).map("".join)


@settings(max_examples=300, deadline=None)
@given(body=_slab_garbage, header=st.sampled_from(["slabinfo - version: 2.1\n", "slabinfo - version: 2.1 (statistics)\n", ""]))
def test_slabinfo_garbage_never_crashes(body, header):
    try:
        info = parse_slabinfo_file(header + body)
    except ParseError as e:
        assert str(e).startswith("cannot parse slabinfo: ")
        return
    for cache in info.caches:
        assert min(cache.active_objs, cache.num_objs, cache.objsize, cache.num_slabs) >= 0


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_slabinfo_arbitrary_text_never_crashes(text):
    try:
        parse_slabinfo_file(text)
    except ParseError:
        pass


_sock_alphabet = st.sampled_from(list("0123456789 :-\n\tTCPUDinuseor١") + ["mem ", "memory ", "sockets: used ", "TCP: "])


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=200), st.lists(_sock_alphabet, max_size=120).map("".join)))
def test_sockstat_garbage_never_crashes(text):
    try:
        stat = parse_sockstat_file(text)
    except ParseError as e:
        assert str(e).startswith("cannot parse sockstat: ")
        return
    assert stat.sockets_used is not None or stat.protocols


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_file_nr_garbage_never_crashes(text):
    try:
        parse_file_nr_file(text)
    except ParseError:
        pass
