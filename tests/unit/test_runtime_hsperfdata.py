"""The PerfData parser and the file's opening, on a file captured from a real JDK 17 (G1) and on
hostile variants of it: every length bounded, no symlink followed, the owner and the inode checked."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from memtop.heap.memory import Mapping
from memtop.runtime import Target
from memtop.runtime.hsperfdata import PerfDataError, find_heap_range, open_perfdata_file, parse_perfdata

CAPTURED = Path(__file__).resolve().parent.parent / "fixtures" / "hsperfdata" / "jdk17-g1.bin"


def test_parses_the_captured_jdk17_file():
    perf = parse_perfdata(CAPTURED.read_bytes())
    assert (perf.major, perf.minor, perf.accessible) == (2, 0, True)
    assert perf.string("sun.gc.policy.name") == "GarbageFirst"
    assert perf.string("java.property.java.version") == "17.0.15"
    assert perf.long("sun.gc.generation.1.space.0.used") == 267309568  # jstat OU 261044.5 K
    assert perf.long("sun.gc.metaspace.capacity") == 327680  # jstat MC 320.0
    assert perf.long("sun.gc.collector.0.invocations") == 9  # jstat YGC
    assert perf.long("sun.os.hrt.frequency") == 1_000_000_000
    assert perf.units["sun.gc.metaspace.used"] == 2  # U_Bytes


def _entry_offset(data: bytes) -> int:
    return struct.unpack_from("<i", data, 24)[0]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"\x00" * 4 + d[4:], "magic"),
    (lambda d: d[:4] + b"\x07" + d[5:], "byte order"),
    (lambda d: d[:5] + b"\x01" + d[6:], "version"),
    (lambda d: d[:24] + struct.pack("<i", 1 << 30) + d[28:], "entry offset"),
    (lambda d: d[:28] + struct.pack("<i", 10**9) + d[32:], "entry count"),
    # the first entry claims to be longer than the file
    (lambda d: d[:32] + struct.pack("<i", 1 << 29) + d[36:], "bad length"),
    # its name offset points outside the entry
    (lambda d: d[:36] + struct.pack("<i", 1 << 20) + d[40:], "offsets"),
    (lambda d: d[:31], "magic"),
])
def test_hostile_buffers_are_refused_with_a_reason(mutate, message):
    with pytest.raises(PerfDataError, match=message):
        parse_perfdata(mutate(CAPTURED.read_bytes()))


def test_a_counter_overrunning_its_entry_is_refused():
    data = bytearray(CAPTURED.read_bytes())
    first = _entry_offset(bytes(data))
    length = struct.unpack_from("<i", data, first)[0]
    struct.pack_into("<i", data, first + 16, length - 4)  # data offset: 8 bytes would cross the end
    with pytest.raises(PerfDataError, match="overruns"):
        parse_perfdata(bytes(data))


def test_a_truncated_file_gives_the_complete_entries_only():
    data = CAPTURED.read_bytes()
    used = struct.unpack_from("<i", data, 8)[0]
    perf = parse_perfdata(data[:used // 2])
    assert 0 < len(perf.counters) < len(parse_perfdata(data).counters)


def _fake_root(tmp_path: Path, pid: int) -> tuple[Path, Path]:
    """A /proc-like root whose PID/root points at a directory tree standing for the target's /."""
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    fs = tmp_path / "fs"
    (fs / "tmp" / "hsperfdata_u").mkdir(parents=True)
    os.symlink(fs, proc / str(pid) / "root")
    return proc, fs


def _target(proc: Path, pid: int, uid: int, maps: list[Mapping]) -> Target:
    return Target(pid, proc, maps, {}, uids=(uid, uid, uid, uid))


def _mapping_of(path: Path, as_seen: str) -> Mapping:
    st = os.stat(path)
    return Mapping(0x7F0000000000, 0x7F0000008000, "rw-s", 0,
                   f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}", st.st_ino, as_seen)


def test_the_real_file_is_read_when_owner_and_inode_match(tmp_path):
    proc, fs = _fake_root(tmp_path, 4242)
    f = fs / "tmp" / "hsperfdata_u" / "4242"
    f.write_bytes(CAPTURED.read_bytes())
    data, path, why = open_perfdata_file(_target(proc, 4242, os.getuid(), []),
                                         _mapping_of(f, "/tmp/hsperfdata_u/4242"))
    assert why is None and path == "/tmp/hsperfdata_u/4242" and data == CAPTURED.read_bytes()[:0x8000]


def test_a_symlink_in_place_of_the_file_is_not_followed(tmp_path):
    proc, fs = _fake_root(tmp_path, 4242)
    secret = tmp_path / "secret"
    secret.write_bytes(CAPTURED.read_bytes())
    os.symlink(secret, fs / "tmp" / "hsperfdata_u" / "4242")
    data, _, why = open_perfdata_file(_target(proc, 4242, os.getuid(), []),
                                      _mapping_of(secret, "/tmp/hsperfdata_u/4242"))
    assert data is None and "symlink" in why


def test_a_symlinked_directory_is_not_followed(tmp_path):
    proc, fs = _fake_root(tmp_path, 4242)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "4242").write_bytes(CAPTURED.read_bytes())
    os.symlink(elsewhere, fs / "tmp" / "hsperfdata_v")
    data, _, why = open_perfdata_file(_target(proc, 4242, os.getuid(), []),
                                      _mapping_of(elsewhere / "4242", "/tmp/hsperfdata_v/4242"))
    assert data is None and "symlink" in why


