"""Parsers of the page cache tab on text captured from this machine: vmstat, maps, mountinfo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memtop.model.pagecache import FileCacheStat
from memtop.procfs import ParseError
from memtop.procfs.filesources import parse_maps_file
from memtop.procfs.treescan import parse_mountinfo_pseudo_devices
from memtop.procfs.vmstat import parse_vmstat_file, vmstat_rates

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pagecache"


def test_vmstat_captured_has_the_thrashing_counters():
    table = parse_vmstat_file((FIXTURES / "vmstat").read_text())
    for key in ("pgpgin", "pgpgout", "pgmajfault", "workingset_refault_file", "workingset_refault_anon",
                "workingset_activate_file"):
        assert isinstance(table[key], int) and table[key] >= 0
    assert len(table) > 150


def test_vmstat_rates_between_two_captured_reads():
    before = parse_vmstat_file((FIXTURES / "vmstat").read_text())
    after = parse_vmstat_file((FIXTURES / "vmstat.1s").read_text())
    rates = vmstat_rates(before, after, 2.0, time=10.0)
    assert rates.interval_s == 2.0
    assert rates.get("pgpgin") == (after["pgpgin"] - before["pgpgin"]) / 2.0
    assert all(value >= 0 for value in rates.rates.values())


def test_vmstat_rates_leave_out_missing_and_backwards_counters():
    rates = vmstat_rates({"pgpgin": 10, "pgmajfault": 5}, {"pgpgin": 4, "pgmajfault": 9}, 1.0, time=0.0)
    assert rates.get("pgpgin") is None  # went backwards: not a rate
    assert rates.get("pgmajfault") == 4.0
    assert rates.get("workingset_refault_file") is None


def test_vmstat_garbage_is_a_parse_error():
    with pytest.raises(ParseError):
        parse_vmstat_file("this is not vmstat\n")


@given(st.text())
def test_vmstat_parser_never_crashes_otherwise(text):
    try:
        parse_vmstat_file(text)
    except ParseError:
        pass


def test_maps_captured_file_backed_only():
    entries = parse_maps_file((FIXTURES / "maps.cat").read_bytes())
    paths = {path for _, path, _ in entries}
    assert "/usr/bin/cat" in paths
    assert any("libc.so" in p for p in paths)
    assert not any(p.startswith("[") for p in paths)


def test_maps_deleted_and_spaces():
    data = (
        b"7f00-7f10 r--s 00000000 00:01 1234 /memfd:buf (deleted)\n"
        b"7f10-7f20 r--p 00000000 fd:00 99 /srv/my data/file name.bin\n"
        b"7f20-7f30 rw-p 00000000 00:00 0 \n"
        b"7ffd-7ffe rw-p 00000000 00:00 0 [stack]\n"
    )
    assert parse_maps_file(data) == [
        ("7f00-7f10", "/memfd:buf", True),
        ("7f10-7f20", "/srv/my data/file name.bin", False),
    ]


def test_mountinfo_pseudo_devices_from_captured_file():
    devices = parse_mountinfo_pseudo_devices((FIXTURES / "mountinfo").read_text())
    kinds = set(devices.values())
    assert {"proc", "sysfs", "devtmpfs"} <= kinds
    assert "ext4" not in kinds and "tmpfs" not in kinds  # tmpfs has page cache (shmem)
    assert devices[os.makedev(0, 21)] == "proc"


def test_cached_fraction():
    def stat(size, cached):
        return FileCacheStat("p", size, cached, 0, 0, 0, 0, "cachestat")

    assert stat(8192, 4096).cached_fraction == 0.5
    assert stat(0, 0).cached_fraction == 0.0
    assert stat(100, 4096).cached_fraction == 1.0  # a partly used last page is one page
    assert stat(100, None).cached_fraction is None


def test_fast_new_builds_the_same_frozen_record():
    args = ("/x", 1, 2, 3, 4, 5, 6, "cachestat", None, 7, 8)
    fast = FileCacheStat.fast_new(*args)
    assert fast == FileCacheStat(*args) and hash(fast) == hash(FileCacheStat(*args))
    with pytest.raises(AttributeError):
        fast.path = "/y"
