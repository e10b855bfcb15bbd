"""Which allocator and which language runtime a process uses, from its maps, exe and ELF notes.

The allocator is recognised by the shared objects mapped (libjemalloc, libtcmalloc, libmimalloc,
musl's ld-musl / libc.musl); glibc by libc.so.6; a binary with no libc mapped and no program
interpreter is static. Runtimes by their shared objects or executable name, and for Go by the
".note.go.buildid" note in the executable.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from memtop.heap.elf import ElfError, ElfFile, elf_class, section_names
from memtop.heap.memory import Mapping
from memtop.model.heap import RuntimeInfo, RuntimeRegion

_ALLOCATOR_PATTERNS = (
    ("jemalloc", re.compile(r"/libjemalloc[^/]*\.so")),
    ("tcmalloc", re.compile(r"/libtcmalloc[^/]*\.so")),
    ("mimalloc", re.compile(r"/libmimalloc[^/]*\.so")),
    # musl's dynamic linker and libc are one file: Alpine maps /lib/ld-musl-x86_64.so.1, Debian's
    # musl package /usr/lib/x86_64-linux-musl/libc.so (ld-musl-x86_64.so.1 is a symlink to it).
    ("musl", re.compile(r"/(ld-musl-[^/]*\.so[^/]*|libc\.musl[^/]*\.so[^/]*|[^/]*-linux-musl[^/]*/libc\.so)$")),
)
# glibc's libc is libc.so.6 (libc-2.NN.so before 2.34 on some distributions); a bare libc.so is
# never glibc's runtime name (glibc's libc.so is a linker script), but it is musl's.
_GLIBC = re.compile(r"/libc(?:-[0-9.]+\.so|\.so\.6)$")


@dataclass(frozen=True, slots=True)
class AllocatorGuess:
    kind: str  # one of memtop.model.heap.ALLOCATOR_KINDS
    evidence: str
    static: bool = False  # linked into the executable (no shared libc mapped)
    library: str | None = None  # the allocator's shared object as the target maps it


def read_exe_header(pid: int, root: Path, size: int = 64 * 1024) -> bytes | None:
    try:
        with open(f"{root}/{pid}/exe", "rb") as f:
            return f.read(size)
    except OSError:
        return None


def detect_allocator(maps: list[Mapping], exe_head: bytes | None) -> AllocatorGuess:
    """The malloc in use. A preloaded allocator wins over glibc (it replaces malloc)."""
    paths = {m.path.removesuffix(" (deleted)") for m in maps if m.path.startswith("/")}
    for kind, pattern in _ALLOCATOR_PATTERNS:
        for path in paths:
            if pattern.search(path):
                return AllocatorGuess(kind, f"{os.path.basename(path)} is mapped", library=path)
    for path in paths:
        if _GLIBC.search(path):
            return AllocatorGuess("glibc", f"{path} is mapped", library=path)
    if exe_head is not None and elf_class(exe_head) is not None:
        if not _has_interp(exe_head):
            return AllocatorGuess("static", "the executable has no program interpreter and maps no libc (static)",
                                  static=True)
    return AllocatorGuess("unknown", "no known allocator library is mapped")


# Symbols that name the malloc of a static executable (its .symtab): glibc's arena, musl's
# mallocng context (src/malloc/mallocng/glue.h: ctx is __malloc_context) or musl's "lite" bump
# allocator, linked instead of mallocng when the program never calls free (src/malloc/lite_malloc.c).
_STATIC_GLIBC_SYMBOLS = {"main_arena", "mp_"}
_STATIC_MUSL_SYMBOLS = {"__malloc_context", "__simple_malloc", "__init_libc"}


def classify_static(pid: int, root: Path, guess: AllocatorGuess) -> AllocatorGuess:
    """Which libc a static executable linked, from its symbol table (or, stripped, its notes:
    glibc's crt1 brings an NT_GNU_ABI_TAG note, musl's does not). ``guess`` is returned when it
    is not static, or when nothing tells."""
    if guess.kind != "static":
        return guess
    from memtop.heap.glibc import STATIC_MAX_EXE_BYTES, _read_file_cached

    try:
        path = f"{root}/{pid}/exe"
        if os.stat(path).st_size > STATIC_MAX_EXE_BYTES:
            return guess
        elf = ElfFile(_read_file_cached(path))
    except (OSError, ElfError, Exception):  # noqa: BLE001 - an unreadable exe leaves the guess as it is
        return guess
    if elf.has_symtab():
        found = elf.symbols(_STATIC_GLIBC_SYMBOLS | _STATIC_MUSL_SYMBOLS)
        if _STATIC_GLIBC_SYMBOLS <= found.keys():
            return AllocatorGuess("glibc", "a static executable: glibc's main_arena is in its symbol table", static=True)
        if "__malloc_context" in found:
            return AllocatorGuess("musl", "a static executable: musl's mallocng (__malloc_context) is in its symbol table",
                                  static=True)
        if "__simple_malloc" in found:
            return AllocatorGuess("musl", "a static executable with musl's lite malloc (__simple_malloc in its symbol table)",
                                  static=True)
        if "__init_libc" in found:
            return AllocatorGuess("musl", "a static executable linked with musl (__init_libc in its symbol table)",
                                  static=True)
        return guess
    if _has_abi_tag(elf):
        return AllocatorGuess("glibc", "a stripped static executable with glibc's ABI note (NT_GNU_ABI_TAG)", static=True)
    return guess


def _has_abi_tag(elf: ElfFile) -> bool:
    section = elf.section(".note.ABI-tag")
    return section is not None and section.size >= 16


def _has_interp(head: bytes) -> bool:
    """PT_INTERP present in the program headers (read from the first bytes of the file)."""
    import struct

    try:
        if head[4] == 2:
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            fmt = "<I"
        else:
            phoff, = struct.unpack_from("<I", head, 28)
            phentsize, phnum = struct.unpack_from("<HH", head, 42)
            fmt = "<I"
        for i in range(phnum):
            off = phoff + i * phentsize
            if off + 4 > len(head):
                return True  # cannot tell: do not claim static
            if struct.unpack_from(fmt, head, off)[0] == 3:  # PT_INTERP
                return True
    except (struct.error, IndexError):
        return True
    return False


_RUNTIME_LIBS = (
    ("jvm", re.compile(r"/libjvm\.so$"), "libjvm.so is mapped"),
    ("node", re.compile(r"/libnode\.so[.0-9]*$"), "libnode.so is mapped"),
    ("dotnet", re.compile(r"/libcoreclr\.so$"), "libcoreclr.so is mapped"),
    ("ruby", re.compile(r"/libruby[^/]*\.so[.0-9]*$"), "libruby is mapped"),
    ("cpython", re.compile(r"/libpython3\.\d+[^/]*\.so[.0-9]*$"), "libpython is mapped"),
)
_RUNTIME_EXES = (
    ("cpython", re.compile(r"^python3?(\.\d+)?[a-z]*$")),
    ("node", re.compile(r"^(node|nodejs)$")),
    ("jvm", re.compile(r"^java$")),
    ("ruby", re.compile(r"^ruby[.0-9]*$")),
    ("dotnet", re.compile(r"^dotnet$")),
)

ADVICE = {
    "cpython": ("CPython keeps objects of up to 512 bytes in its own arenas (obmalloc), outside glibc's "
                "heap; see them with `sys._debugmallocstats()`, or run with PYTHONMALLOC=malloc to hand them to glibc.",),
    "jvm": ("The Java heap and metaspace are the JVM's own: `jcmd PID VM.native_memory summary` "
            "(start with -XX:NativeMemoryTracking=summary) and `jcmd PID GC.heap_info`.",
            "glibc arenas under the JVM: MALLOC_ARENA_MAX=2 often cuts native RSS."),
    "go": ("Go manages its heap itself: `GODEBUG=gctrace=1` or runtime.ReadMemStats; "
           "GODEBUG=madvdontneed=1 makes freed pages leave RSS at once (Go 1.12-1.15 used MADV_FREE).",),
    "node": ("V8's heap is Node's own: run with --trace-gc, or --max-old-space-size to cap it; "
             "`node --inspect` heap snapshots show what is live.",),
    "dotnet": ("The .NET GC heap: `dotnet-counters monitor -p PID` and `dotnet-gcdump`; "
               "DOTNET_GCHeapHardLimit caps it; DOTNET_gcServer=0 uses fewer heaps.",),
    "ruby": ("Ruby's object heap: GC.stat; with glibc, MALLOC_ARENA_MAX=2 is the usual fix for RSS "
             "growth (the GVL makes many arenas pointless).",),
}


def detect_runtime(pid: int, maps: list[Mapping], root: Path, exe_head: bytes | None,
                   smaps_rss: dict[int, int] | None = None) -> RuntimeInfo:
    """The language runtime, with the large anonymous regions it owns where identifiable."""
    kind, evidence, version = None, "", None
    for mapping in maps:
        path = mapping.path.removesuffix(" (deleted)")
        for name, pattern, why in _RUNTIME_LIBS:
            if pattern.search(path):
                kind, evidence = name, why
                if name == "cpython":
                    m = re.search(r"libpython(3\.\d+)", path)
                    version = m.group(1) if m else None
                break
        if kind:
            break
    exe_name = None
    try:
        exe_name = os.path.basename(os.readlink(f"{root}/{pid}/exe")).removesuffix(" (deleted)")
    except OSError:
        pass
    if kind is None and exe_name:
        for name, pattern in _RUNTIME_EXES:
            if pattern.match(exe_name):
                kind, evidence = name, f"the executable is {exe_name}"
                if name == "cpython":
                    m = re.match(r"python(3\.\d+)", exe_name)
                    version = m.group(1) if m else None
                break
    if kind is None and exe_head is not None and b".note.go.buildid" in exe_head or (
            kind is None and exe_head is not None and b"Go buildinf:" in exe_head):
        kind, evidence = "go", "the executable carries a Go build note"
    if kind is None:
        go = _go_note(pid, root)
        if go:
            kind, evidence = "go", go
    if kind is None:
        return RuntimeInfo("none", None, "no runtime recognised (native program)")
    regions = _runtime_regions(kind, maps, smaps_rss or {})
    return RuntimeInfo(kind, version, evidence, regions, ADVICE.get(kind, ()))


def _go_note(pid: int, root: Path) -> str | None:
    """Go binaries have a .note.go.buildid section (and a .go.buildinfo section)."""
    try:
        with open(f"{root}/{pid}/exe", "rb") as f:
            names = section_names(f)
    except (OSError, ElfError, struct.error):  # an unreadable exe just means "not Go"
        return None
    if ".note.go.buildid" in names or ".go.buildinfo" in names:
        return "the executable has a .note.go.buildid section"
    return None


# Region sizes that identify a runtime's own heap mappings (anonymous, no path).
_GO_ARENA = 64 << 20


def _runtime_regions(kind: str, maps: list[Mapping], rss: dict[int, int]) -> tuple[RuntimeRegion, ...]:
    out = []
    anon = [m for m in maps if m.anonymous and not m.path and "rw" in m.perms]
    if kind == "go":
        # The Go heap grows in 64 MiB arenas reserved at hint addresses 0xc000000000 and up.
        for m in anon:
            if 0xC000000000 <= m.start < 0xFF00000000:
                out.append(RuntimeRegion(m.start, m.size, rss.get(m.start), "Go heap arena"))
    # The JVM: the largest anonymous mapping is no guide (it was often two merged glibc arena
    # heaps); the Java heap's range comes from its PerfData file (memtop.runtime.hsperfdata).
    elif kind == "node":
        # V8 heap pages are 256 KiB-aligned anonymous mappings (kPageSize; large objects get
        # bigger ones, still aligned). glibc's own heaps are claimed before runtime regions.
        for m in anon:
            if m.start % (256 << 10) == 0 and m.path == "":
                out.append(RuntimeRegion(m.start, m.size, rss.get(m.start), "V8 heap page"))
    # CPython: obmalloc's 1 MiB arenas are plain anonymous mmaps that the kernel merges with
    # their neighbours, so they cannot be told apart in maps; none are claimed.
    return tuple(out)
