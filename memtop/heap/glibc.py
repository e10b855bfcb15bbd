"""Which glibc a process runs, the layout of its malloc structures, and where they are.

Layouts are from glibc's malloc/malloc.c and malloc/arena.c (see reference/glibc-heap.md), for
x86_64. Only versions whose layout is known are accepted (2.27 to 2.41); anything else is
refused rather than read with guessed offsets.

main_arena, mp_ and tcache_key are private symbols. Two ways to find them:
1. ``debug``: the separate debug file found by the libc's NT_GNU_BUILD_ID under
   /usr/lib/debug/.build-id/ (Debian's libc6-dbg) has them in .symtab. The host's directory is
   looked in first, then the target's own (``/proc/PID/root/usr/lib/debug/.build-id/``), so that a
   container's libc6-dbg serves the container's libc. The container's tree is hostile: the file
   is opened with openat2(RESOLVE_IN_ROOT) below /proc/PID/root (links stay inside the container,
   /proc magic links are refused), must be a regular file of at most DEBUG_FILE_LIMIT bytes, and
   is used only when its own build-id is the libc's (a file with another build-id is ignored).
2. ``heuristic``: the on-disk libc image. In .data, main_arena is all zeros except
   ``.next = &main_arena`` (at +2160) and ``.attached_threads = 1`` (+2176); the self-pointer is
   either stored in place (DT_RELR, implicit addend) or given by an R_X86_64_RELATIVE entry with
   ``r_offset - r_addend == 2160``. mp_ starts with its defaults {128 KiB, 128 KiB, 128 KiB, 8}
   (DEFAULT_TRIM_THRESHOLD, DEFAULT_TOP_PAD, DEFAULT_MMAP_THRESHOLD_MIN... , arena_test).
   tcache_key is read from an entry of a tcache that the walk can see.
"""

from __future__ import annotations

import os
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from memtop.heap.elf import ElfError, ElfFile
from memtop.heap.memory import Mapping

MIN_VERSION = (2, 27)
MAX_VERSION = (2, 41)  # 2.42 moved to 76 bins and renamed tcache counts: not handled
TESTED_VERSIONS = ((2, 36),)
DEBUG_DIRS = (Path("/usr/lib/debug/.build-id"),)
DEBUG_IN_ROOT = "usr/lib/debug/.build-id"  # the same directory, in the target's root
DEBUG_FILE_LIMIT = 256 << 20

MALLOC_STATE_SIZE = 2200
ARENA_NEXT = 2160
ARENA_ATTACHED = 2176
ARENA_SYSTEM_MEM = 2184
ARENA_TOP = 96
ARENA_FASTBINS = 16
NFASTBINS = 10
SIZE_SZ = 8
MALLOC_ALIGNMENT = 16
MINSIZE = 32
HEAP_MAX_SIZE = 64 << 20  # 2 * DEFAULT_MMAP_THRESHOLD_MAX on 64-bit (arena.c)

_LIBC_RE = re.compile(r"/libc(?:-[0-9.]+\.so|\.so\.6)$")  # not musl's bare libc.so
_VERSION_RE = re.compile(rb"release version (\d+)\.(\d+)")


class GlibcError(Exception):
    """glibc could not be understood; ``status`` is the report status to use."""

    def __init__(self, status: str, reason: str):
        self.status = status
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Layout:
    version: tuple[int, int]
    heap_info_size: int  # 32 before 2.35 (no pagesize field), 48 from 2.35
    tcache_counts_u16: bool  # uint16_t counts from 2.30, char before
    tcache_key: str  # 'none' (2.26-2.28), 'pointer' (2.29-2.33: the owning tcache), 'random' (2.34+)
    safe_linking: bool  # PROTECT_PTR on fastbin fd and tcache next from 2.32
    mp_format: str  # struct layout of the mp_ fields read, see MP_FIELDS
    mp_size: int

    @property
    def first_chunk_offset(self) -> int:
        """Offset of the first chunk in an arena's first heap: heap_info, then malloc_state."""
        return align_up(self.heap_info_size + MALLOC_STATE_SIZE, MALLOC_ALIGNMENT)

    @property
    def tcache_struct_size(self) -> int:
        return 64 * (2 if self.tcache_counts_u16 else 1) + 64 * 8


# mp_ (struct malloc_par) field order; 2.35 added thp_pagesize, hp_pagesize, hp_flags.
MP_FIELDS_235 = ("trim_threshold", "top_pad", "mmap_threshold", "arena_test", "arena_max", "thp_pagesize",
                 "hp_pagesize", "hp_flags", "n_mmaps", "n_mmaps_max", "max_n_mmaps", "no_dyn_threshold",
                 "mmapped_mem", "max_mmapped_mem", "sbrk_base")