def test_a_file_of_another_owner_or_inode_is_refused(tmp_path):
    proc, fs = _fake_root(tmp_path, 4242)
    f = fs / "tmp" / "hsperfdata_u" / "4242"
    f.write_bytes(CAPTURED.read_bytes())
    data, _, why = open_perfdata_file(_target(proc, 4242, os.getuid() + 1, []), _mapping_of(f, "/tmp/hsperfdata_u/4242"))
    assert data is None and "owned by uid" in why
    other = tmp_path / "other"
    other.write_bytes(b"x")
    data, _, why = open_perfdata_file(_target(proc, 4242, os.getuid(), []), _mapping_of(other, "/tmp/hsperfdata_u/4242"))
    assert data is None and "not the inode" in why


def test_a_fifo_does_not_block(tmp_path):
    proc, fs = _fake_root(tmp_path, 4242)
    f = fs / "tmp" / "hsperfdata_u" / "4242"
    os.mkfifo(f)
    data, _, why = open_perfdata_file(_target(proc, 4242, os.getuid(), []), _mapping_of(f, "/tmp/hsperfdata_u/4242"))
    assert data is None and "regular file" in why


def _m(start, end, perms="rw-p", path="", inode=0):
    return Mapping(start, end, perms, 0, "00:00", inode, path)


def test_heap_range_spans_the_reservation_with_the_cds_archive_inside():
    # From the real JVM above: G1's heap 0x687400000-0x800000000 with classes.jsa regions at its top.
    maps = [_m(0x687400000, 0x749400000), _m(0x749400000, 0x7FF800000, "---p"), _m(0x7FF800000, 0x7FFB00000),
            _m(0x7FFB00000, 0x7FFB75000, path="/usr/lib/jvm/classes.jsa", inode=5), _m(0x7FFB75000, 0x800000000),
            _m(0x7FC1E8000000, 0x7FC1E831F000), _m(0x7FC1E831F000, 0x7FC1EC000000, "---p")]
    size = 0x800000000 - 0x687400000
    assert find_heap_range(maps, [size, 2 * size], 0x749400000 - 0x687400000) == (0x687400000, 0x800000000)
    assert find_heap_range(maps, [size + 4096], None) is None


def test_config_files_are_read_only_if_the_process_could_read_them(tmp_path):
    from memtop.runtime import read_file_in_root

    proc, fs = _fake_root(tmp_path, 4242)
    secret = fs / "tmp" / "secret.conf"
    secret.write_text("shared_buffers = 1GB\n")
    os.chmod(secret, 0o600)
    os.chown(secret, 0, 0)
    other_user = _target(proc, 4242, 12345, [])
    data, why = read_file_in_root(other_user, "/tmp/secret.conf")
    assert data is None and "not readable by the process's uid 12345" in why
    os.chmod(secret, 0o644)
    assert read_file_in_root(other_user, "/tmp/secret.conf")[0] == b"shared_buffers = 1GB\n"
    os.symlink(secret, fs / "tmp" / "link.conf")
    assert "symlink" in read_file_in_root(other_user, "/tmp/link.conf")[1]


def test_a_process_whose_root_cannot_be_opened_is_said_so(tmp_path):
    proc, fs = _fake_root(tmp_path, 4242)
    f = fs / "tmp" / "hsperfdata_u" / "4242"
    f.write_bytes(CAPTURED.read_bytes())
    gone = _target(proc, 4243, os.getuid(), [])  # no proc/4243: the process exited
    data, _, why = open_perfdata_file(gone, _mapping_of(f, "/tmp/hsperfdata_u/4242"))
    assert data is None and why == "cannot open /proc/4243/root (No such file or directory)"


def test_directories_are_listed_as_the_process_sees_them_without_following_a_symlink(tmp_path):
    from memtop.runtime import list_dir_in_root

    proc, fs = _fake_root(tmp_path, 4242)
    (fs / "etc" / "conf.d").mkdir(parents=True)
    for name in ("b.conf", "a.conf"):
        (fs / "etc" / "conf.d" / name).write_text("x\n")
    target = _target(proc, 4242, os.getuid(), [])
    assert list_dir_in_root(target, "/etc/conf.d") == ["a.conf", "b.conf"]
    assert list_dir_in_root(target, "/etc/conf.d", limit=1) == ["a.conf"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.conf").write_text("x\n")
    os.symlink(elsewhere, fs / "etc" / "linked.d")
    assert list_dir_in_root(target, "/etc/linked.d") == []
    os.symlink(elsewhere, fs / "linkdir")
    assert list_dir_in_root(target, "/linkdir/") == []


def test_a_fifo_named_on_a_command_line_is_not_opened_for_reading(tmp_path):
    """A command line can name any path (`--defaults-file=/srv/fifo`): opening a FIFO for reading
    lets a writer blocked on it go on (a device's open acts on it too). It is looked at O_PATH and
    refused before any open for reading."""
    import subprocess
    import sys

    from memtop.runtime import read_file_in_root

    proc, fs = _fake_root(tmp_path, 4242)
    fifo = fs / "tmp" / "my.cnf"
    os.mkfifo(fifo)
    writer = subprocess.Popen([sys.executable, "-c", f"open({str(fifo)!r}, 'w').write('x'); print('opened')"],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # the writer blocks in open() until a reader opens the FIFO
        data, why = read_file_in_root(_target(proc, 4242, 0, []), "/tmp/my.cnf")
        assert data is None and "not a regular file" in why
        time.sleep(0.5)
        assert writer.poll() is None  # still waiting: memtop never opened it for reading
    finally:
        writer.kill()
        writer.wait(10)
