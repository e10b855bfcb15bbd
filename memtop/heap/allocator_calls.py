"""Asking jemalloc, tcmalloc or mimalloc itself, through gdb: their own statistics call, and
their own release. The safety recipe is memtop.heap.gdb's (identity, traceable, no thread inside
the allocator, the calling thread parked in a system call, watchdog, detach, stop time
measured); what differs from glibc is in :class:`memtop.heap.gdb.AllocatorLibrary`.

Every function is called by the address of its exported symbol in the allocator's own library
(read from its .dynsym), never by name: gdb, with glibc's symbols loaded too, could pick glibc's
malloc for a process whose malloc is jemalloc's. Strings and out-parameters live in a small
block taken with the allocator's own malloc and given back with its own free.

- jemalloc: ``mallctl("epoch")`` then ``stats.allocated``, ``active``, ``resident``, ``mapped``,
  ``retained``, ``metadata``, ``stats.arenas.<all>.pdirty/pmuzzy``, ``opt.background_thread``,
  ``background_thread``, ``arenas.dirty_decay_ms``, ``arenas.muzzy_decay_ms``,
  ``arenas.narenas`` (jemalloc's man page, MALLCTL NAMESPACE); release
  ``mallctl("arena.4096.purge")`` (MALLCTL_ARENAS_ALL is 4096 in jemalloc 5).
- tcmalloc: ``MallocExtension_GetNumericProperty`` for the ``generic.*`` and ``tcmalloc.*``
  properties (gperftools malloc_extension.h); release ``MallocExtension_ReleaseFreeMemory()``.
- mimalloc: ``mi_process_info`` (current and peak commit); release ``mi_collect(true)``.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from memtop.heap import gdb
from memtop.heap.allocators import ReaderError, open_library
from memtop.model.process import ProcessIdentity
from memtop.procfs import PROC, NoSuchProcess, ProcfsError

MALLCTL_ARENAS_ALL = 4096
SCRATCH = 1024

# (mallctl name, C type size, kind of value)
JEMALLOC_STATS = (
    ("stats.allocated", 8, "bytes"), ("stats.active", 8, "bytes"), ("stats.resident", 8, "bytes"),
    ("stats.mapped", 8, "bytes"), ("stats.retained", 8, "bytes"), ("stats.metadata", 8, "bytes"),
    (f"stats.arenas.{MALLCTL_ARENAS_ALL}.pdirty", 8, "pages"), (f"stats.arenas.{MALLCTL_ARENAS_ALL}.pmuzzy", 8, "pages"),
    ("opt.background_thread", 1, "bool"), ("background_thread", 1, "bool"),
    ("arenas.dirty_decay_ms", 8, "ssize"), ("arenas.muzzy_decay_ms", 8, "ssize"), ("arenas.narenas", 4, "unsigned"),
)
TCMALLOC_PROPERTIES = (
    "generic.current_allocated_bytes", "generic.heap_size", "tcmalloc.pageheap_free_bytes",
    "tcmalloc.pageheap_unmapped_bytes", "tcmalloc.central_cache_free_bytes", "tcmalloc.transfer_cache_free_bytes",
    "tcmalloc.thread_cache_free_bytes", "tcmalloc.max_total_thread_cache_bytes",
)
MIMALLOC_INFO = ("elapsed_msecs", "user_msecs", "system_msecs", "current_rss", "peak_rss", "current_commit",
                 "peak_commit", "page_faults")

# name -> (functions needed, the release call as shown, its C expression template)
KINDS = {
    "jemalloc": (("malloc", "free", "mallctl"), f'mallctl("arena.{MALLCTL_ARENAS_ALL}.purge")'),
    "tcmalloc": (("tc_malloc", "tc_free", "MallocExtension_GetNumericProperty", "MallocExtension_ReleaseFreeMemory"),
                 "MallocExtension_ReleaseFreeMemory()"),
    "mimalloc": (("mi_malloc", "mi_free", "mi_process_info", "mi_collect"), "mi_collect(true)"),
}
OWN_THREADS = {"jemalloc": frozenset({"jemalloc_bg_thd"})}
TCMALLOC_LOCK = "_ZN8tcmalloc6Static14pageheap_lock_E"  # SpinLock: lockword 0 when free


@dataclass(frozen=True, slots=True)
class OwnStats:
    """The allocator's own figures, as its stats call gave them."""

    kind: str
    values: tuple[tuple[str, int | float | bool | None], ...]
    call: str  # what was called, in words
    stopped_s: float | None
    notes: tuple[str, ...] = ()

    def get(self, name: str):
        return dict(self.values).get(name)