MP_FORMAT_235 = "<QQQQQQQiiiii4xQQQ"  # ... hp_flags @56, n_mmaps @60 ... sbrk_base @96
MP_FIELDS_OLD = ("trim_threshold", "top_pad", "mmap_threshold", "arena_test", "arena_max", "n_mmaps",
                 "n_mmaps_max", "max_n_mmaps", "no_dyn_threshold", "mmapped_mem", "max_mmapped_mem", "sbrk_base")
MP_FORMAT_OLD = "<QQQQQiiiiQQQ"  # n_mmaps @40 ... sbrk_base @72


def layout_for(version: tuple[int, int]) -> Layout:
    if version < MIN_VERSION:
        raise GlibcError("unsupported", f"glibc {version[0]}.{version[1]} is older than 2.27: its heap layout is not handled")
    if version > MAX_VERSION:
        raise GlibcError("unsupported", f"glibc {version[0]}.{version[1]} is newer than memtop knows "
                                        f"(up to {MAX_VERSION[0]}.{MAX_VERSION[1]}); not guessing its layout")
    new_mp = version >= (2, 35)
    return Layout(
        version=version,
        heap_info_size=48 if version >= (2, 35) else 32,
        tcache_counts_u16=version >= (2, 30),
        tcache_key="random" if version >= (2, 34) else ("pointer" if version >= (2, 29) else "none"),
        safe_linking=version >= (2, 32),
        mp_format=MP_FORMAT_235 if new_mp else MP_FORMAT_OLD,
        mp_size=struct.calcsize(MP_FORMAT_235 if new_mp else MP_FORMAT_OLD),
    )


def parse_mp(data: bytes, layout: Layout) -> dict[str, int]:
    fields = MP_FIELDS_235 if layout.mp_format == MP_FORMAT_235 else MP_FIELDS_OLD
    return dict(zip(fields, struct.unpack_from(layout.mp_format, data)))


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) & ~(alignment - 1)


def reveal_ptr(position: int, stored: int) -> int:
    """glibc's REVEAL_PTR (malloc.c, safe-linking): ``(pos >> 12) ^ ptr``."""
    return (position >> 12) ^ stored


@dataclass(frozen=True, slots=True)
class LibcImage:
    """The libc mapped into a target: where it is loaded and what it is."""

    path: str  # the path in the target's maps
    file_path: str  # how we read it (map_files or root/)
    base: int
    version: tuple[int, int]
    build_id: str | None
    writable: tuple[tuple[int, int], ...]  # libc's rw mappings (for .data/.bss)
    static: bool = False  # glibc linked into the executable: ``path`` is the executable
    version_basis: str | None = None  # how the version was told, when not from the version string
    pid: int | None = None  # the target, whose root may hold its own debug files
    proc_root: str | None = None


@dataclass(frozen=True, slots=True)
class Symbols:
    main_arena: int
    mp: int
    tcache_key: int | None  # address of tcache_key (2.34+), when known
    source: str  # 'debug', 'heuristic' or 'symtab' (a static executable's own symbols)
    debug_file: str | None = None  # the debug file used ('debug'), on the host or in the target's root


def find_libc_mappings(maps: list[Mapping]) -> list[Mapping]:
    return [m for m in maps if _LIBC_RE.search(m.path.removesuffix(" (deleted)"))]


def open_libc(pid: int, maps: list[Mapping], root: Path) -> LibcImage | None:
    """The libc of the target, read through /proc/PID/map_files (works across mount
    namespaces, root only) or /proc/PID/root + path. None when no libc is mapped."""
    mappings = find_libc_mappings(maps)
    if not mappings:
        return None
    first = min((m for m in mappings if m.offset == 0), key=lambda m: m.start, default=None)
    if first is None:
        raise GlibcError("unsupported", "libc is mapped without its first page; cannot find its load address")
    candidates = [f"{root}/{pid}/map_files/{first.start:x}-{first.end:x}",
                  f"{root}/{pid}/root{first.path.removesuffix(' (deleted)')}"]
    data = None
    used = None
    for candidate in candidates:
        try:
            data = _read_file_cached(candidate)
            used = candidate
            break
        except OSError:
            continue
    if data is None:
        raise GlibcError("denied", f"cannot read the target's libc ({first.path}); root or CAP_SYS_PTRACE is needed")
    elf = _elf_cached(data)
    match = _VERSION_RE.search(data)
    if match is None:
        raise GlibcError("unsupported", f"{first.path} has no glibc version string (not glibc?)")
    version = (int(match.group(1)), int(match.group(2)))
    base = first.start - elf.first_load_vaddr()
    writable = tuple((m.start, m.end) for m in mappings if "w" in m.perms)
    return LibcImage(first.path, used, base, version, elf.build_id(), writable, pid=pid, proc_root=str(root))


