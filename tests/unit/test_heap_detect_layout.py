"""Allocator and runtime detection, glibc layouts and symbols, ELF notes; the paths of
analyze() that a live process cannot reach on this machine (32-bit, unknown glibc versions)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from memtop.heap import analyze, glibc
from memtop.heap.detect import detect_allocator, detect_runtime
from memtop.heap.elf import ElfFile
from memtop.heap.glibc import GlibcError, layout_for, parse_mp, reveal_ptr
from memtop.heap.memory import parse_maps_file

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "heap"
GLIBC_MAPS = (FIXTURES / "maps.sleep-glibc").read_text()
ELF64_HEAD = b"\x7fELF\x02\x01\x01" + bytes(57)


def with_line(path: str) -> list:
    line = f"7f00dead0000-7f00dead8000 r-xp 00000000 fe:00 4242                       {path}\n"
    return parse_maps_file(GLIBC_MAPS + line)


def test_glibc_is_recognised_in_captured_maps():
    maps = parse_maps_file(GLIBC_MAPS)
    assert detect_allocator(maps, ELF64_HEAD).kind == "glibc"
    heap = [m for m in maps if m.path == "[heap]"]
    assert len(heap) == 1 and heap[0].anonymous and heap[0].perms == "rw-p"


@pytest.mark.parametrize("path, kind", [
    ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "jemalloc"),
    ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.9", "tcmalloc"),
    ("/usr/lib/x86_64-linux-gnu/libmimalloc.so.2.0", "mimalloc"),
    ("/lib/ld-musl-x86_64.so.1", "musl"),
])
def test_a_preloaded_or_other_libc_allocator_wins_over_glibc(path, kind):
    guess = detect_allocator(with_line(path), ELF64_HEAD)
    assert guess.kind == kind
    assert Path(path).name in guess.evidence


def test_a_binary_without_interpreter_or_libc_is_static():
    maps = parse_maps_file("00400000-00401000 r-xp 00000000 fe:00 1 /usr/local/bin/static-thing\n")
    # ELF64 header with no program headers at all: no PT_INTERP
    assert detect_allocator(maps, ELF64_HEAD).kind == "static"
    assert detect_allocator(maps, None).kind == "unknown"


@pytest.mark.parametrize("path, kind", [
    ("/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so", "jvm"),
    ("/usr/lib/x86_64-linux-gnu/libnode.so.108", "node"),
    ("/usr/share/dotnet/shared/Microsoft.NETCore.App/8.0.0/libcoreclr.so", "dotnet"),
    ("/usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1.2", "ruby"),
    ("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0", "cpython"),
])
def test_runtimes_from_their_shared_objects(path, kind, tmp_path):
    info = detect_runtime(1, with_line(path), tmp_path, None)
    assert info.kind == kind
    assert info.advice, "each runtime comes with its own tool or switch"


def test_go_from_its_heap_arena_hint_and_build_note(tmp_path):
    maps = parse_maps_file(GLIBC_MAPS + "c000000000-c004000000 rw-p 00000000 00:00 0 \n")
    head = ELF64_HEAD + b"\0" * 100 + b"Go buildinf:"
    info = detect_runtime(1, maps, tmp_path, head)
    assert info.kind == "go"
    assert [r.start for r in info.regions] == [0xC000000000]
    assert any("GODEBUG=madvdontneed=1" in a for a in info.advice)


def test_no_runtime_for_a_native_program(tmp_path):
    assert detect_runtime(1, parse_maps_file(GLIBC_MAPS), tmp_path, ELF64_HEAD).kind == "none"


def test_layouts_by_version():
    with pytest.raises(GlibcError, match="older than 2.27"):
        layout_for((2, 26))
    with pytest.raises(GlibcError, match="newer than memtop knows"):
        layout_for((2, 42))
    assert layout_for((2, 27)).tcache_key == "none" and not layout_for((2, 27)).tcache_counts_u16
    assert layout_for((2, 29)).tcache_key == "pointer"
    assert layout_for((2, 31)).safe_linking is False and layout_for((2, 32)).safe_linking is True
    assert layout_for((2, 34)).heap_info_size == 32 and layout_for((2, 35)).heap_info_size == 48
    assert layout_for((2, 36)).first_chunk_offset == 2256  # reference: first chunk at heap+2256
    assert layout_for((2, 34)).first_chunk_offset == 2240


def test_parse_mp_both_layouts():
    new = struct.pack("<QQQQQQQiiiii4xQQQ", 0x20000, 0x20000, 0x20000, 8, 0, 0, 0, 0, 3, 65536, 3, 0,
                      4096 * 3, 4096 * 3, 0x555500000000)
    mp = parse_mp(new, layout_for((2, 36)))
    assert mp["n_mmaps"] == 3 and mp["mmapped_mem"] == 12288 and mp["sbrk_base"] == 0x555500000000
    old = struct.pack("<QQQQQiiiiQQQ", 0x20000, 0x20000, 0x20000, 8, 0, 2, 65536, 2, 1, 8192, 8192, 0x1000)
    mp = parse_mp(old, layout_for((2, 31)))
    assert mp["n_mmaps"] == 2 and mp["no_dyn_threshold"] == 1 and mp["sbrk_base"] == 0x1000


def test_reveal_ptr_undoes_protect_ptr():
    position, pointer = 0x5555_5555_9010, 0x5555_5555_a2c0
    stored = (position >> 12) ^ pointer  # PROTECT_PTR
    assert reveal_ptr(position, stored) == pointer


LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")


@pytest.mark.skipif(not LIBC.exists(), reason="no x86_64 glibc on this machine")
def test_debug_symbols_and_heuristics_agree_on_this_libc():
    elf = ElfFile(LIBC.read_bytes())
    build_id = elf.build_id()
    assert build_id and len(build_id) == 40
    image = glibc.LibcImage(str(LIBC), str(LIBC), 0, (2, 36), build_id, ())
    heuristic = glibc.heuristic_offsets(image)
    debug = glibc.debug_offsets(build_id)
    if debug is None:
        pytest.skip("libc6-dbg is not installed: only the heuristics can be checked")
    assert heuristic["main_arena"] == debug["main_arena"]
    assert heuristic["mp_"] == debug["mp_"]
    assert "tcache_key" in debug


def fake_proc(tmp_path: Path, exe: bytes, maps: str = GLIBC_MAPS) -> Path:
    pid_dir = tmp_path / "4242"
    pid_dir.mkdir()
    stat = (FIXTURES / "stat.sleep").read_text().replace("17738 (bash)", "4242 (bash)", 1)
    (pid_dir / "stat").write_text(stat)
    (pid_dir / "maps").write_text(maps)
    (pid_dir / "exe").write_bytes(exe)
    return tmp_path


def test_a_32_bit_process_is_refused_plainly(tmp_path):
    root = fake_proc(tmp_path, b"\x7fELF\x01\x01\x01" + bytes(57))
    report = analyze(4242, root)
    assert report.status == "unsupported" and not report.valid
    assert "32-bit" in report.reason


def test_a_jemalloc_process_is_not_walked(tmp_path):
    maps = GLIBC_MAPS + "7f00dead0000-7f00dead8000 r-xp 00000000 fe:00 4242 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n"
    report = analyze(4242, fake_proc(tmp_path, ELF64_HEAD, maps))
    assert report.allocator_kind == "jemalloc" and report.status == "not-glibc"
    assert "libjemalloc.so.2" in report.reason


def test_an_unknown_glibc_version_is_not_guessed(tmp_path):
    # A libc whose version string says 2.45: refused before any offset is used.
    libc = tmp_path / "libc.so.6"
    data = bytearray(LIBC.read_bytes()) if LIBC.exists() else bytearray(ELF64_HEAD + bytes(4096))
    at = data.find(b"release version 2.")
    if at == -1:
        data += b"stable release version 2.45."
    else:
        data[at:at + 22] = b"release version 2.45. "
    libc.write_bytes(bytes(data))
    proc = tmp_path / "proc"
    proc.mkdir()
    root = fake_proc(proc, ELF64_HEAD, f"7f0000000000-7f0000001000 r--p 00000000 fe:00 77 {libc}\n")
    (root / "4242" / "root").symlink_to("/")  # /proc/PID/root: the target's root directory
    report = analyze(4242, root)
    assert report.status == "unsupported"
    assert "2.45" in report.reason and "not guessing" in report.reason