@dataclass
class ReleaseOutcome:
    returned: str | None = None
    call_s: float | None = None
    stopped_s: float | None = None
    notes: list[str] = field(default_factory=list)


def allocator_library(pid: int, root: Path = PROC) -> gdb.AllocatorLibrary:
    """What the recipe needs to call into the allocator of ``pid``; gdb.Refused when it is not
    one memtop calls (glibc has its own path; musl has no stats call and no release)."""
    from memtop.heap.detect import detect_allocator, read_exe_header
    from memtop.heap.memory import read_maps

    try:
        maps = read_maps(pid, root)
    except NoSuchProcess:
        raise gdb.TargetGone(f"PID {pid} has exited") from None
    except ProcfsError as e:
        raise gdb.Refused(f"cannot read the memory map of PID {pid}: {e}") from None
    guess = detect_allocator(maps, read_exe_header(pid, root))
    if guess.kind not in KINDS:
        what = {"musl": "musl has no call that reports or gives back memory (no malloc_trim, no stats)",
                "glibc": "glibc's malloc is called through memtop trim's own path"}.get(guess.kind, "not an allocator memtop calls into")
        raise gdb.Refused(f"PID {pid} uses {guess.kind} ({guess.evidence}): {what}")
    if guess.library is None:
        raise gdb.Refused(f"PID {pid}: {guess.kind} is not a shared library memtop can find")
    try:
        image = open_library(pid, maps, root, guess.library)
    except ReaderError as e:
        raise gdb.Refused(f"PID {pid}: {e.reason}") from None
    names, _call = KINDS[guess.kind]
    found = image.elf.symbols(set(names))
    missing = [n for n in names if n not in found]
    if missing:
        raise gdb.Refused(f"PID {pid}: {os.path.basename(guess.library)} exports no {', '.join(missing)}")
    path = guess.library
    first = min(m.start for m in maps if m.path.removesuffix(" (deleted)") == path)
    host = f"{root}/{pid}/root{path}"
    library = gdb.LibcMapping(path=path, host_path=host if os.path.exists(host) else path, base=first)
    libc_maps = [m for m in maps if gdb._LIBC_NAME.search(m.path) and m.offset == 0]
    libc = None
    if libc_maps:
        lp = libc_maps[0].path
        lhost = f"{root}/{pid}/root{lp}"
        libc = gdb.LibcMapping(path=lp, host_path=lhost if os.path.exists(lhost) else lp, base=libc_maps[0].start)
    text = tuple((m.start, m.end) for m in maps if m.path.removesuffix(" (deleted)") == path and "x" in m.perms)
    locks: tuple[int, ...] = ()
    if guess.kind == "tcmalloc":
        lock = image.symbol(TCMALLOC_LOCK)
        locks = (lock,) if lock is not None else ()
    return gdb.AllocatorLibrary(
        kind=guess.kind, library=library, libc=libc, text_ranges=text,
        functions=tuple((n, image.base + found[n]) for n in names),
        own_threads=OWN_THREADS.get(guess.kind, frozenset()), lock_addresses=locks)


def release_call(kind: str) -> str | None:
    entry = KINDS.get(kind)
    return entry[1] if entry else None


# --- inside a stopped session ---------------------------------------------------------------