# A static executable has no version string of glibc's; its malloc symbols' sizes tell the
# layout family (malloc/malloc.c): sizeof(struct malloc_state) is 2200 from 2.27 to 2.41;
# sizeof(struct malloc_par) is 136 from 2.35 (thp_pagesize, hp_pagesize, hp_flags added) and
# 112 before; tcache_key became a random global in 2.34. Anything else is refused.
STATIC_FINGERPRINTS = (
    # (main_arena size, mp_ size, has tcache_key) -> the version whose layout to use, and what it covers
    ((2200, 136, True), (2, 36), "2.35 to 2.41"),
    ((2200, 112, True), (2, 34), "2.34"),
)
STATIC_MAX_EXE_BYTES = 256 << 20


def open_static(pid: int, maps: list[Mapping], root: Path, exe_path: str) -> LibcImage:
    """glibc linked into a static executable that kept its symbol table (``main_arena`` and
    ``mp_`` are local symbols of .symtab). The executable plays libc's part: its load bias is
    the base, the layout is told from the symbols' sizes (see STATIC_FINGERPRINTS)."""
    mapped = [m for m in maps if m.path.removesuffix(" (deleted)") == exe_path]
    first = min((m for m in mapped if m.offset == 0), key=lambda m: m.start, default=None)
    if first is None:
        raise GlibcError("unsupported", "the executable is mapped without its first page; cannot find its load address")
    candidates = [f"{root}/{pid}/map_files/{first.start:x}-{first.end:x}", f"{root}/{pid}/exe"]
    data = used = None
    for candidate in candidates:
        try:
            if os.stat(candidate).st_size > STATIC_MAX_EXE_BYTES:
                raise GlibcError("unsupported", f"the static executable is larger than {STATIC_MAX_EXE_BYTES >> 20} MiB: not read")
            data = _read_file_cached(candidate)
            used = candidate
            break
        except OSError:
            continue
    if data is None:
        raise GlibcError("denied", f"cannot read the target's executable ({exe_path}); root or CAP_SYS_PTRACE is needed")
    elf = _elf_cached(data)
    if not elf.has_symtab():
        raise GlibcError("unsupported", "a stripped static glibc binary: without its symbol table neither main_arena "
                                        "nor the glibc version (its heap layout) can be told")
    table = elf.symbol_table({"main_arena", "mp_", "tcache_key"})
    if "main_arena" not in table or "mp_" not in table:
        raise GlibcError("unsupported", "the static executable's symbol table has no main_arena / mp_ (not glibc malloc?)")
    key = (table["main_arena"][1], table["mp_"][1], "tcache_key" in table)
    match = next((fp for fp in STATIC_FINGERPRINTS if fp[0] == key), None)
    if match is None:
        raise GlibcError("unsupported", f"static glibc with main_arena of {key[0]} bytes and mp_ of {key[1]} bytes: "
                                        "a heap layout memtop does not know (it reads 2.34 to 2.41)")
    base = first.start - elf.first_load_vaddr()
    writable = tuple((m.start, m.end) for m in mapped if "w" in m.perms)
    return LibcImage(exe_path, used, base, match[1], elf.build_id(), writable, static=True,
                     version_basis=f"static: glibc {match[2]}, told from the sizes of main_arena and mp_ in .symtab")


def static_offsets(libc: LibcImage) -> dict[str, int]:
    """main_arena, mp_ and tcache_key from the static executable's own .symtab."""
    elf = _elf_cached(_read_file_cached(libc.file_path))
    return elf.symbols({"main_arena", "mp_", "tcache_key"})


# Files read and parsed, by file identity (device, inode, mtime): a libc is read once however
# many processes map it. Bounded; a changed file has a new identity.
_cache_lock = threading.Lock()
_file_cache: dict[tuple[int, int, int], bytes] = {}
_elf_cache: dict[tuple[int, int, int], ElfFile] = {}
_file_keys: dict[int, tuple[int, int, int]] = {}  # id of a cached bytes object -> its identity
_offsets_cache: dict[tuple[str, str], object] = {}  # ("debug", id) -> (offsets, file); ("heuristic", id) -> offsets


