"""Parsers of the tmpfs view, on text captured from this machine (tests/fixtures/tmpfs/):
mountinfo with a test tmpfs and a stacked /dev/shm, kdevtmpfs's own mount namespace,
/proc/sysvipc/shm with an attached and an orphan segment, maps and smaps of a process holding
a deleted tmpfs file, a memfd, shared anonymous memory and a SysV segment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memtop.collect.tmpfs import _covered, usage_from_statvfs
from memtop.procfs import ParseError
from memtop.procfs.tmpfs import (
    DELETED_OR_SHARED_NEEDLES,
    deleted_or_shared,
    is_shared_memory_entry,
    parse_maps_file,
    parse_mountinfo_file,
    parse_smaps_file_entries,
    parse_sysvipc_shm_file,
    unescape_mount_field,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tmpfs"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_mountinfo_finds_memory_backed_mounts_and_stacked_dev_shm():
    lines = parse_mountinfo_file(fixture("mountinfo.self"))
    by_point = {}
    for line in lines:
        by_point.setdefault(line.mountpoint, []).append(line)
    test_mount = by_point["/tmp/memtop-cap"][0]
    assert (test_mount.fstype, test_mount.device, test_mount.source) == ("tmpfs", "0:39", "none")
    assert test_mount.option("size") == "65536k"
    assert by_point["/dev"][0].fstype == "devtmpfs"
    shm = by_point["/dev/shm"]
    assert [m.mount_id for m in shm] == [25, 30]
    # The second /dev/shm is mounted on top of the first one: it hides it.
    assert _covered(lines)[25] == 30
    assert 30 not in _covered(lines)
    assert by_point["/"][0].fstype == "ext4"


def test_mountinfo_of_another_namespace():
    (line,) = parse_mountinfo_file(fixture("mountinfo.kdevtmpfs"))
    assert (line.mountpoint, line.fstype, line.device) == ("/", "devtmpfs", "0:6")
    assert line.option("nr_inodes") == "3083608"


def test_mountinfo_escapes_and_optional_fields():
    text = r"36 35 98:0 /mnt1 /mnt\040with\040space rw,noatime master:1 shared:7 - tmpfs my\134src rw,size=1k" + "\n"
    (line,) = parse_mountinfo_file(text)
    assert line.mountpoint == "/mnt with space"
    assert line.source == "my\\src"
    assert line.fstype == "tmpfs"
    assert unescape_mount_field(r"a\011b\012c") == "a\tb\nc"


def test_mountinfo_malformed_line_is_a_parse_error():
    with pytest.raises(ParseError):
        parse_mountinfo_file("36 35 98:0 / /x rw\n")
    with pytest.raises(ParseError):
        parse_mountinfo_file("x 35 98:0 / /x rw - tmpfs none rw\n")


def test_sysvipc_shm_attached_segment_and_orphan():
    segs = {s.shmid: s for s in parse_sysvipc_shm_file(fixture("sysvipc_shm"))}
    attached, orphan = segs[0], segs[1]
    assert attached.nattch == 1 and not attached.orphan
    assert attached.marked_for_removal  # perms 1600: IPC_RMID already called
    assert (attached.size_bytes, attached.rss_bytes, attached.swap_bytes) == (524288, 524288, 0)
    assert orphan.orphan and not orphan.marked_for_removal
    assert orphan.key == 0x4D454D54 and orphan.perms == 0o640
    assert orphan.rss_bytes == 262144
    assert orphan.cpid == 8344


def test_sysvipc_shm_without_rss_columns_and_bad_header():
    old = ("       key      shmid perms       size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime\n"
           "         0          5   600       4096   10    11      0     0     0     0     0          0          0          1\n")
    (seg,) = parse_sysvipc_shm_file(old)
    assert seg.rss_bytes is None and seg.swap_bytes is None and seg.shmid == 5
    assert parse_sysvipc_shm_file("") == ()
    with pytest.raises(ParseError):
        parse_sysvipc_shm_file("key shmid\n1 2\n")
    with pytest.raises(ParseError):
        parse_sysvipc_shm_file(fixture("sysvipc_shm").splitlines()[0] + "\n 1 2 3\n")


def test_maps_selects_deleted_and_shared_memory_entries():
    all_entries = parse_maps_file(fixture("maps.holder"))
    assert len(all_entries) == len(fixture("maps.holder").splitlines())
    picked = parse_maps_file(fixture("maps.holder"), interesting=deleted_or_shared)
    names = [e.name for e in picked]
    assert names == ["/SYSV00000000", "/dev/zero", "/memfd:memtop-test", "/tmp/memtop-cap/victim.log"]
    victim = picked[3]
    # maps prints the device in hex: 00:27 is mountinfo's 0:39.
    assert (victim.major, victim.minor, victim.inode) == (0, 39, 2)
    assert victim.deleted and victim.shared and victim.size == 3 * 2**20
    assert [is_shared_memory_entry(e) for e in picked] == [True, True, True, False]
    sysv = picked[0]
    assert sysv.inode == 0  # the shmid (ipc/shm.c sets i_ino = shmid)
    # The fast path gives the same answer, and skips a text without any deleted/shared entry.
    assert parse_maps_file(fixture("maps.holder"), interesting=deleted_or_shared,
                           needles=DELETED_OR_SHARED_NEEDLES) == picked
    plain = "\n".join(line for line in fixture("maps.holder").splitlines() if "deleted" not in line)
    assert parse_maps_file(plain, interesting=deleted_or_shared, needles=DELETED_OR_SHARED_NEEDLES) == []


def test_smaps_entries_of_shared_memory():
    entries = parse_smaps_file_entries(fixture("smaps.holder"))
    by_name = {e.name: f for e, f in entries.values()}
    assert set(by_name) == {"/SYSV00000000", "/dev/zero", "/memfd:memtop-test"}
    assert by_name["/memfd:memtop-test"].rss == 2 * 2**20
    assert by_name["/dev/zero"].rss == 2**20
    assert by_name["/SYSV00000000"].rss == 512 * 1024
    assert by_name["/dev/zero"].kernel_page_size == 4096
    assert parse_smaps_file_entries("") == {}


def test_statvfs_usage_knows_what_is_not_reported():
    def vfs(blocks, bfree, files, ffree, frsize=4096):
        return os.statvfs_result((frsize, frsize, blocks, bfree, bfree, files, ffree, ffree, 0, 255))

    u = usage_from_statvfs("tmpfs", vfs(16384, 16000, 1000, 990))
    assert (u.size_bytes, u.used_bytes, u.inodes_used, u.reason) == (64 * 2**20, 384 * 4096, 10, None)
    unlimited = usage_from_statvfs("tmpfs", vfs(0, 0, 1000, 990))
    assert unlimited.used_bytes is None and "no size limit" in unlimited.reason
    ramfs = usage_from_statvfs("ramfs", vfs(0, 0, 0, 0))
    assert ramfs.used_bytes is None and ramfs.inodes_total is None and "ramfs" in ramfs.reason
    huge = usage_from_statvfs("hugetlbfs", vfs(4, 3, 2**64 - 1, 2**64 - 1, frsize=2 * 2**20))
    assert (huge.size_bytes, huge.used_bytes, huge.inodes_total) == (8 * 2**20, 2 * 2**20, None)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii"), max_size=300))
def test_parsers_raise_only_parse_error(text):
    for parse in (parse_mountinfo_file, parse_sysvipc_shm_file, parse_maps_file, parse_smaps_file_entries):
        try:
            parse(text)
        except ParseError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**20), st.sampled_from(fixture("mountinfo.self").splitlines()))
def test_mountinfo_survives_truncation(cut, line):
    try:
        parse_mountinfo_file(line[: cut % (len(line) + 1)])
    except ParseError:
        pass