class _Scratch:
    """A block of the target's memory from the allocator's own malloc, freed at the end."""

    def __init__(self, session: gdb.GdbSession, thread: gdb.ThreadState, lib: gdb.AllocatorLibrary, timeout: float):
        self.session, self.thread, self.lib, self.timeout = session, thread, lib, timeout
        malloc = lib.function("mi_malloc" if lib.kind == "mimalloc" else "tc_malloc" if lib.kind == "tcmalloc" else "malloc")
        value = session.call(f"(unsigned long)((void *(*)(unsigned long)){malloc:#x})({SCRATCH})", thread, timeout)
        self.address = int(value, 0)
        if not self.address:
            raise gdb.CallFailed(f"the allocator's malloc({SCRATCH}) in the target returned NULL")

    def write(self, offset: int, data: bytes) -> int:
        if offset + len(data) > SCRATCH:
            raise ValueError("scratch block too small")
        self.session.command(f"-data-write-memory-bytes {self.address + offset:#x} {data.hex()}", self.timeout,
                             what="writing to the target")
        return self.address + offset

    def read(self, offset: int, length: int) -> bytes:
        return self.session.read_memory(self.address + offset, length, self.timeout)

    def free(self) -> None:
        free = self.lib.function("mi_free" if self.lib.kind == "mimalloc" else "tc_free" if self.lib.kind == "tcmalloc" else "free")
        self.session.call(f"((void (*)(void *)){free:#x})((void *){self.address:#x})", self.thread, self.timeout)


def _call(session, thread, timeout, expression: str) -> str:
    return session.call(expression, thread, timeout)


def _jemalloc_stats(session, thread, lib, timeout) -> list[tuple[str, object]]:
    mallctl = lib.function("mallctl")
    scratch = _Scratch(session, thread, lib, timeout)
    out: list[tuple[str, object]] = []
    try:
        # Cells: 0 value out, 8 size in/out, 16 epoch in, 64.. the name.
        scratch.write(16, struct.pack("<Q", 1))

        def ctl(name: str, size: int | None, new: bool = False) -> tuple[int, bytes]:
            name_at = scratch.write(64, name.encode() + b"\0")
            if size is not None:
                scratch.write(0, bytes(8))
                scratch.write(8, struct.pack("<Q", size))
            old = f"(void *){scratch.address:#x}" if size is not None else "(void *)0"
            oldlen = f"(unsigned long *){scratch.address + 8:#x}" if size is not None else "(unsigned long *)0"
            newp = f"(void *){scratch.address + 16:#x}" if new else "(void *)0"
            rc = int(_call(session, thread, timeout,
                           f"((int (*)(const char *, void *, unsigned long *, void *, unsigned long)){mallctl:#x})"
                           f"((const char *){name_at:#x}, {old}, {oldlen}, {newp}, {8 if new else 0})"), 0)
            return rc, scratch.read(0, 8) if size is not None else b""

        rc, _ = ctl("epoch", 8, new=True)
        if rc:
            raise gdb.CallFailed(f'mallctl("epoch") returned {rc}')
        for name, size, kind in JEMALLOC_STATS:
            rc, raw = ctl(name, size)
            if rc:
                out.append((name, None))
                continue
            if kind == "bool":
                value = bool(raw[0])
            elif kind == "unsigned":
                value = struct.unpack_from("<I", raw)[0]
            elif kind == "ssize":
                value = struct.unpack_from("<q", raw)[0]
            else:
                value = struct.unpack_from("<Q", raw)[0] * (4096 if kind == "pages" else 1)
            out.append((name + ("_bytes" if kind == "pages" else ""), value))
    finally:
        scratch.free()
    return out


def _tcmalloc_stats(session, thread, lib, timeout) -> list[tuple[str, object]]:
    get = lib.function("MallocExtension_GetNumericProperty")
    scratch = _Scratch(session, thread, lib, timeout)
    out = []
    try:
        for name in TCMALLOC_PROPERTIES:
            name_at = scratch.write(64, name.encode() + b"\0")
            scratch.write(0, bytes(8))
            ok = int(_call(session, thread, timeout, f"((int (*)(const char *, unsigned long *)){get:#x})"
                                                     f"((const char *){name_at:#x}, (unsigned long *){scratch.address:#x})"), 0)
            out.append((name, struct.unpack("<Q", scratch.read(0, 8))[0] if ok else None))
    finally:
        scratch.free()
    return out