def _read_file_cached(path: str) -> bytes:
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_mtime_ns)
    with _cache_lock:
        data = _file_cache.get(key)
    if data is None:
        with open(path, "rb") as f:
            data = f.read()
        with _cache_lock:
            if len(_file_cache) > 8:
                _file_cache.clear()
                _elf_cache.clear()
                _file_keys.clear()
            _file_cache[key] = data
            _file_keys[id(data)] = key  # valid while _file_cache holds the object
    return data


def _elf_cached(data: bytes) -> ElfFile:
    with _cache_lock:
        key = _file_keys.get(id(data)) if _file_cache.get(_file_keys.get(id(data))) is data else None
        elf = _elf_cache.get(key) if key is not None else None
    if elf is None:
        try:
            elf = ElfFile(data)
        except (ElfError, struct.error) as e:
            raise GlibcError("unsupported", f"libc is not a 64-bit ELF file we can read: {e}") from e
        if key is not None:
            with _cache_lock:
                _elf_cache[key] = elf
    return elf


def debug_file_for(build_id: str | None) -> Path | None:
    """The host's debug file for ``build_id`` (DEBUG_DIRS), or None."""
    if not build_id or len(build_id) < 3:
        return None
    for directory in DEBUG_DIRS:
        candidate = directory / build_id[:2] / f"{build_id[2:]}.debug"
        if candidate.is_file():
            return candidate
    return None


def _build_id_path(build_id: str) -> str:
    return f"{DEBUG_IN_ROOT}/{build_id[:2]}/{build_id[2:]}.debug"


def _symbols_of_debug_file(data: bytes, build_id: str) -> tuple[dict[str, int] | None, str | None]:
    """(offsets, why not) from a debug file's bytes; refused unless its build-id is ``build_id``."""
    try:
        elf = ElfFile(data)
        own = elf.build_id()
        if own != build_id:
            return None, f"its build-id is {own}, not the libc's {build_id}"
        found = elf.symbols({"main_arena", "mp_", "tcache_key"})
    except (ElfError, struct.error, ValueError, IndexError) as e:
        return None, f"not an ELF file memtop can read: {e}"
    if "main_arena" not in found or "mp_" not in found:
        return None, "no main_arena or mp_ symbol in it"
    return found, None


def debug_lookup(build_id: str | None, pid: int | None = None, proc_root: str | None = None) -> tuple[dict[str, int] | None, str | None, str]:
    """(offsets, the file used, what was tried) for ``build_id``: the host's debug directory,
    then the target's (see the module doc)."""
    if not build_id or len(build_id) < 3 or not re.fullmatch(r"[0-9a-f]+", build_id):
        return None, None, "no build-id"
    tried = []
    path = debug_file_for(build_id)
    if path is not None:
        try:
            with open(path, "rb") as f:
                found, why = _symbols_of_debug_file(f.read(DEBUG_FILE_LIMIT + 1), build_id)
        except OSError as e:
            found, why = None, os.strerror(e.errno or 0)
        if found is not None:
            return found, str(path), ""
        tried.append(f"{path}: {why}")
    else:
        tried.append(f"no {DEBUG_DIRS[0]}/{build_id[:2]}/{build_id[2:]}.debug on the host")
    if pid is not None:
        from memtop.procfs.safefiles import Refused, read_in_root

        root = f"{proc_root or '/proc'}/{pid}/root"
        try:
            same = os.stat(root).st_ino == os.stat("/").st_ino and os.stat(root).st_dev == os.stat("/").st_dev
        except OSError:
            same = False
        if not same:
            inner = _build_id_path(build_id)
            try:
                read = read_in_root(root, inner, limit=DEBUG_FILE_LIMIT)
                found, why = _symbols_of_debug_file(read.data, build_id)
                if found is not None:
                    return found, f"{root}/{inner}", ""
                tried.append(f"{root}/{inner}: {why}")
            except Refused as e:
                tried.append(e.reason)
    return None, None, "; ".join(tried)


def debug_offsets(build_id: str | None, pid: int | None = None, proc_root: str | None = None) -> dict[str, int] | None:
    """Offsets (from the load base) of main_arena, mp_ and tcache_key from libc6-dbg, or None.

    Cached by build-id: a debug file is used only when its build-id is the libc's, so the
    offsets are the same wherever it was found.
    """
    found = _debug_offsets_with_file(build_id, pid, proc_root)
    return found[0] if found is not None else None