def _mimalloc_stats(session, thread, lib, timeout) -> list[tuple[str, object]]:
    info = lib.function("mi_process_info")
    scratch = _Scratch(session, thread, lib, timeout)
    try:
        scratch.write(0, bytes(64))
        args = ", ".join(f"(unsigned long *){scratch.address + 8 * i:#x}" for i in range(8))
        _call(session, thread, timeout, f"((void (*)(unsigned long *, unsigned long *, unsigned long *, unsigned long *, "
                                        f"unsigned long *, unsigned long *, unsigned long *, unsigned long *)){info:#x})({args})")
        values = struct.unpack("<8Q", scratch.read(0, 64))
    finally:
        scratch.free()
    return list(zip(MIMALLOC_INFO, values))


_STATS = {"jemalloc": (_jemalloc_stats, 'mallctl("epoch") and mallctl("stats.*", "opt.*", "arenas.*")'),
          "tcmalloc": (_tcmalloc_stats, "MallocExtension_GetNumericProperty"),
          "mimalloc": (_mimalloc_stats, "mi_process_info")}


def fetch_stats(identity: ProcessIdentity, timeout: float = 5.0, root: Path = PROC) -> OwnStats:
    """The allocator's own statistics call in the target, through gdb. Stops the process for
    the attach, the checks, the calls and the detach (``stopped_s``). Raises gdb's errors."""
    lib = allocator_library(identity.pid, root)
    stopped = gdb.open_session(identity, mutex_addresses=list(lib.lock_addresses), timeout=timeout, root=root,
                               allocator=lib)
    session = stopped.session
    function, words = _STATS[lib.kind]
    try:
        values = function(session, stopped.calling_thread, lib, timeout)
    finally:
        notes = gdb.finish_session(session)
    return OwnStats(lib.kind, tuple(values), f"{words} through gdb", session.stopped_s, tuple(notes))


def run_release(identity: ProcessIdentity, lib: gdb.AllocatorLibrary, timeout: float, outcome: ReleaseOutcome,
                root: Path = PROC) -> None:
    """The allocator's own release in the target (see module doc). Raises gdb's errors; what
    happened is in ``outcome`` (filled as it goes, so that a failure keeps the stop time)."""
    stopped = gdb.open_session(identity, mutex_addresses=list(lib.lock_addresses), timeout=timeout, root=root,
                               allocator=lib)
    session = stopped.session
    thread = stopped.calling_thread
    started = time.monotonic()
    try:
        if lib.kind == "jemalloc":
            scratch = _Scratch(session, thread, lib, timeout)
            try:
                name_at = scratch.write(0, f"arena.{MALLCTL_ARENAS_ALL}.purge".encode() + b"\0")
                started = time.monotonic()
                outcome.returned = _call(session, thread, timeout,
                                         f"((int (*)(const char *, void *, unsigned long *, void *, unsigned long))"
                                         f"{lib.function('mallctl'):#x})((const char *){name_at:#x}, (void *)0, "
                                         f"(unsigned long *)0, (void *)0, 0)")
                outcome.call_s = time.monotonic() - started
            finally:
                scratch.free()
        elif lib.kind == "tcmalloc":
            _call(session, thread, timeout, f"((void (*)(void)){lib.function('MallocExtension_ReleaseFreeMemory'):#x})()")
            outcome.call_s = time.monotonic() - started
            outcome.returned = "void"
        else:
            _call(session, thread, timeout, f"((void (*)(int)){lib.function('mi_collect'):#x})(1)")
            outcome.call_s = time.monotonic() - started
            outcome.returned = "void"
    finally:
        if outcome.call_s is None:
            outcome.call_s = time.monotonic() - started
        outcome.notes.extend(gdb.finish_session(session))
        outcome.stopped_s = session.stopped_s