def _debug_offsets_with_file(build_id, pid=None, proc_root=None) -> tuple[dict[str, int], str] | None:
    if not build_id:
        return None
    key = ("debug", build_id)
    with _cache_lock:
        cached = _offsets_cache.get(key)
    if cached is not None:
        return cached
    offsets, path, _tried = debug_lookup(build_id, pid, proc_root)
    if offsets is None:
        return None
    with _cache_lock:
        _offsets_cache[key] = (offsets, path)
    return offsets, path


def heuristic_offsets(libc: LibcImage) -> dict[str, int]:
    """main_arena and mp_ offsets from the on-disk libc image (see module doc)."""
    key = ("heuristic", libc.build_id or libc.file_path)
    with _cache_lock:
        cached = _offsets_cache.get(key)
    if cached is not None:
        return cached
    data = _read_file_cached(libc.file_path)
    elf = _elf_cached(data)
    data_section = elf.section(".data")
    if data_section is None:
        raise GlibcError("unsupported", "libc has no .data section; cannot find main_arena without debug symbols")
    blob = data[data_section.offset:data_section.offset + data_section.size]
    vaddr0 = data_section.addr
    arenas = set()
    # In-place self-pointer (DT_RELR keeps the addend in the word itself).
    for index, (word,) in enumerate(struct.iter_unpack("<Q", blob[: len(blob) // 8 * 8])):
        vaddr = vaddr0 + index * 8
        if word and word == vaddr - ARENA_NEXT:
            arenas.add(word)
    # R_X86_64_RELATIVE entries whose addend is the relocated word's address - 2160.
    for r_offset, r_addend in elf.relative_relocations():
        if r_offset - r_addend == ARENA_NEXT:
            arenas.add(r_addend)
    good = []
    for arena in arenas:
        off = arena - vaddr0
        if off < 0 or off + MALLOC_STATE_SIZE > len(blob):
            continue
        image = blob[off:off + MALLOC_STATE_SIZE]
        attached = struct.unpack_from("<Q", image, ARENA_ATTACHED)[0]
        rest = image[:ARENA_NEXT] + image[ARENA_NEXT + 8:ARENA_ATTACHED] + image[ARENA_ATTACHED + 8:]
        if attached == 1 and not rest.strip(b"\0"):
            good.append(arena)
    if len(good) != 1:
        raise GlibcError("unsupported", f"cannot identify main_arena in libc's .data without debug symbols ({len(good)} candidates)")
    mp_pattern = struct.pack("<QQQQ", 128 * 1024, 128 * 1024, 128 * 1024, 8)
    hits = [m.start() for m in re.finditer(re.escape(mp_pattern), blob) if m.start() % 8 == 0]
    if len(hits) != 1:
        raise GlibcError("unsupported", f"cannot identify mp_ in libc's .data without debug symbols ({len(hits)} candidates)")
    found = {"main_arena": good[0], "mp_": vaddr0 + hits[0]}
    with _cache_lock:
        _offsets_cache[key] = found
    return found


def locate(libc: LibcImage, mode: str = "auto") -> Symbols:
    """Find main_arena, mp_ (and tcache_key when symbols allow) in the target.

    ``mode``: 'auto' (debug symbols when installed, else heuristics), 'debug' or 'heuristic'.
    """
    if mode not in ("auto", "debug", "heuristic"):
        raise ValueError(mode)
    if libc.static:
        offsets = static_offsets(libc)
        key = offsets.get("tcache_key")
        return Symbols(libc.base + offsets["main_arena"], libc.base + offsets["mp_"],
                       libc.base + key if key is not None else None, "symtab")
    if mode in ("auto", "debug"):
        found = _debug_offsets_with_file(libc.build_id, libc.pid, libc.proc_root)
        if found is not None:
            offsets, path = found
            key = offsets.get("tcache_key")
            return Symbols(libc.base + offsets["main_arena"], libc.base + offsets["mp_"],
                           libc.base + key if key is not None else None, "debug", path)
        if mode == "debug":
            _offsets, _path, tried = debug_lookup(libc.build_id, libc.pid, libc.proc_root)
            raise GlibcError("unsupported", f"no debug symbols for libc build-id {libc.build_id} (install libc6-dbg "
                                            f"on the host or in the target's root): {tried}")
    offsets = heuristic_offsets(libc)
    return Symbols(libc.base + offsets["main_arena"], libc.base + offsets["mp_"], None, "heuristic")
